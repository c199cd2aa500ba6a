"""A job's work in a process of its own: `python -m embedsae.app.worker` reads the job from stdin (JSON: workspace
path, kind and the stage's settings), runs it with `embedsae.Project.run_stage`, and writes to stdout one JSON line per
progress report (`{"progress": {...}}`, at most five a second) and a last line, `{"result": ...}` or
`{"error": ...}`.

SIGINT stops it as Ctrl-C stops the CLI: the stage unwinds, every file written is whole, `train` resumes from its
last checkpoint and `interpret` where it stopped (exit code 130). The server keeps no stage's threads of its own,
so it can stop at once whatever a job is doing, and a job's crash never takes the server with it."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from ..errors import EmbedSAEError
from ..progress import ProgressEvent

EVENT_INTERVAL = 0.2
"""Least time between two progress lines (a stage's first and last reports, and a new message before its first
unit, are always sent)."""


def run_job(spec: dict[str, Any], progress) -> dict[str, Any]:
    """Run one job (`spec`: workspace, kind, values: the stage's settings) and return its summary record."""
    import embedsae

    return embedsae.open(spec["workspace"]).run_stage(spec["kind"], progress=progress, **spec["values"]).to_dict()


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else writes to stdout (a library's print) goes to stderr, not into the event lines
    last: dict[str, Any] = {"time": 0.0, "what": None}

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")

    def progress(event: ProgressEvent) -> None:
        now, what = time.monotonic(), (event.stage, event.message if event.done == 0 else None)
        final = event.total is not None and event.done >= event.total
        if now - last["time"] < EVENT_INTERVAL and what == last["what"] and not final:
            return
        last["time"], last["what"] = now, what
        send({"progress": {"stage": event.stage, "done": int(event.done), "total": event.total, "unit": event.unit,
                           "message": event.message}})

    try:
        spec = json.loads(sys.stdin.read())
        result = run_job(spec, progress)
    except KeyboardInterrupt:
        send({"cancelled": True})
        return 130
    except EmbedSAEError as exc:
        send({"error": str(exc)})
        return 2
    except Exception as exc:  # noqa: BLE001 - reported as the job's error; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
