"""Background jobs: a stage (train, interpret, families, index, evaluate, map) run in a worker process, one at a
time per workspace, its progress taken from the stage's progress callback, its error kept. Jobs outlive the
request (and the browser tab) that started them; reads go on while one runs, and the server stops at once
whatever a job is doing (the job is interrupted as by Ctrl-C)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..project import JobProgress, JobRecord

logger = logging.getLogger(__name__)

KEEP_FINISHED = 200
CANCEL_GRACE = 10.0
"""Seconds a cancelled job's process has to end after its SIGINT before it is killed."""
STOP_GRACE = 3.0
"""Seconds the server waits, when it stops, for its interrupted jobs to end before killing them."""


class JobCancelled(Exception):
    """A job was cancelled before its process started."""


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
    progress: JobProgress = field(default_factory=JobProgress)
    """The stage's last progress report (its `fraction` is filled in by `record`)."""
    events: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        p = self.progress
        return 0.0 if not p.total else min(p.done / p.total, 1.0)

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def record(self) -> JobRecord:
        """The job as the API and the screens show it."""
        return JobRecord(
            id=self.id, workspace=self.workspace, kind=self.kind, params=self.params, state=self.state,
            created=self.created, started=self.started, finished=self.finished,
            progress=dataclasses.replace(self.progress, fraction=round(self.fraction, 4)),
            events=self.events, error=self.error, result=self.result, cancel_requested=self.cancel_requested)

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def _notify(self) -> None:
        with self._lock:
            self.events += 1


class JobRunner:
    """Runs each job in a worker process (`embedsae.app.worker`) watched by a thread, and remembers the jobs (the
    newest KEEP_FINISHED finished ones). Cancelling interrupts the worker as Ctrl-C interrupts the CLI; `stop`
    interrupts every running job and waits a few seconds for them."""

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        self._redact = redact
        """Makes a failed job's error fit for the client (no server paths)."""
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.stopping = False

    def submit(self, workspace: str, kind: str, params: dict[str, Any], spec: dict[str, Any]) -> Job:
        """Start the job `spec` (see `embedsae.app.worker`) on `workspace`; JobBusy when one already runs there."""
        with self._lock:
            if self.stopping:
                raise JobBusy("the server is stopping; start the job after it restarts")
            busy = self._running.get(workspace)
            if busy is not None:
                raise JobBusy(f"job {busy} ({self._jobs[busy].kind}) is still running on workspace '{workspace}'; "
                              "wait for it to finish or cancel it")
            job = Job(id=f"j{next(self._ids)}", workspace=workspace, kind=kind, params=params)
            self._jobs[job.id] = job
            self._running[workspace] = job.id
            self._trim()
        threading.Thread(target=self._run, args=(job, spec), name=f"embedsae-job-{job.id}", daemon=True).start()
        return job

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_state]
        for j in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[j.id]

    def _run(self, job: Job, spec: dict[str, Any]) -> None:
        job.state, job.started = "running", time.time()
        job._notify()
        outcome: dict[str, Any] = {}
        stderr: list[str] = []
        try:
            with self._lock:
                if job.cancel_requested or self.stopping:
                    raise JobCancelled(job.id)
                proc = subprocess.Popen([sys.executable, "-m", "embedsae.app.worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
                self._procs[job.id] = proc
            reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
            reader.start()
            proc.stdin.write(json.dumps(spec))
            proc.stdin.close()
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if "progress" in message:
                    e = message["progress"]
                    job.progress = JobProgress(stage=e["stage"], done=int(e["done"]), total=e["total"], unit=e["unit"],
                                               message=e["message"])
                    job._notify()
                else:
                    outcome = message
            code = proc.wait()
            reader.join(5)
            if "result" in outcome and code == 0:
                job.result, job.state = outcome["result"], "done"
            elif job.cancel_requested or "cancelled" in outcome:
                job.state = "cancelled"
            else:
                job.state = "failed"
                job.error = self._redact(outcome.get("error") or _last_line(stderr)
                                         or f"the job's process ended with code {code}")
                if "error" not in outcome:
                    logger.error(f"job {job.id} ({job.kind} on {job.workspace}) failed:\n{''.join(stderr[-40:])}")
        except JobCancelled:
            job.state = "cancelled"
        except OSError as exc:
            if job.cancel_requested:  # cancelled while starting: the killed process's pipe broke
                job.state = "cancelled"
            else:
                job.state, job.error = "failed", self._redact(f"could not start the job's process: {exc}")
        finally:
            job.finished = time.time()
            with self._lock:
                self._procs.pop(job.id, None)
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
        """Interrupt a job (its worker gets SIGINT, as from Ctrl-C; after CANCEL_GRACE seconds it is killed)."""
        job = self._jobs.get(job_id)
        if job is not None and not job.finished_state:
            job.cancel_requested = True
            job._notify()
            with self._lock:
                proc = self._procs.get(job_id)
            if proc is not None:
                _interrupt(proc, CANCEL_GRACE)
        return job

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Refuse new jobs, interrupt the running ones and wait up to `timeout` seconds for them (then kill them)."""
        with self._lock:
            self.stopping = True
            procs = list(self._procs.items())
        for job_id, _ in procs:
            job = self._jobs.get(job_id)
            if job is not None:
                job.cancel_requested = True
                job._notify()
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        end = time.monotonic() + timeout
        for _, proc in procs:
            try:
                proc.wait(max(end - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _interrupt(proc: subprocess.Popen, grace: float) -> None:
    """SIGINT now; SIGKILL after `grace` seconds if the process has not ended (every file it writes is atomic)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)

    def kill_later():
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()

    threading.Thread(target=kill_later, daemon=True).start()


def _last_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:500]
    return ""
