"""The LLM labeller and detection scorer against a real local HTTP server speaking /v1/chat/completions."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from embedsae.interpret.llm import (
    ChatClient,
    LLMConfig,
    LLMEndpointError,
    MalformedAnswer,
    parse_label,
    parse_name_description,
    parse_ratings,
)

WORD = re.compile(r"[a-z]{6,}")


def expected_label(prompt: str) -> str:
    """The fake model's deterministic label: the most frequent long word of the first firing document."""
    first = prompt.split("\n1. ", 1)[1].split("\n", 1)[0].lower()
    words = WORD.findall(first)
    best = max(sorted(set(words)), key=words.count) if words else "nothing"
    return f"{best} research"


class FakeLLM:
    """A chat-completions server with scripted failures; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_first = 0  # answer HTTP 500 to this many requests
        self.fail_status = 500
        self.sleep_first = 0  # sleep this long on the first request
        self.malformed_when = None  # substring of a prompt that gets an answer without FINAL:
        self.fail_after = None  # answer 500 to every request after this many
        self.garbage_first = 0  # non-JSON bodies
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = len(fake.requests)
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if n == 0 and fake.sleep_first:
                    time.sleep(fake.sleep_first)
                if n < fake.fail_first or (fake.fail_after is not None and n >= fake.fail_after):
                    return self._send(fake.fail_status, b'{"error": "overloaded"}')
                if n < fake.garbage_first:
                    return self._send(200, b"<html>not json</html>")
                prompt = body["messages"][-1]["content"]
                if prompt.startswith("Feature label:"):
                    label = prompt.split("\n", 1)[0].split(":", 1)[1].strip().split()[0]
                    docs = re.findall(r"^(\d+)\. (.*)$", prompt, re.MULTILINE)
                    text = "\n".join(f"{i}: {10 if label in d.lower() else 0}" for i, d in docs)
                elif fake.malformed_when and fake.malformed_when in prompt:
                    text = "I am not sure what these share."
                else:
                    name = expected_label(prompt)
                    text = f"They all discuss one topic.\nNAME: {name}\nDESCRIPTION: Documents that discuss {name}."
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
                out = {"id": "x", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}], "usage": usage}
                self._send(200, json.dumps(out).encode())

            def _send(self, code, data):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm():
    srv = FakeLLM()
    yield srv
    srv.close()


def cfg(url: str, **kw) -> LLMConfig:
    base = dict(base_url=url, model="fake-model", concurrency=3, timeout=5, retries=2, backoff=0.01)
    base.update(kw)
    return LLMConfig(**base)


MSG = [{"role": "user", "content": "Documents on which the feature fires:\n1. [0.5] Quantum quantum entanglement\nFINAL?"}]


# ---------------------------------------------------------------------------- client
def test_client_answers_counts_tokens_and_sends_key(fake_llm, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-123")
    client = ChatClient(cfg(fake_llm.url, api_key_env="MY_KEY"))
    out = client.complete_many([MSG, MSG])
    assert all(isinstance(o, str) and parse_name_description(o) == ("quantum research", "Documents that discuss "
                                                                      "quantum research.") for o in out)
    assert client.usage.requests == 2
    assert client.usage.prompt_tokens == 2 * len(MSG[0]["content"].split())
    assert fake_llm.headers[0]["Authorization"] == "Bearer sk-test-123"
    assert fake_llm.requests[0]["model"] == "fake-model"


def test_client_retries_server_errors_and_garbage(fake_llm):
    fake_llm.fail_first = 2
    client = ChatClient(cfg(fake_llm.url, concurrency=1))
    out = client.complete_many([MSG])
    assert isinstance(out[0], str)
    assert client.usage.retries == 2 and len(fake_llm.requests) == 3

    srv2 = FakeLLM()
    try:
        srv2.garbage_first = 1
        c2 = ChatClient(cfg(srv2.url, concurrency=1))
        assert isinstance(c2.complete_many([MSG])[0], str)
        assert c2.usage.retries == 1
    finally:
        srv2.close()


def test_client_timeout_then_retry(fake_llm):
    fake_llm.sleep_first = 2.0
    client = ChatClient(cfg(fake_llm.url, concurrency=1, timeout=0.5))
    t0 = time.perf_counter()
    out = client.complete_many([MSG])
    assert isinstance(out[0], str), out[0]
    assert client.usage.retries == 1
    assert time.perf_counter() - t0 < 5


def test_client_gives_up_with_clear_errors(fake_llm):
    fake_llm.fail_first = 100
    out = ChatClient(cfg(fake_llm.url, retries=1)).complete_many([MSG])
    assert isinstance(out[0], LLMEndpointError)
    assert "failed 2 times" in str(out[0]) and "HTTP 500" in str(out[0])

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = ChatClient(cfg(f"http://127.0.0.1:{port}/v1", retries=1)).complete_many([MSG])
    assert isinstance(out[0], LLMEndpointError) and "check that it is running" in str(out[0])

    srv = FakeLLM()
    try:
        srv.fail_first, srv.fail_status = 100, 401
        out = ChatClient(cfg(srv.url, api_key_env="NO_SUCH_KEY_VAR")).complete_many([MSG])
        assert isinstance(out[0], LLMEndpointError) and "$NO_SUCH_KEY_VAR" in str(out[0])
        assert len(srv.requests) == 1  # not retried
    finally:
        srv.close()


def test_config_rejects_bad_url():
    from embedsae.errors import InputError

    with pytest.raises(InputError, match="http"):
        LLMConfig(base_url="localhost:11434", model="m")


def test_parsers():
    assert parse_label("step 1...\nFINAL: **Graph neural networks.**") == "Graph neural networks"
    assert parse_label("FINAL: a\nmore thought\nFinal: b c") == "b c"
    with pytest.raises(MalformedAnswer):
        parse_label("no label here")
    with pytest.raises(MalformedAnswer):
        parse_name_description("DESCRIPTION: a sentence, but no name line")
    assert parse_ratings("1: 10\n2: 3\n3. 0", 3).tolist() == [10, 3, 0]
    with pytest.raises(MalformedAnswer):
        parse_ratings("1: 10\n3: 2", 3)


# Answers in the formats larger chat models return to the labelling prompt (reasoning, then the two lines asked
# for; or JSON, bare or fenced; markdown keys; other key names; chatter after the answer).
ANSWERS = [
    ("The firing documents all study molecules with graph networks, while the others use graphs for social "
     "data.\n\nNAME: Graph neural networks for molecules\nDESCRIPTION: Abstracts that predict molecular "
     "properties with graph neural networks, unlike nearby ones on social or citation graphs.",
     "Graph neural networks for molecules",
     "Abstracts that predict molecular properties with graph neural networks, unlike nearby ones on social or "
     "citation graphs."),
    ('```json\n{"name": "Backdoor attacks", "description": "Poisoning training data to plant hidden triggers in '
     'neural networks."}\n```', "Backdoor attacks", "Poisoning training data to plant hidden triggers in neural networks."),
    ('Here is my answer: {"label": "Quantum error correction", "explanation": "Codes that protect qubits from '
     'noise."}', "Quantum error correction", "Codes that protect qubits from noise."),
    ("**Reasoning:** all ten are about turbulence.\n\n**Name:** Turbulent boundary layers\n**Description:** "
     "Wall-bounded turbulent flows and their skin friction,\nset apart by measurements near the wall.\n\n"
     "Let me know if you want a shorter description.",
     "Turbulent boundary layers",
     "Wall-bounded turbulent flows and their skin friction, set apart by measurements near the wall."),
    ("1. Name: Dark matter halos\n2. Description: Simulations of dark matter halos around galaxies.",
     "Dark matter halos", "Simulations of dark matter halos around galaxies."),
    ("Label: Galaxies, stars and interstellar dust\nSummary: Observations of the Milky Way.",
     "Galaxies", "Observations of the Milky Way."),  # a list as a name: its first item
    ("Thinking step by step...\nFINAL: Reinforcement learning", "Reinforcement learning", None),  # the older form
    ("NAME: “Speech enhancement”\nDESCRIPTION:", "Speech enhancement", None),
]


@pytest.mark.parametrize("answer, name, description", ANSWERS)
def test_name_and_description_parser_reads_what_models_answer(answer, name, description):
    assert parse_name_description(answer) == (name, description)


def test_the_labelling_prompt_asks_for_both_fields_and_shows_near_misses():
    from embedsae.interpret.llm_prompts import label_prompt

    msgs = label_prompt(["A text on dark matter."], [0.7], ["A text on dark energy."], 200)
    user = msgs[-1]["content"]
    assert "NAME: <name>" in user and "DESCRIPTION: <description>" in user and "30 words" in user
    assert "does NOT fire" in user and "dark energy" in user


# ---------------------------------------------------------------------------- the whole LLM path on arXiv
@pytest.mark.slow
def test_llm_labeller_end_to_end(arxiv_trained, copy_ws, fake_llm):
    from embedsae.interpret import feature_labels
    from embedsae.interpret.stage import interpret
    from embedsae.interpret.store import FeatureStore, db_path

    ws = copy_ws(arxiv_trained)
    llm = cfg(fake_llm.url)
    s = interpret(ws, labeller="llm", llm=llm, max_features=12, batch_size=4)
    assert s["interpreted"] == 12 and s["failed"] == 0
    n_req = len(fake_llm.requests)
    assert n_req == 24  # one labelling and one detection request per feature
    assert s["llm_usage"]["requests"] == 24
    assert s["llm_usage"]["prompt_tokens"] == sum(len(r["messages"][-1]["content"].split()) for r in fake_llm.requests)
    labels = feature_labels(ws)
    label_prompts = [r["messages"][-1]["content"] for r in fake_llm.requests
                     if "NAME: <name>" in r["messages"][-1]["content"]]
    assert sorted(labels.values()) == sorted(expected_label(p) for p in label_prompts)
    with FeatureStore(db_path(ws.sae_dir(ws.resolve_sae()))) as store:
        t = store.table()
    done = t[t["status"] == "done"]
    assert done["llm_f1"].notna().all() and done["llm_f1"].between(0, 1).all()
    assert done["embedding_auc"].notna().all()
    # both fields stored and scored the same way
    assert (done["description"] == "Documents that discuss " + done["label"] + ".").all()
    assert done["description_auc"].between(0, 1).all() and done["description_auc_hard"].between(0, 1).all()
    assert (done["labeller"] == "llm:fake-model").all()

    # a second run finds everything done: nothing is sent
    s2 = interpret(ws, labeller="llm", llm=llm, max_features=12, batch_size=4)
    assert s2["skipped"] == 12 and len(fake_llm.requests) == n_req


@pytest.mark.slow
def test_llm_failures_keep_finished_labels(arxiv_trained, copy_ws, fake_llm):
    from embedsae.interpret import feature_labels
    from embedsae.interpret.stage import interpret

    ws = copy_ws(arxiv_trained)
    fake_llm.fail_after = 8  # the endpoint dies after two batches of 2 features (label + detection each)
    llm = cfg(fake_llm.url, retries=1, concurrency=1)
    with pytest.raises(LLMEndpointError, match="finished features are kept"):
        interpret(ws, labeller="llm", llm=llm, max_features=10, batch_size=2)
    kept = feature_labels(ws)
    assert len(kept) == 4

    # the endpoint is back, but answers one feature's prompt without a FINAL line
    fake_llm.fail_after = None
    fake_llm.malformed_when = "\n"  # every label prompt: all remaining features fail cleanly
    s = interpret(ws, labeller="llm", llm=llm, max_features=10, batch_size=2)
    assert s["skipped"] == 4 and s["failed"] == 6 and len(feature_labels(ws)) == 4
    # fixed: only the failed features are asked again (malformed answers were not cached)
    fake_llm.malformed_when = None
    n = len(fake_llm.requests)
    s = interpret(ws, labeller="llm", llm=llm, max_features=10, batch_size=2)
    assert s["interpreted"] == 10 and s["skipped"] == 4
    assert len(fake_llm.requests) - n == 12
