"""Progress reporting: long stages report (stage, done, total, message) to an optional callback.

The library never draws bars itself; front ends turn the events into progress bars (the CLI uses tqdm),
job progress (the HTTP API) or nothing. A callback is any callable taking one `ProgressEvent`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProgressEvent:
    """One report from a running stage."""

    stage: str
    """What is running: "embed", "train", "encode", "interpret", "families", "index", ..."""
    done: int
    """Units finished so far."""
    total: int | None
    """Units in all, when known."""
    message: str = ""
    """A short status line (e.g. the current loss)."""
    unit: str = ""
    """What a unit is: "step", "feature", "doc", ..."""

    @property
    def fraction(self) -> float | None:
        """Share done, or None when the total is unknown."""
        return None if not self.total else min(self.done / self.total, 1.0)


ProgressCallback = Callable[[ProgressEvent], None]


class Tracker:
    """Counts the units of one stage and reports each change to the callback (a no-op without one)."""

    def __init__(self, callback: ProgressCallback | None, stage: str, total: int | None, *, unit: str = "",
                 initial: int = 0) -> None:
        self.callback = callback
        self.stage = stage
        self.total = total
        self.unit = unit
        self.done = initial
        self.message = ""
        self._emit()

    def update(self, n: int = 1, message: str | None = None) -> None:
        """Add `n` finished units (and optionally replace the status message)."""
        self.done += n
        if message is not None:
            self.message = message
        self._emit()

    def set_message(self, message: str) -> None:
        """Replace the status message without counting a unit."""
        self.message = message
        self._emit()

    def close(self) -> None:
        """Report the final state (front ends close their bar on done == total)."""
        if self.total is not None and self.done < self.total:
            self.total = self.done
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(self.stage, self.done, self.total, self.message, self.unit))

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def track(iterable: Iterable[T], callback: ProgressCallback | None, stage: str, *, total: int | None = None,
          unit: str = "") -> Iterator[T]:
    """Yield the items of `iterable`, reporting one unit per item."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    tracker = Tracker(callback, stage, total, unit=unit)
    for item in iterable:
        yield item
        tracker.update()
    tracker.close()
