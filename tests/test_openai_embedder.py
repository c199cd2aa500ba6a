"""The openai: embedder against a real local HTTP server speaking the /v1/embeddings protocol."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import embedsae
from embedsae.data.embedders import load_embedder
from embedsae.data.openai_embedder import EndpointError, OpenAIEmbedder, estimate_tokens
from embedsae.errors import InputError, ModelMismatchError

from .embedding_server import EmbeddingServer, fake_vector

TEXTS = [f"document {i} about {'sparse autoencoders' if i % 3 else 'gravitational lensing'} number {i}" for i in range(50)]


def expected(texts, model="fake-embed", dim=64):
    return np.stack([fake_vector(model, t, dim) for t in texts])


def make(srv, tmp_path, **kw):
    opts = {"base_url": srv.base_url, "cache_dir": tmp_path / "cache", "backoff": 0.01, "batch_size": 8, "concurrency": 3}
    return OpenAIEmbedder("openai:fake-embed", **{**opts, **kw})


def test_vectors_in_order_batched_concurrently(tmp_path):
    with EmbeddingServer(dim=64) as srv:
        emb = make(srv, tmp_path)
        out = emb.embed(TEXTS)
    assert out.dtype == np.float32 and out.shape == (50, 64)
    np.testing.assert_allclose(out, expected(TEXTS), atol=1e-6)  # reversed answers were put back in order
    assert emb.dim == 64 and emb.model_id == "openai:fake-embed"
    assert len(srv.requests) == 7 and max(len(r["input"]) for r in srv.requests) == 8  # ceil(50 / 8)
    assert emb.usage["prompt_tokens"] == sum(len(t.split()) for t in TEXTS)
    assert emb.usage["texts_embedded"] == 50 and emb.usage["requests"] == 7


def test_batches_respect_token_budget(tmp_path):
    texts = [f"text{i} " + "word " * n for i, n in enumerate((10, 200, 30, 400, 5, 5, 5))]
    with EmbeddingServer() as srv:
        emb = make(srv, tmp_path, batch_size=100, max_batch_tokens=700)
        emb.embed(texts)
    for r in srv.requests:
        assert sum(estimate_tokens(t) for t in r["input"]) <= 700 or len(r["input"]) == 1
    assert len(srv.requests) > 1
    assert sorted(t for r in srv.requests for t in r["input"]) == sorted(texts)


def test_cache_pays_once_across_runs_and_duplicates(tmp_path):
    with EmbeddingServer() as srv:
        first = make(srv, tmp_path).embed(TEXTS[:30] + TEXTS[:5])  # duplicates are sent once
        assert len(srv.texts_seen()) == 30
        again = make(srv, tmp_path)  # a new process would open the same cache
        second = again.embed(TEXTS)
        assert len(srv.texts_seen()) == 50  # only the 20 new texts were sent
        assert again.usage["texts_from_cache"] == 30
        np.testing.assert_array_equal(second[:30], first[:30])
        make(srv, tmp_path / "other", cache=False).embed(TEXTS[:3])
        assert len(srv.texts_seen()) == 53


def test_retries_429_and_5xx_then_succeeds(tmp_path):
    faults = ["429", "429", "500", "429", "503", "malformed"]
    with EmbeddingServer(faults=faults) as srv:
        emb = make(srv, tmp_path, concurrency=1, max_retries=6)
        t0 = time.perf_counter()
        out = emb.embed(TEXTS[:16])
        seconds = time.perf_counter() - t0
    np.testing.assert_allclose(out, expected(TEXTS[:16]), atol=1e-6)
    assert emb.usage["retries"] == 6 and emb.usage["requests"] == 8  # 6 failed + 2 good
    assert seconds < 10


def test_gives_up_with_a_clear_error_and_resumes(tmp_path):
    with EmbeddingServer(faults=[None, None] + ["500"] * 50) as srv:
        emb = make(srv, tmp_path, concurrency=1, max_retries=2)
        with pytest.raises(EndpointError, match="HTTP 500.*run again to resume"):
            emb.embed(TEXTS[:40])
    with EmbeddingServer() as srv:  # the endpoint is back: only the unfinished batches are paid for
        out = make(srv, tmp_path).embed(TEXTS[:40])
        assert len(srv.texts_seen()) == 40 - 16
    np.testing.assert_allclose(out, expected(TEXTS[:40]), atol=1e-6)


def test_persistent_malformed_answers_fail(tmp_path):
    with EmbeddingServer(faults=["malformed"] * 10) as srv:
        with pytest.raises(EndpointError, match="malformed"):
            make(srv, tmp_path, max_retries=2).embed(TEXTS[:3])
        assert len(srv.requests) == 3


def test_wrong_dimension_is_not_retried(tmp_path):
    with EmbeddingServer(faults=[None, "wrong_dim"]) as srv:
        emb = make(srv, tmp_path, concurrency=1)
        with pytest.raises(ModelMismatchError, match="65-d vector.*64-d"):
            emb.embed(TEXTS[:16])
        assert len(srv.requests) == 2
    with EmbeddingServer() as srv:
        with pytest.raises(ModelMismatchError, match="64-d vector.*32-d"):
            make(srv, tmp_path / "c2", dimensions=32).embed(TEXTS[:2])


def test_refusals_and_bad_settings(tmp_path, monkeypatch):
    with EmbeddingServer(faults=["401"]) as srv:
        with pytest.raises(EndpointError, match="HTTP 401.*TEST_KEY_VAR"):
            make(srv, tmp_path, api_key_env="TEST_KEY_VAR").embed(["x"])
    with EmbeddingServer() as srv:
        with pytest.raises(EndpointError, match="HTTP 404"):
            make(srv, tmp_path, base_url=srv.base_url.removesuffix("/v1")).embed(["x"])
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InputError, match="NO_SUCH_KEY"):
        OpenAIEmbedder("openai:text-embedding-3-small", api_key_env="NO_SUCH_KEY", cache=False)
    with pytest.raises(InputError, match="http"):
        OpenAIEmbedder("openai:x", base_url="localhost:8000", cache=False)


def test_connection_refused_is_retried_then_reported(tmp_path):
    with EmbeddingServer() as srv:
        url = srv.base_url
    emb = OpenAIEmbedder("openai:fake-embed", base_url=url, cache=False, max_retries=1, backoff=0.01)
    with pytest.raises(EndpointError, match="connection failed"):
        emb.embed(["x"])


def test_workspace_remembers_endpoint_not_key(tmp_path, monkeypatch, small_corpus):
    """Queries and labels of an openai: workspace go to the same endpoint; the key reaches the server only."""
    from embedsae import pipeline
    from embedsae.cli import main

    monkeypatch.setenv("EMBEDSAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_EMBED_KEY", "sk-test-secret-123")
    with EmbeddingServer(dim=48) as srv:
        code = main(["embed", str(small_corpus), "-o", str(tmp_path / "ws"), "--model", "openai:fake-embed",
                     "--embed-base-url", srv.base_url, "--embed-api-key-env", "FAKE_EMBED_KEY"])
        assert code == 0
        assert {r["auth"] for r in srv.requests} == {"Bearer sk-test-secret-123"}
        ws = pipeline.Workspace.open(tmp_path / "ws")
        assert ws.model_id == "openai:fake-embed" and ws.dim == 48
        assert ws.manifest["model"]["options"]["base_url"] == srv.base_url
        assert ws.manifest["stages"]["embed"]["settings"]["usage"]["texts_embedded"] >= 3
        for f in (tmp_path / "ws").rglob("*"):
            if f.is_file():
                assert b"sk-test-secret-123" not in f.read_bytes(), f
        np.testing.assert_allclose(ws.embeddings, expected(ws.corpus["text"], dim=48), atol=1e-6)
        before = len(srv.requests)
        hits = embedsae.open(ws.path).search("protein structure prediction", top=3)
        assert srv.texts_seen()[-1] == "protein structure prediction" and len(srv.requests) == before + 1
        assert hits.hits[0].id == "c"  # the one document sharing words with the query (hashed-word vectors)
        labels = ws.embedder(batch_size=256).embed(["a label", "another label"])
        assert labels.shape == (2, 48) and srv.texts_seen()[-2:] == ["a label", "another label"]


def test_load_embedder_dispatch(tmp_path):
    with EmbeddingServer() as srv:
        emb = load_embedder("openai:fake-embed", base_url=srv.base_url, cache_dir=tmp_path, normalize=False)
        assert isinstance(emb, OpenAIEmbedder) and emb.reopen["base_url"] == srv.base_url
        assert json.dumps(emb.reopen)  # what the manifest keeps is plain JSON
