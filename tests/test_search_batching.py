"""Query embedding shared by concurrent callers (embedsae.search.batching) with the real all-MiniLM-L6-v2 and a
real Searcher on the Cranfield workspace: batched vectors equal the unbatched ones, and searches from many
threads at once rank as they do one by one."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from embedsae.search import Searcher
from embedsae.search.batching import BatchingEmbedder

QUERIES = [f"{a} {b}" for a in ("boundary layer", "wing flutter", "heat transfer", "shock wave")
           for b in ("at hypersonic speed", "in a wind tunnel", "of slender bodies", "theory", "experiments", "drag")]


class Gated:
    """The real model, whose first call waits until `ready` is set (so the others queue meanwhile)."""

    def __init__(self, inner) -> None:
        self.inner, self.ready, self.calls = inner, threading.Event(), []

    def embed(self, texts):
        self.calls.append(len(texts))
        if len(self.calls) == 1:
            assert self.ready.wait(60)
        return self.inner.embed(texts)


def run_threads(fn, n: int) -> list:
    out: list = [None] * n
    start = threading.Barrier(n)

    def call(i: int) -> None:
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_concurrent_queries_share_a_pass_and_equal_the_unbatched_vectors(minilm):
    alone = np.stack([minilm.embed([q])[0] for q in QUERIES])
    gated = Gated(minilm)
    batcher = BatchingEmbedder(lambda: gated)
    first = batcher.submit([QUERIES[0]])
    while not gated.calls:  # the worker is inside the first pass
        threading.Event().wait(0.01)
    rest = [batcher.submit([q]) for q in QUERIES[1:]]
    gated.ready.set()
    got = np.stack([f.result(120)[0] for f in [first, *rest]])
    assert gated.calls == [1, len(QUERIES) - 1] and batcher.batches == 2  # the waiting queries made one pass
    cos = (got * alone).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(alone, axis=1)
    assert cos.min() >= 0.9999, cos.min()


def test_a_failing_pass_fails_each_of_its_callers_and_the_next_pass_works(minilm):
    class Flaky:
        calls = 0

        def embed(self, texts):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("model fell over")
            return minilm.embed(texts)

    batcher = BatchingEmbedder(Flaky)
    with pytest.raises(RuntimeError, match="model fell over"):
        batcher.embed(["wing flutter"])
    assert batcher.embed(["wing flutter"]).shape == (1, minilm.dim)


def test_searches_from_many_threads_rank_as_one_by_one(cranfield_ws):
    one_by_one = Searcher(cranfield_ws)
    want = [[h["id"] for h in one_by_one.search(q, "dense", 10).hits] for q in QUERIES]
    shared = Searcher(cranfield_ws)
    got = run_threads(lambda i: [h["id"] for h in shared.search(QUERIES[i], "dense", 10).hits], len(QUERIES))
    assert got == want
    assert shared._batcher.batches < len(QUERIES)  # some queries shared a forward pass
