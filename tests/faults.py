"""Faults the tests provoke on real file systems: mounts (read-only binds, small tmpfs that fill up)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    """Mount something at `target` (root and mount(8) needed), or skip the test saying why."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or 'mount failed'}); the fault needs a mount")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def tmpfs(target: Path, size: str) -> contextlib.AbstractContextManager[Path]:
    """A small tmpfs of `size` (e.g. "128k") at `target`, or skip saying why."""
    return mounted("-t", "tmpfs", "-o", f"size={size}", "tmpfs", target=target)
