"""Training streamed from shards: the batch stream, its resume, and SAEs trained through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedsae.data.vectors import ArraySource
from embedsae.sae import SAEConfig, create_sae
from embedsae.sae.stream import BatchStream, StreamPosition
from embedsae.sae.trainer import TrainConfig, split_indices, train_on_array

from .shard_source import NpyShards


def _rows(n: int = 1000, d: int = 8) -> np.ndarray:
    # each row's first coordinate is its row number, so batches can be traced back to rows
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)
    return x


def _ids(batches) -> list[np.ndarray]:
    return [b[:, 0].numpy().astype(np.int64) for b in batches]


def test_stream_visits_every_training_row_once_per_epoch(tmp_path):
    x = _rows()
    source = NpyShards.write(tmp_path, x, [300, 17, 400, 283])
    _, val = split_indices(len(x), 0.1, seed=0)
    stream = BatchStream(source, 32, heldout=val, seed=1, buffer_rows=128, epochs=2)
    assert stream.n_train == 900 and stream.steps_per_epoch == 28
    batches = _ids(stream.batches())
    assert len(batches) == 56 and all(len(b) == 32 for b in batches)
    for epoch in (batches[:28], batches[28:]):
        seen = np.concatenate(epoch)
        assert len(np.unique(seen)) == len(seen) == 28 * 32  # no row twice; 4 dropped with the last partial batch
        assert not np.isin(seen, val).any()
    assert not np.array_equal(np.concatenate(batches[:28]), np.concatenate(batches[28:]))  # reshuffled per epoch
    # a buffer mixes rows from several places of the corpus, not one run of neighbours
    assert np.ptp(batches[0]) > 300
    assert stream.position == StreamPosition(2, 0)


def test_stream_resumes_from_a_position_without_replaying():
    x = _rows()
    source = ArraySource(x, shard_rows=250)
    whole = _ids(BatchStream(source, 16, seed=4, buffer_rows=100, epochs=3).batches())
    stream = BatchStream(source, 16, seed=4, buffer_rows=100, epochs=3)
    start = StreamPosition(1, 13)  # inside a buffer
    rest = _ids(stream.batches(start))
    assert len(rest) == len(whole) - (stream.steps_per_epoch + 13)
    for a, b in zip(whole[stream.steps_per_epoch + 13 :], rest):
        np.testing.assert_array_equal(a, b)


def test_stream_gives_each_rank_its_share_of_the_global_batch():
    source = ArraySource(_rows(), shard_rows=333)
    whole = _ids(BatchStream(source, 32, seed=2, buffer_rows=96, epochs=1).batches())
    shares = [_ids(BatchStream(source, 32, seed=2, buffer_rows=96, epochs=1, rank=r, world_size=2).batches())
              for r in range(2)]
    for i, b in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([shares[0][i], shares[1][i]]), b)


def test_a_failing_read_reaches_the_trainer():
    class Broken(ArraySource):
        def read(self, start, stop):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        next(BatchStream(Broken(_rows()), 16, epochs=1).batches())


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 64, "seed": 3, "noise": 0.2, "shuffle_buffer": 512, **kw})


def test_streamed_training_trains_as_well_as_in_memory(cranfield_ws, tmp_path):
    x = np.asarray(cranfield_ws.embeddings)
    source = NpyShards.write(tmp_path, x, [500, 400, len(x) - 900])
    results = {}
    for mode in (True, False):
        torch.manual_seed(0)
        sae = create_sae(SAEConfig(d_in=x.shape[1], k=8, n_latents=256))
        _, trainer, _ = train_on_array(sae, source, _cfg(), in_memory=mode)
        results[mode] = trainer.log[-1]["val_nmse"]
        first = trainer.log[0]["nmse"]
    assert results[False] < 0.7 * first  # it learned
    assert abs(results[False] - results[True]) < 0.05 * results[True], results


def test_streaming_is_chosen_above_the_byte_threshold(cranfield_ws):
    x = np.asarray(cranfield_ws.embeddings)
    sae = create_sae(SAEConfig(d_in=x.shape[1], k=8, n_latents=128))
    _, trainer, _ = train_on_array(sae, x, _cfg(epochs=1, in_memory_bytes=1000))
    assert trainer.stream is not None
    sae = create_sae(SAEConfig(d_in=x.shape[1], k=8, n_latents=128))
    _, trainer, _ = train_on_array(sae, x, _cfg(epochs=1))
    assert trainer.stream is None


def test_streamed_run_stopped_and_resumed_matches_an_uninterrupted_one(cranfield_ws, tmp_path):
    x = np.asarray(cranfield_ws.embeddings)
    source = NpyShards.write(tmp_path / "shards", x, [700, len(x) - 700])
    cfg = _cfg(checkpoint_every=5)

    def run(folder, **kw):
        torch.manual_seed(0)
        sae = create_sae(SAEConfig(d_in=x.shape[1], k=8, n_latents=256))
        return train_on_array(sae, source, cfg, out_dir=folder, in_memory=False, **kw)

    ref, ref_trainer, _ = run(tmp_path / "ref")
    run(tmp_path / "cut", stop_after=27)  # killed after step 27; the last checkpoint is at step 25
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    spe = ref_trainer.stream.steps_per_epoch
    assert state["step"] == 25 and state["stream"] == {"epoch": 25 // spe, "batch": 25 % spe}
    resumed, trainer, _ = run(tmp_path / "cut", resume=True)
    assert trainer.step == ref_trainer.step
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["nmse"] for r in trainer.log] == pytest.approx([r["nmse"] for r in ref_trainer.log], abs=1e-6)


def test_encoding_and_evaluation_read_shards_in_chunks_with_the_same_results(cranfield_ws, tmp_path):
    from embedsae.sae.codes import encode_array
    from embedsae.sae.metrics import evaluate_sae

    x = np.asarray(cranfield_ws.embeddings)
    source = NpyShards.write(tmp_path, x, [333, 500, len(x) - 833])
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=x.shape[1], k=8, n_latents=256, pursuit=0))
    sae.init_from_data(torch.tensor(x[:500]), seed=1)

    class Counting(NpyShards):
        largest = 0

        def read(self, start, stop):
            Counting.largest = max(Counting.largest, stop - start)
            return super().read(start, stop)

    counted = Counting([tmp_path / f"shard-{i:05d}.npy" for i in range(3)])
    a, b = encode_array(sae, x, batch_size=100), encode_array(sae, counted, batch_size=100)
    assert Counting.largest == 100  # never more than one chunk at a time
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    val = np.arange(0, len(x), 10)
    whole, sharded = evaluate_sae(sae, x, val_indices=val), evaluate_sae(sae, source, val_indices=val)
    sampled = evaluate_sae(sae, source, val_indices=val, max_rows=600)
    assert sharded.keys() == whole.keys()
    for key, value in whole.items():
        if isinstance(value, float):
            assert sharded[key] == pytest.approx(value, rel=1e-5), key
        else:
            assert sharded[key] == value, key
    # 150 rows of each split: all 140 held-out rows and 150 of the others
    assert sampled["n_vectors"] == 290 and sampled["n_heldout"] == 140
    assert sampled["nmse"] == pytest.approx(whole["nmse"], rel=1e-5)
