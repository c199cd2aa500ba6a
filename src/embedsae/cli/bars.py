"""Progress bars for the command line: a progress callback (embedsae.progress) that draws tqdm bars on stderr."""

from __future__ import annotations

from typing import Any

from ..progress import ProgressCallback, ProgressEvent


class TqdmProgress:
    """Draws one tqdm bar per running stage; a stage's bar closes when it reports done == total."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}
        self.finished: set[str] = set()

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        complete = event.total is not None and event.done >= event.total
        bar = self.bars.get(event.stage)
        if bar is None and complete and event.stage in self.finished:
            return  # the closing report of a stage whose bar is already closed
        self.finished.discard(event.stage)
        if bar is None:
            bar = tqdm(total=event.total, desc=event.stage, unit=event.unit or "it", initial=event.done, leave=True)
            self.bars[event.stage] = bar
        if event.total != bar.total:
            bar.total = event.total
        if event.done != bar.n:
            bar.update(event.done - bar.n)
        if event.message:
            bar.set_postfix_str(event.message, refresh=False)
        if complete:
            bar.close()
            del self.bars[event.stage]
            self.finished.add(event.stage)


def progress_callback(quiet: bool = False) -> ProgressCallback | None:
    """The callback the CLI hands to library calls: tqdm bars, or none with --quiet."""
    return None if quiet else TqdmProgress()
