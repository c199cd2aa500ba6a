"""Vector sources: shard bounds, reads across shards, chosen rows, chunks."""

import numpy as np
import pytest

from embedsae.data.vectors import ArraySource, VectorSource, as_source, iter_chunks
from embedsae.errors import InputError


def test_array_source_reads_rows_across_shards() -> None:
    x = np.arange(50, dtype=np.float32).reshape(10, 5)
    src = ArraySource(x, shard_rows=4)
    assert isinstance(src, VectorSource)
    assert src.shape == (10, 5)
    assert src.shard_bounds() == [(0, 4), (4, 8), (8, 10)]
    np.testing.assert_array_equal(src.read(3, 9), x[3:9])
    rows = np.array([7, 1, 7, 0])
    np.testing.assert_array_equal(src.take(rows), x[rows])
    chunks = list(iter_chunks(src, 3))
    assert [s for s, _ in chunks] == [0, 3, 4, 7, 8]
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), x)


def test_as_source_wraps_arrays_and_refuses_bad_shapes() -> None:
    x = np.zeros((3, 2), dtype=np.float64)
    src = as_source(x)
    assert src.read(0, 3).dtype == np.float32
    assert as_source(src) is src
    with pytest.raises(InputError, match="2-D"):
        ArraySource(np.zeros(4))
    with pytest.raises(InputError, match="at least 1"):
        list(iter_chunks(src, 0))


def test_unit_rows_reads_only_what_is_asked() -> None:
    from embedsae.data.vectors import UnitRows, blocks, unit, unit_rows

    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 4)).astype(np.float32)
    x[5] = 0.0
    expected = unit(x)
    assert np.allclose(np.linalg.norm(expected[np.arange(23) != 5], axis=1), 1) and not expected[5].any()
    lazy = unit_rows(ArraySource(x, shard_rows=7), in_memory_bytes=0)
    assert isinstance(lazy, UnitRows) and lazy.shape == (23, 4)
    np.testing.assert_array_equal(lazy[np.array([9, 2, 9])], expected[[9, 2, 9]])
    np.testing.assert_array_equal(lazy[3:11], expected[3:11])
    np.testing.assert_array_equal(lazy[4], expected[4])
    lazy.chunk_rows = 5
    starts = [s for s, _ in blocks(lazy)]
    assert starts == [0, 5, 7, 12, 14, 19, 21]  # blocks never cross a shard
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks(lazy)]), expected)
    in_memory = unit_rows(x)
    assert isinstance(in_memory, np.ndarray)
    np.testing.assert_array_equal(in_memory, expected)
