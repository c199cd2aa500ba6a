"""One thread for small linear algebra while queries and encodes run, safe when many threads do it at once.

A single query's matrix-vector products gain little from more BLAS threads, and on a busy machine the
extra threads cost a lot: exact dense search of a Cranfield query (1,400 documents) took 0.18 ms with one
BLAS thread against 56 ms without a limit (medians, machine under load); concept search of 100,000
documents 46 against 70 ms; exact dense search of 100,000 documents 225 against 217 ms
(benchmarks/search_latency.py).

BLAS thread counts are process-wide (OpenBLAS's `openblas_set_num_threads_local` too, as measured), so
per-call limits from concurrent threads would restore each other's settings out of order. Here the limit
is reference-counted under a lock: the first query in sets one thread, the last one out restores the
setting. It is set through `openblas_set_num_threads_local` where the library has it, because OpenBLAS
ignores `openblas_set_num_threads` called from a thread other than the one that started its pool (what
threadpoolctl calls), which is every thread of a threaded server; otherwise through threadpoolctl (older
OpenBLAS builds loaded by other packages, e.g. faiss's, then obey only their pool's thread; embedsae's linear
algebra runs on numpy's and scipy's, which have the local setter).
While any query runs, other BLAS work in the same process runs on one thread too.

`torch_single_thread` does the same for torch's intra-op threads (the rounds of the pursuit encoder: their
small batched operations lose more to thread hand-offs than they gain).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

class _OneThread:
    """A reference-counted limit: the first holder sets one thread, the last one out restores the setting."""

    def __init__(self, limit: Callable[[], Callable[[], None]]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self.holders = 0
        self._restore: Callable[[], None] | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self.holders == 0:
                self._restore = self._limit()
            self.holders += 1
        try:
            yield
        finally:
            with self._lock:
                self.holders -= 1
                if self.holders == 0 and self._restore is not None:
                    self._restore()
                    self._restore = None


_setters: list[Callable[[int], int]] | None = None
_modules_seen = -1


def _limit_to_one() -> Callable[[], None]:
    setters = _blas_setters()
    if not setters:
        return lambda: None
    previous = [fn(1) for fn in setters]
    return lambda: [fn(p) for fn, p in zip(setters, previous)] and None


def _blas_setters() -> list[Callable[[int], int]]:
    """One thread-count setter (returning the previous count) per loaded BLAS library: OpenBLAS's
    `openblas_set_num_threads_local` where the library has it, else threadpoolctl's control of that library.
    Looked up again whenever modules were imported since (a new module may bring its own BLAS, e.g. faiss's)."""
    global _setters, _modules_seen
    if _setters is not None and len(sys.modules) == _modules_seen:
        return _setters
    found: list[Callable[[int], int]] = []
    try:
        from threadpoolctl import ThreadpoolController

        for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
            fn = getattr(lib.dynlib, "openblas_set_num_threads_local", None) if lib.internal_api == "openblas" else None
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
                found.append(fn)
            else:
                found.append(_controller_setter(lib))
    except Exception as exc:  # threadpoolctl missing or unable to inspect the process: no limit
        logger.debug(f"no BLAS thread control: {exc}")
    _setters, _modules_seen = found, len(sys.modules)
    return found


def _controller_setter(lib) -> Callable[[int], int]:
    def set_threads(n: int) -> int:
        previous = lib.get_num_threads()
        lib.set_num_threads(n)
        return previous

    return set_threads


def _torch_limit_to_one() -> Callable[[], None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(previous)


blas_single_thread = _OneThread(_limit_to_one)
"""Run the body with BLAS on one thread (nestable, and safe under concurrent callers)."""
torch_single_thread = _OneThread(_torch_limit_to_one)
"""Run the body with torch's CPU ops on one thread (nestable, and safe under concurrent callers)."""


def holders() -> int:
    """How many callers hold the BLAS limit now (0: BLAS runs with its own setting)."""
    return blas_single_thread.holders
