"""The workspaces a server was started on (named by their folder; the client never names a path) and one cached
`embedsae.Project` per workspace and SAE: every read and write of the app goes through them."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import EmbedSAEError, InputError, NotFoundError, StageMissingError, WorkspaceError
from ..project import Project
from .jobs import JobRunner

T = TypeVar("T")
logger = logging.getLogger(__name__)
SEARCH_THREADS = max(1, min(4, (os.cpu_count() or 2) - 1))
"""Threads of the search pool: one per core but one, at most 4, so a core stays free for the cheap reads (a
search's ranking is short CPU work that holds the GIL for much of its time; more threads only queue inside the
process). On 2 cores, 16 clients: feature-card p50 28-35 ms with one search thread against 54-94 ms with two, at
the same requests/s (benchmarks/serve_load.py, two alternated pairs)."""


NotFound = NotFoundError
"""A workspace, SAE, feature or job the client named does not exist (answered with 404)."""


class Served:
    """One served workspace and its projects (one per SAE, built on first use and kept). A workspace that cannot
    be opened is still served: its answers are its error (409, naming the file), and it is opened again on the next
    request (it may have been repaired), while the other workspaces keep working."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._default: Project | None = None
        self._projects: dict[str, Project] = {}
        self._lock = threading.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        try:
            self.default  # noqa: B018 - opened now, so a damaged workspace is logged at start
        except WorkspaceError as exc:
            logger.warning(str(exc))

    @property
    def default(self) -> Project:
        """The project on the latest SAE (or on none yet: what needs no SAE, the map, works on it)."""
        if self._default is None:
            try:
                p = Project(self.path)
            except EmbedSAEError as exc:
                raise WorkspaceError(f"workspace '{self.name}' cannot be opened: {exc}") from exc
            with self._lock:
                if self._default is None:
                    self._default = self._projects[""] = p
        return self._default

    @property
    def workspace(self):
        """The opened workspace (WorkspaceError naming the file when it cannot be opened)."""
        return self.default.workspace

    def sae_names(self) -> list[str]:
        return self.default.sae_names()

    def project(self, sae: str | None = None) -> Project:
        """The project on `sae` (the latest trained SAE when None)."""
        if sae is not None and sae not in self.sae_names():
            known = ", ".join(self.sae_names()) or "none trained yet"
            raise NotFound(f"workspace '{self.name}' has no SAE '{sae}' (its SAEs: {known})")
        if sae is None and not self.sae_names():
            raise StageMissingError(f"workspace '{self.name}' has no trained SAE yet; start a train job", "train")
        if sae is None:
            return self.default
        with self._lock:
            p = self._projects.get(sae)
            if p is None:
                p = self._projects[sae] = Project(self.workspace, sae)
        return p

    async def embed_async(self, project: Project, texts: list[str]) -> np.ndarray:
        """Query vectors for texts, awaited without holding a thread (the project's embedding worker batches
        concurrent queries); the last 256 are kept."""
        with self._lock:
            out = [self._query_cache.get(t) for t in texts]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            vecs = await asyncio.wrap_future(project.submit_embed([texts[i] for i in todo]))
            with self._lock:
                for i, v in zip(todo, vecs):
                    out[i] = self._query_cache[texts[i]] = v
                while len(self._query_cache) > 256:
                    self._query_cache.popitem(last=False)
        return np.stack(out).astype(np.float32)


class AppState:
    """What the app serves: named workspaces, jobs, and the access token (None = none needed)."""

    def __init__(self, paths: list[str | os.PathLike], token: str | None = None) -> None:
        if not paths:
            raise InputError("give at least one workspace to serve")
        self.workspaces: dict[str, Served] = {}
        for path in paths:
            path = Path(path).resolve()
            name = base = re.sub(r"[^A-Za-z0-9_.-]", "-", path.name) or "workspace"
            i = 2
            while name in self.workspaces:
                name, i = f"{base}-{i}", i + 1
            self.workspaces[name] = Served(name, path)
        self.token = token
        self._paths = sorted(((str(s.path), name) for name, s in self.workspaces.items()), key=lambda p: -len(p[0]))
        self.jobs = JobRunner(redact=self.public)
        self.searches = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="embedsae-search")
        """Searches and text activations run here (their query embedding is awaited before, off any thread),
        so at most SEARCH_THREADS of them compete with the cheap reads that FastAPI runs in its own pool."""
        self.stopping = False
        """Set when the server begins to stop: event streams end, no job starts."""

    def begin_stop(self) -> None:
        """The server was asked to stop: end the event streams and interrupt the running jobs (not waiting)."""
        self.stopping = True
        threading.Thread(target=self.jobs.stop, name="embedsae-stop-jobs", daemon=True).start()

    def close(self, timeout: float = 3.0) -> None:
        """Stop: interrupt the running jobs and wait up to `timeout` seconds for them (then kill them)."""
        self.stopping = True
        self.jobs.stop(timeout)
        self.searches.shutdown(wait=False, cancel_futures=True)

    def public(self, message: str) -> str:
        """A message as the client may see it: each served folder's path replaced by the workspace's name (the
        client knows workspaces by name, never by path)."""
        for path, name in self._paths:
            message = message.replace(path, f"'{name}'")
        return message

    async def run_search_work(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the search pool, awaited."""
        return await asyncio.wrap_future(self.searches.submit(fn, *args))

    def served(self, name: str) -> Served:
        try:
            return self.workspaces[name]
        except KeyError:
            raise NotFound(f"no workspace named '{name}' is served here (served: {', '.join(self.workspaces)})") from None
