"""The workspaces a server was started on (named by their folder; the client never names a path), one cached
`embedsae.Project` per workspace and SAE, and the few reads the app needs beyond the Project's methods."""

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

from ..errors import EmbedSAEError, InputError, StageMissingError, WorkspaceError
from ..project import Project
from ..workspace import Workspace
from .jobs import JobRunner

T = TypeVar("T")
logger = logging.getLogger(__name__)
SEARCH_THREADS = max(1, min(4, (os.cpu_count() or 2) - 1))
"""Threads of the search pool: one per core but one, at most 4, so a core stays free for the cheap reads (a
search's ranking is short CPU work that holds the GIL for much of its time; more threads only queue inside the
process). On 2 cores, 16 clients: feature-card p50 28-35 ms with one search thread against 54-94 ms with two, at
the same requests/s (benchmarks/serve_load.py, two alternated pairs)."""


class NotFound(LookupError):
    """A workspace, SAE, feature or job the client named does not exist (answered with 404)."""


class Served:
    """One served workspace and its projects (one per SAE, built on first use and kept). A workspace that cannot
    be opened is still served: its answers are its error (409), and it is opened again on the next request (it
    may have been repaired), while the other workspaces keep working."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._workspace: Workspace | None = None
        self._projects: dict[str, Project] = {}
        self._lock = threading.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._rows: dict[str, int] | None = None
        try:
            self.workspace  # noqa: B018 - opened now, so a damaged workspace is logged at start
        except WorkspaceError as exc:
            logger.warning(str(exc))

    @property
    def workspace(self) -> Workspace:
        """The opened workspace; WorkspaceError (naming the file) when it cannot be opened."""
        if self._workspace is None:
            try:
                ws = Workspace.open(self.path)
            except EmbedSAEError as exc:
                raise WorkspaceError(f"workspace '{self.name}' cannot be opened: {exc}") from exc
            with self._lock:
                self._workspace = self._workspace or ws
        return self._workspace

    def sae_names(self) -> list[str]:
        return list(self.workspace.sae_names())

    def project(self, sae: str | None = None) -> Project:
        """The project on `sae` (the latest trained SAE when None)."""
        if sae is not None and sae not in self.sae_names():
            known = ", ".join(self.sae_names()) or "none trained yet"
            raise NotFound(f"workspace '{self.name}' has no SAE '{sae}' (its SAEs: {known})")
        key = sae or ""
        with self._lock:
            p = self._projects.get(key)
            if p is None:
                p = self._projects[key] = Project(self.workspace, sae)
        if sae is None and not self.sae_names():
            raise StageMissingError(f"workspace '{self.name}' has no trained SAE yet; start a train job", "train")
        return p

    def map_project(self) -> Project:
        """A project for what needs no SAE (the map): the latest SAE's, or one on no SAE yet."""
        with self._lock:
            p = self._projects.get("")
            if p is None:
                p = self._projects[""] = Project(self.workspace, None)
        return p

    def embed(self, project: Project, texts: list[str]) -> np.ndarray:
        """Query vectors for texts (the workspace's model through the project's searcher), the last 256 kept. A
        workspace with no model to embed text (vectors given with their documents) takes a document's id instead:
        its vector."""
        if not self.workspace.can_embed:
            return self.document_vectors(project, texts)
        out, todo = self._lookup(texts)
        if todo:
            self._fill(out, texts, todo, project.searcher.embed([texts[i] for i in todo]))
        return np.stack(out).astype(np.float32)

    async def embed_async(self, project: Project, texts: list[str]) -> np.ndarray:
        """`embed` awaited without holding a thread: the searcher's embedding worker batches concurrent queries."""
        if not self.workspace.can_embed:
            return self.document_vectors(project, texts)
        out, todo = self._lookup(texts)
        if todo:
            vecs = await asyncio.wrap_future(project.searcher.submit_embed([texts[i] for i in todo]))
            self._fill(out, texts, todo, vecs)
        return np.stack(out).astype(np.float32)

    def document_vectors(self, project: Project, ids: list[str]) -> np.ndarray:
        """The stored vectors of documents named by id; InputError for a text that is no document's id."""
        with self._lock:
            if self._rows is None:
                self._rows = {d: i for i, d in enumerate(project.ids)}
        rows = [self._rows.get(t.strip()) for t in ids]
        if None in rows:
            bad = ids[rows.index(None)]
            raise InputError(f"workspace '{self.name}' holds vectors without a model to embed text with: '{bad[:60]}' "
                             f"is not one of its document ids; give a document's id (e.g. '{project.ids[0]}') to "
                             "find the documents like it")
        return np.asarray(self.workspace.embeddings[np.asarray(rows)], dtype=np.float32)

    def _lookup(self, texts: list[str]) -> tuple[list[np.ndarray | None], list[int]]:
        with self._lock:
            out = [self._query_cache.get(t) for t in texts]
        return out, [i for i, v in enumerate(out) if v is None]

    def _fill(self, out: list[np.ndarray | None], texts: list[str], todo: list[int], vecs: np.ndarray) -> None:
        with self._lock:
            for i, v in zip(todo, vecs):
                out[i] = self._query_cache[texts[i]] = v
            while len(self._query_cache) > 256:
                self._query_cache.popitem(last=False)

    def activations(self, project: Project, texts: list[str], features: list[int], top: int,
                    vecs: np.ndarray | None = None) -> list[dict[str, Any]]:
        """For each text: its top features (id, label, activation) and the activations of `features` (`vecs`:
        the texts' vectors when already embedded)."""
        import torch

        n = int(project.sae_config["n_latents"])
        bad = [f for f in features if f >= n]
        if bad:
            raise NotFound(f"feature {bad[0]} does not exist (SAE '{project.sae_name}' has {n} features, 0..{n - 1})")
        if vecs is None:
            vecs = self.embed(project, texts)
        with torch.no_grad(), project.searcher.single_thread():
            z = project.searcher.query_sae().encode(torch.from_numpy(vecs)).numpy()
        labels = project.labels
        out = []
        for text, row in zip(texts, z):
            active = np.flatnonzero(row > 0)
            order = active[np.argsort(-row[active], kind="stable")][:top]
            out.append({
                "text": text,
                "top_features": [{"id": int(j), "label": labels.get(int(j), ""), "activation": round(float(row[j]), 5)}
                                 for j in order],
                "activations": {str(f): round(float(row[f]), 5) for f in features},
            })
        return out

    def query_features(self, project: Project, query: str) -> list[dict[str, Any]]:
        """The query's active features with label and activation, strongest first."""
        return self.activations(project, [query], [], top=int(project.sae_config["n_latents"]))[0]["top_features"]


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
        self._paths = sorted(((str(s.path), name) for name, s in self.workspaces.items()),
                             key=lambda p: -len(p[0]))
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
