"""Numba kernels compiled once per process, with one logged fallback when numba cannot compile them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class Compiled:
    """What `compile` returns (numba kernels), built (or loaded from numba's cache) once, by the first caller.
    When it fails, `get` returns None from then on and one warning says `what` is unavailable and `fallback` is
    used instead."""

    def __init__(self, compile: Callable[[], Any], what: str, fallback: str) -> None:
        self._compile, self.what, self.fallback = compile, what, fallback
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any | None:
        """The kernels, or None when they cannot be compiled."""
        with self._lock:
            if self._value is None:
                try:
                    self._value = self._compile()
                except Exception as exc:  # noqa: BLE001 - any numba failure means: use the fallback
                    logger.warning("%s is unavailable (%s); using %s", self.what, exc, self.fallback)
                    self._value = False
        return self._value or None

    def available(self) -> bool:
        """Whether the kernels can be used."""
        return self.get() is not None
