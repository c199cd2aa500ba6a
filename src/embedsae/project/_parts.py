"""The one cache of a project's loaded parts (SAE, codes, labels, tables, searchers), each kept while the files
it came from are unchanged: a stage that writes (in this process or another) changes those files, and the next
read rebuilds what depends on them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import layout

if TYPE_CHECKING:
    from ..search.hybrid import HybridSettings
    from ..workspace import Workspace


class Parts:
    """The workspace, the SAE a project works on, and its cached parts."""

    def __init__(self, workspace: Workspace | str | os.PathLike, sae: str | None = None) -> None:
        from ..workspace import Workspace  # pandas: imported when a project opens, not for `embedsae --help`

        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self._requested_sae = sae
        self._parts: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.RLock()

    @property
    def path(self) -> Path:
        return self.workspace.path

    @property
    def sae_name(self) -> str:
        """The SAE this project works on (the latest trained one unless another was asked for)."""
        return self._part("sae_name", (layout.MANIFEST,), lambda: self.workspace.resolve_sae(self._requested_sae),
                          sae_files=False)

    def _stamp(self, files: Sequence[str], sae_files: bool = True) -> tuple:
        """What a cached part depends on: size and mtime of its files (missing files count too)."""
        folder = self.workspace.sae_dir(self.sae_name) if sae_files else self.path
        out: list[tuple] = [(str(folder),)]
        for name in files:
            path = folder / name
            try:
                st = path.stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, None, None))
        return tuple(out)

    def _part(self, key: str, files: Sequence[str], build: Callable[[], Any], *, sae_files: bool = True) -> Any:
        stamp = self._stamp(files, sae_files) if files else ()
        hit = self._parts.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with self._lock:
            hit = self._parts.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            value = build()
            self._parts[key] = (stamp, value)
            return value

    def refresh(self) -> None:
        """Forget every cached part (they are rebuilt on next use)."""
        with self._lock:
            self._parts.clear()
        self.workspace.reload_manifest()

    # ------------------------------------------------------------------ the parts
    @property
    def sae(self):
        """The SAE model (torch), on the CPU."""
        return self._part("sae", (layout.SAE_WEIGHTS, layout.SAE_CONFIG), lambda: self.workspace.load_sae(self.sae_name))

    @property
    def sae_config(self) -> dict[str, Any]:
        """The SAE's cfg.json (architecture, k, n_latents, ...), read without loading the model."""
        from ..sae.base import read_config

        return self._part("cfg", (layout.SAE_CONFIG,), lambda: read_config(self.workspace.sae_dir(self.sae_name)).to_dict())

    @property
    def codes(self):
        """The documents' sparse codes (stored ones when they match the SAE, else computed in memory)."""
        from ..sae.codes import stored_codes, workspace_codes

        def build():
            return stored_codes(self.workspace, self.sae_name) or workspace_codes(self.workspace, self.sae_name)

        return self._part("codes", (layout.SAE_WEIGHTS, layout.CODES), build)

    @property
    def activation_stats(self):
        """Per-feature activation columns and statistics (embedsae.structure.cooccurrence.ActivationStats)."""
        from ..structure.cooccurrence import ActivationStats

        return self._part("stats", (layout.SAE_WEIGHTS, layout.CODES), lambda: ActivationStats(self.codes))

    @property
    def labels(self) -> dict[int, str]:
        """Feature id -> name, the same in every view (interpreted names, else quick title keywords)."""
        return self._labels()

    def _labels(self):
        from ..interpret import feature_labels

        return self._part("labels", (layout.SAE_WEIGHTS, layout.FEATURES_DB, layout.FEATURES_DB + "-wal"),
                          lambda: feature_labels(self.workspace, self.sae_name, codes=self.codes))

    def feature_table(self):
        """Every feature with stats, name, description and scores (a DataFrame), or None before `interpret`."""
        from ..interpret.store import FeatureStore

        def build():
            store = FeatureStore.read(self.workspace.sae_file(self.sae_name, layout.FEATURES_DB))
            if store is None:
                return None
            try:
                return store.table()
            finally:
                store.close()

        return self._part("table", (layout.FEATURES_DB, layout.FEATURES_DB + "-wal"), build)

    @property
    def titles(self) -> list[str]:
        return self._part("titles", (layout.CORPUS,), self.workspace.titles, sae_files=False)

    @property
    def ids(self) -> list[str]:
        return self._part("ids", (layout.CORPUS,), lambda: self.workspace.ids, sae_files=False)

    @property
    def searcher(self):
        """The searcher of this SAE with the default settings (indexes load on first use)."""
        return self.searcher_for()

    def searcher_for(self, *, ann: bool = False, hybrid: HybridSettings | None = None):
        """A searcher with these settings, kept while the SAE and its indexes are unchanged; it takes the SAE,
        labels and titles from this project, so they are loaded once and follow a stage that rewrites them."""
        from ..search import HybridSettings, Searcher

        hybrid = hybrid or HybridSettings()
        key = f"searcher-{ann}-{sorted(hybrid.to_dict().items())}"
        if not self.workspace.sae_names():  # dense and BM25 search work before any SAE is trained
            return self._part(key, (layout.MANIFEST,), lambda: Searcher(self.workspace, ann=ann, hybrid=hybrid),
                              sae_files=False)
        files = (layout.SAE_WEIGHTS, layout.CONCEPT_INDEX, layout.FEATURES_DB)
        return self._part(key, files, lambda: Searcher(self.workspace, self.sae_name, ann=ann, hybrid=hybrid,
                                                       parts=self))

    def _neighbour_finder(self):
        from ..structure.neighbours import NeighbourFinder

        def build():
            labels = self._labels()
            return NeighbourFinder(self.sae_name, self.sae, self.codes, labels, labels.source)

        return self._part("neighbours", (layout.SAE_WEIGHTS, layout.CODES, layout.FEATURES_DB), build)
