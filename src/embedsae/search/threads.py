"""One BLAS thread while queries run, safe when many threads search at once.

A single query's matrix-vector products gain nothing from more BLAS threads, and BLAS threads competing
with torch's for the same cores cost time. threadpoolctl's limit is process-wide, so nested or concurrent
per-call limits would restore each other's settings out of order. Here the limit is reference-counted
under a lock: the first query in sets one thread, the last one out restores the original setting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_holders = 0
_limiter: Any = None
_controller: Any = None


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run the body with BLAS on one thread (nestable, and safe under concurrent callers)."""
    global _holders, _limiter, _controller
    with _lock:
        if _holders == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _limiter.restore_original_limits()
                _limiter = None


def holders() -> int:
    """How many callers hold the limit now (0 when BLAS runs with its own setting)."""
    return _holders
