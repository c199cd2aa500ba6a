"""Evaluation encodes once, reuses given codes, and says when it looked at a sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedsae.sae import SAEConfig, create_sae
from embedsae.sae import metrics as metrics_mod
from embedsae.sae.codes import encode_array


@pytest.fixture(scope="module")
def sae_and_vectors(cranfield_ws):
    x = np.asarray(cranfield_ws.embeddings, dtype=np.float32)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=x.shape[1], n_latents=512, k=8))
    sae.init_from_data(torch.from_numpy(x.copy()))
    return sae.eval(), x


def test_evaluation_encodes_once_and_reuses_given_codes(sae_and_vectors, monkeypatch):
    sae, x = sae_and_vectors
    val = np.arange(0, len(x), 20)
    calls = []
    real = metrics_mod.encode_array
    monkeypatch.setattr(metrics_mod, "encode_array", lambda *a, **k: calls.append(1) or real(*a, **k))
    fresh = metrics_mod.evaluate_sae(sae, x, val_indices=val)
    assert calls == [1], "one encode of the vectors, none for the reconstructions"
    reused = metrics_mod.evaluate_sae(sae, x, val_indices=val, codes=encode_array(sae, x))
    assert calls == [1], "given codes are not encoded again"
    for key in ("nmse", "nmse_train", "nmse_all", "l0", "dead_latents", "neighbour_overlap_at_10"):
        assert reused[key] == pytest.approx(fresh[key], rel=1e-6), key
    assert fresh["sample"] is None and fresh["n_vectors"] == len(x) and fresh["n_heldout"] == len(val)
    x_hat = sae.reconstruct(torch.from_numpy(x)).detach().numpy()
    assert fresh["nmse_all"] == pytest.approx(metrics_mod.nmse_np(x, x_hat), rel=1e-5)


def test_large_sets_are_evaluated_on_a_recorded_sample(sae_and_vectors):
    sae, x = sae_and_vectors
    val = np.arange(0, len(x), 10)
    full = metrics_mod.evaluate_sae(sae, x, val_indices=val)
    part = metrics_mod.evaluate_sae(sae, x, val_indices=val, max_rows=700)
    # 700 // 4 = 175 rows of each split: all 140 held-out rows, 175 of the others
    assert part["sample"]["rows"] == 315 and part["sample"]["of"] == len(x) and part["n_vectors"] == 315
    assert part["n_heldout"] == 140 and part["nmse"] == pytest.approx(full["nmse"], rel=1e-6)
    assert part["nmse_all"] == pytest.approx(full["nmse_all"], rel=0.1)
    wide = metrics_mod.evaluate_sae(sae, x, val_indices=np.arange(0, len(x), 2), max_rows=700)
    assert wide["n_heldout"] == 175 and wide["n_vectors"] == 350, "each split sampled alone"
    assert part == metrics_mod.evaluate_sae(sae, x, val_indices=val, max_rows=700), "seeded"


def test_a_large_evaluation_reads_only_its_sample_of_the_stored_codes(sae_and_vectors, tmp_path, monkeypatch):
    """Above the sample size the evaluation takes the sampled rows of the stored codes, never all of them; stored
    codes load memory-mapped, so those rows are all that is read from disk."""
    from embedsae import _io
    from embedsae.sae.codes import Codes

    monkeypatch.setattr(_io, "MMAP_MIN_BYTES", 0)  # this small set's codes are mapped as a large set's are
    sae, x = sae_and_vectors
    val = np.arange(0, len(x), 10)
    stored = encode_array(sae, x)
    stored.save(tmp_path / "codes.npz")
    loaded = Codes.load(tmp_path / "codes.npz")
    assert isinstance(loaded.indices, np.memmap) and isinstance(loaded.values, np.memmap)

    class OnlyRows:
        """An array that may only be read by lists of row numbers; remembers how many rows each read took."""

        def __init__(self, a: np.ndarray) -> None:
            self.a, self.reads = a, []

        def __len__(self) -> int:
            return len(self.a)

        def __getitem__(self, rows):
            rows = np.asarray(rows)
            assert rows.ndim == 1 and rows.dtype.kind == "i", "codes are read by row numbers only"
            self.reads.append(len(rows))
            return self.a[rows]

    guarded = Codes(OnlyRows(loaded.indices), OnlyRows(loaded.values), loaded.n_latents)
    m = metrics_mod.evaluate_sae(sae, x, val_indices=val, codes=guarded, max_rows=700)
    assert guarded.indices.reads == [m["n_vectors"]] == [315] and guarded.values.reads == [315]
    plain = metrics_mod.evaluate_sae(sae, x, val_indices=val, codes=stored, max_rows=700)
    assert m == plain
