"""Background jobs: a stage (train, interpret, families, index, evaluate) run in a thread, one at a time per
workspace, its progress taken from the stage's progress callback, its error kept. Jobs outlive the request (and
the browser tab) that started them; reads go on while one runs."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..progress import ProgressEvent
from ..project import JobProgress, JobRecord

logger = logging.getLogger(__name__)

KEEP_FINISHED = 200


class JobCancelled(Exception):
    """Raised inside a stage (from its progress callback) when its job was cancelled."""


class JobBusy(Exception):
    """Another job is running on the workspace."""


@dataclass
class Job:
    """One run of a stage on a served workspace."""

    id: str
    workspace: str
    kind: str
    params: dict[str, Any]
    state: str = "queued"
    """queued, running, done, failed or cancelled."""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: str = ""
    done: int = 0
    total: int | None = None
    unit: str = ""
    message: str = ""
    events: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return 0.0 if not self.total else min(self.done / self.total, 1.0)

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def record(self) -> JobRecord:
        """The job as the API and the screens show it."""
        return JobRecord(
            id=self.id, workspace=self.workspace, kind=self.kind, params=self.params, state=self.state,
            created=self.created, started=self.started, finished=self.finished,
            progress=JobProgress(stage=self.stage, done=self.done, total=self.total, unit=self.unit,
                                 message=self.message, fraction=round(self.fraction, 4)),
            events=self.events, error=self.error, result=self.result, cancel_requested=self.cancel_requested)

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def _notify(self) -> None:
        with self.changed:
            self.events += 1
            self.changed.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until the job has changed since `seen` events (or `timeout` passes); returns the event count."""
        with self.changed:
            if self.events == seen and not self.finished_state:
                self.changed.wait(timeout)
            return self.events


class JobRunner:
    """Starts jobs in daemon threads and remembers them (the newest KEEP_FINISHED finished ones)."""

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        self._redact = redact
        """Makes a failed job's error fit for the client (no server paths)."""
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, workspace: str, kind: str, params: dict[str, Any], work: Callable[[Callable], Any]) -> Job:
        """Start `work(progress_callback)` as a job on `workspace`; JobBusy when one already runs there."""
        with self._lock:
            busy = self._running.get(workspace)
            if busy is not None:
                raise JobBusy(f"job {busy} ({self._jobs[busy].kind}) is still running on workspace '{workspace}'; "
                              "wait for it to finish or cancel it")
            job = Job(id=f"j{next(self._ids)}", workspace=workspace, kind=kind, params=params)
            self._jobs[job.id] = job
            self._running[workspace] = job.id
            self._trim()
        threading.Thread(target=self._run, args=(job, work), name=f"embedsae-job-{job.id}", daemon=True).start()
        return job

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_state]
        for j in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[j.id]

    def _run(self, job: Job, work: Callable[[Callable], Any]) -> None:
        def progress(event: ProgressEvent) -> None:
            if job.cancel_requested:
                raise JobCancelled(f"job {job.id} was cancelled")
            job.stage, job.done, job.total = event.stage, int(event.done), event.total
            job.unit, job.message = event.unit, event.message
            job._notify()

        job.state, job.started = "running", time.time()
        job._notify()
        try:
            if job.cancel_requested:
                raise JobCancelled(f"job {job.id} was cancelled")
            result = work(progress)
            job.result = result if isinstance(result, dict) else None
            job.state = "done"
        except JobCancelled:
            job.state = "cancelled"
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported through the job, not raised
            from ..errors import EmbedSAEError

            job.state = "failed"
            job.error = self._redact(str(exc) if isinstance(exc, EmbedSAEError) else f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, EmbedSAEError):
                logger.error(f"job {job.id} ({job.kind} on {job.workspace}) failed:\n{traceback.format_exc()}")
        finally:
            job.finished = time.time()
            with self._lock:
                if self._running.get(job.workspace) == job.id:
                    del self._running[job.workspace]
            job._notify()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self, workspace: str | None = None) -> list[Job]:
        """Jobs, newest first."""
        jobs = [j for j in self._jobs.values() if workspace is None or j.workspace == workspace]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop; it stops at its stage's next progress report."""
        job = self._jobs.get(job_id)
        if job is not None and not job.finished_state:
            job.cancel_requested = True
            job._notify()
        return job
