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
        """The SAE's cfg.json (architecture, k, n_latents, ...), read without loading the model (nor torch: views
        that show features start in a second; the model's own load checks the whole configuration)."""
        from ..integrity import damaged, read_json_object

        def build() -> dict[str, Any]:
            path = self.workspace.sae_file(self.sae_name, layout.SAE_CONFIG)
            cfg = read_json_object(path, required=("d_in", "n_latents", "k", "architecture"))
            for key in ("d_in", "n_latents", "k"):  # what the views compute with: the rest is checked on load
                if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
                    raise damaged(path, f"'{key}' is {cfg[key]!r}, not a positive whole number")
            if not isinstance(cfg["architecture"], str):
                raise damaged(path, f"'architecture' is {cfg['architecture']!r}, not a name")
            return cfg

        return self._part("cfg", (layout.SAE_CONFIG,), build)

    @property
    def codes(self):
        """The documents' sparse codes (stored ones when they match the SAE, else computed in memory)."""
        from ..sae.codes import stored_codes, workspace_codes

        def build():
            return stored_codes(self.workspace, self.sae_name) or workspace_codes(self.workspace, self.sae_name)

        return self._part("codes", (layout.SAE_WEIGHTS, layout.CODES), build)

    @property
    def activation_stats(self):
        """Per-feature activation columns and statistics (embedsae.structure.cooccurrence.ActivationStats): the
        ones `interpret` stored when they match the codes (memory-mapped), else computed."""
        from ..structure.cooccurrence import activation_stats

        return self._part("stats", (layout.SAE_WEIGHTS, layout.CODES, layout.ACTIVATIONS),
                          lambda: activation_stats(self.workspace, self.sae_name, self.codes))

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
    def titles(self) -> Sequence[str]:
        """Display titles by document row (memory-mapped; a list read once for workspaces without row stores)."""
        return self._part("titles", (layout.CORPUS,), lambda: self._row_store("titles", self.workspace.titles),
                          sae_files=False)

    @property
    def ids(self) -> Sequence[str]:
        """Document ids by row (memory-mapped; a list read once for workspaces without row stores)."""
        return self._part("ids", (layout.CORPUS,), lambda: self._row_store("ids", lambda: self.workspace.ids),
                          sae_files=False)

    def _row_store(self, name: str, whole: Callable[[], list[str]]) -> Sequence[str]:
        return self.workspace.row_store(name) if self.workspace.has_row_stores else whole()

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
            from ..sae.codes import read_decoder
            from ..structure.cooccurrence import feature_cooccurrence

            labels = self._labels()
            cooc = feature_cooccurrence(self.workspace, self.sae_name, self.codes)  # stored by families
            return NeighbourFinder(self.sae_name, read_decoder(self.workspace, self.sae_name), self.codes, labels,
                                   labels.source, cooc=cooc, stats=self.activation_stats)

        return self._part("neighbours", (layout.SAE_WEIGHTS, layout.CODES, layout.FEATURES_DB, layout.COOCCURRENCE,
                                         layout.ACTIVATIONS), build)
