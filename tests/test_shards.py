"""The sharded embedding store: reading across shards, checksums, single-file workspaces, corpus columns read in
row groups, and embedding shard by shard (resumed after a SIGKILL, on a 2-process pool, on Ray)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from embedsae import layout, pipeline
from embedsae.data.embedding import EmbedSettings
from embedsae.data.shards import ShardedVectors
from embedsae.data.vectors import ArraySource, iter_chunks
from embedsae.errors import InputError, MissingDependencyError, WorkspaceError
from embedsae.workspace import Workspace

from .conftest import ROOT, shared_path


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"d{i}" for i in range(n)], "text": [f"document {i}\nsecond line" for i in range(n)],
                         "title": [f"title {i}" if i % 3 else "" for i in range(n)]})


def _cranfield(n: int) -> pd.DataFrame:
    return pd.read_json(shared_path("cranfield", "corpus.jsonl"), lines=True, dtype={"_id": str}).iloc[:n]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def sharded(tmp_path) -> tuple[Workspace, np.ndarray]:
    vecs = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    ws = pipeline.embed(_table(50), tmp_path / "ws", vectors=vecs, settings=EmbedSettings(shard_rows=16))
    return ws, vecs


def test_store_reads_rows_across_shards(sharded):
    ws, vecs = sharded
    store = ws.vectors
    assert ws.sharded and isinstance(store, ShardedVectors)
    assert store.shape == (50, 8) and store.shard_bounds() == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert sorted(p.name for p in (ws.path / layout.SHARDS).iterdir()) == sorted(
        [layout.SHARDS_INDEX, *(layout.shard_file(i) for i in range(4))])
    np.testing.assert_array_equal(store.read(10, 40), vecs[10:40])
    np.testing.assert_array_equal(store.read(48, 99), vecs[48:])
    rows = np.array([49, 0, 17, 17, 33, 5])
    np.testing.assert_array_equal(store.take(rows), vecs[rows])
    chunks = list(iter_chunks(store, 10))
    assert [s for s, _ in chunks] == [0, 10, 16, 26, 32, 42, 48]
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), vecs)
    np.testing.assert_array_equal(np.asarray(ws.embeddings), vecs)  # several shards: one copy in memory
    assert store.verify() == []
    assert not (ws.path / layout.EMBEDDINGS).exists() and not (ws.path / layout.SHARDS_PARTIAL).exists()


def test_store_index_records_checksums_and_catches_damage(sharded):
    ws, _ = sharded
    index = ws.vectors.index
    assert index["dim"] == 8 and index["dtype"] == "float32" and index["model"] == "precomputed"
    assert [e["rows"] for e in index["shards"]] == [16, 16, 16, 2]
    shard = ws.path / layout.SHARDS / layout.shard_file(2)
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed: only the checksum sees it
    shard.write_bytes(bytes(data))
    assert ShardedVectors(ws.path / layout.SHARDS).verify() == [layout.shard_file(2)]
    shard.write_bytes(bytes(data[:200]))
    with pytest.raises(WorkspaceError, match=r"shard-00002.npy is damaged .*embed the corpus again"):
        Workspace.open(ws.path).vectors  # noqa: B018


def test_single_file_workspace_still_opens(sharded, tmp_path):
    ws, vecs = sharded
    import shutil

    shutil.rmtree(ws.path / layout.SHARDS)  # an older workspace: one embeddings.npy, no store
    np.save(ws.path / layout.EMBEDDINGS, vecs)
    old = Workspace.open(ws.path)
    assert not old.sharded and isinstance(old.vectors, ArraySource) and isinstance(old.embeddings, np.memmap)
    np.testing.assert_array_equal(old.vectors.read(0, 50), vecs)
    # embedding it again with the same data gives a sharded store and drops the single file
    again = pipeline.embed(_table(50), ws.path, vectors=vecs + 1, overwrite=True)
    assert again.sharded and not (ws.path / layout.EMBEDDINGS).exists()
    np.testing.assert_array_equal(Workspace.open(ws.path).embeddings, vecs + 1)


def test_ids_and_titles_read_in_row_groups(sharded, monkeypatch):
    ws, _ = sharded
    fresh = Workspace.open(ws.path)
    monkeypatch.setattr("embedsae.workspace.CORPUS_ROW_GROUP", 7)
    blocks = list(fresh.corpus_batches(["id"], rows=7))
    assert [len(b) for b in blocks] == [7] * 7 + [1] and list(blocks[0].columns) == ["id"]
    table = _table(50)
    assert fresh.ids == list(table["id"])
    assert fresh.titles() == [t or f"document {i}" for i, t in enumerate(table["title"])]
    assert fresh._corpus is None  # neither read the whole table


def test_settings_are_checked():
    assert EmbedSettings(devices=["cuda:0,cuda:1"]).devices == ["cuda:0", "cuda:1"]
    with pytest.raises(InputError, match="shard_rows"):
        EmbedSettings(shard_rows=0)
    with pytest.raises(InputError, match="does not apply to the ray engine"):
        EmbedSettings(devices=["cpu"], engine="ray")


def test_partial_run_of_another_job_is_discarded(tmp_path, minilm, caplog):
    table = _cranfield(30)
    out = tmp_path / "ws"
    events = []
    with caplog.at_level(logging.INFO, logger="embedsae"):
        pipeline.embed(table, out, embedder=minilm, settings=EmbedSettings(shard_rows=12), progress=events.append)
    assert [e.done for e in events][-1] == 30 and all(e.stage == "embed" and e.total == 30 for e in events)
    assert [e.done for e in events] == sorted(e.done for e in events)
    first = np.array(Workspace.open(out).embeddings)
    # a partial folder left by a run with another shard size does not count as done work
    stale = out / layout.SHARDS_PARTIAL
    stale.mkdir()
    (stale / layout.EMBED_JOB).write_text('{"model": "x", "rows": 30, "shard_rows": 5}')
    np.save(stale / layout.shard_file(0), np.zeros((5, 384), np.float32))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embedsae"):
        ws = pipeline.embed(table, out, embedder=minilm, settings=EmbedSettings(shard_rows=10), overwrite=True)
    assert "discarding the unfinished embedding" in caplog.text and "resuming" not in caplog.text
    assert ws.vectors.shard_bounds() == [(0, 10), (10, 20), (20, 30)]
    assert _cosines(np.asarray(ws.embeddings), first).min() > 0.9999


@pytest.mark.slow
def test_killed_embed_resumes_at_the_first_missing_shard(tmp_path, embedder):
    """SIGKILL a real `embedsae embed` after a few shards, run it again: it embeds only the other shards, and the
    vectors equal an uninterrupted embedding of the same texts."""
    src = shared_path("cranfield", "corpus.jsonl")
    out = tmp_path / "ws"
    argv = [sys.executable, "-m", "embedsae", "embed", str(src), "-o", str(out), "--limit", "100", "--shard-rows", "10",
            "--backend", "torch", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    partial = out / layout.SHARDS_PARTIAL
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while len(list(partial.glob("shard-*.npy"))) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the run ended before it could be killed: " + first.stderr.read()[-2000:]
    first.send_signal(signal.SIGKILL)
    _, err1 = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not Workspace.exists(out) and not (out / layout.SHARDS).exists()
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("shard-*.npy")}
    assert 3 <= len(kept) < 10

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(kept)} of 10 shards already written" in second.stderr
    kept_numbers = {int(re.search(r"\d+", name).group()) + 1 for name in kept}  # 1-based, as the log counts
    logged_first = {int(n) for n in re.findall(r"wrote shard (\d+) of 10", err1)}
    logged_second = [int(n) for n in re.findall(r"wrote shard (\d+) of 10", second.stderr)]
    assert logged_first <= kept_numbers  # (the kill may land between a shard's rename and its log line)
    assert not kept_numbers & set(logged_second) and len(set(logged_second)) == len(logged_second)
    assert sorted(kept_numbers | set(logged_second)) == list(range(1, 11))  # each shard embedded once over both runs
    ws = Workspace.open(out)
    for name, mtime in kept.items():  # the first run's shards were moved into place, not rewritten
        assert (ws.path / layout.SHARDS / name).stat().st_mtime_ns == mtime
    assert ws.vectors.verify() == [] and ws.n_documents == 100
    reference = embedder.embed(ws.corpus["text"].tolist())
    assert _cosines(ws.vectors.read(0, 100), reference).min() >= 0.9999


@pytest.mark.slow
def test_two_cpu_processes_give_the_vectors_of_one(tmp_path, embedder):
    table = _cranfield(120)
    ws = pipeline.embed(table, tmp_path / "ws", backend="torch", settings=EmbedSettings(devices=["cpu,cpu"], shard_rows=50))
    assert ws.manifest["stages"]["embed"]["settings"]["devices"] == ["cpu", "cpu"]
    reference = embedder.embed(ws.corpus["text"].tolist())
    got = ws.vectors.read(0, 120)
    assert _cosines(got, reference).min() >= 0.9999
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_ray_engine_needs_its_extra(tmp_path, minilm, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"embedsae\[ray\]"):
        pipeline.embed(_cranfield(5), tmp_path / "ws", embedder=minilm, settings=EmbedSettings(engine="ray"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Ray Data's own context code
def test_ray_actors_give_the_vectors_of_the_plain_path(tmp_path, embedder):
    pytest.importorskip("ray.data", reason="the ray engine needs pip install 'embedsae[ray]'")
    table = _cranfield(120)
    ws = pipeline.embed(table, tmp_path / "ws", backend="torch",
                        settings=EmbedSettings(engine="ray", ray_actors=2, shard_rows=50))
    assert ws.vectors.shard_bounds() == [(0, 50), (50, 100), (100, 120)]
    reference = embedder.embed(ws.corpus["text"].tolist())
    got = ws.vectors.read(0, 120)
    assert _cosines(got, reference).min() >= 0.9999
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_a_second_embed_into_the_same_folder_is_refused(tmp_path, minilm):
    from embedsae.errors import WorkspaceBusyError

    out = tmp_path / "ws"
    out.mkdir()
    with Workspace(out, {}).stage_lock("embed"), pytest.raises(WorkspaceBusyError, match="running embed"):
        pipeline.embed(_cranfield(5), out, embedder=minilm)
    assert not (out / layout.SHARDS_PARTIAL).exists()
