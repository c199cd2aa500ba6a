"""Word workspaces and concept groups, maps, matching two SAEs, and SAEs in the formats of other tools."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import Metrics
from ._stages import Stages

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from ..words.concepts import ConceptReport
    from ..words.groups import ConceptGroups


class Words(Stages):
    @classmethod
    def words(cls, source: str, out: str | os.PathLike, *, progress: ProgressCallback | None = None, **kwargs: Any):
        """A workspace whose documents are words: `source` is glove50, minilm or a word2vec/GloVe text file
        (embedsae.words.sources.build_word_workspace takes the rest)."""
        from ..words.sources import build_word_workspace

        return cls(build_word_workspace(source, out, progress=progress, **kwargs))

    def recommended_train(self) -> dict[str, Any]:
        """The training settings recommended for this workspace's kind of vectors (word vectors have their own)."""
        from ..words.sources import RECOMMENDED_TRAIN

        return dict(RECOMMENDED_TRAIN) if "words" in self.workspace.manifest.get("stages", {}) else {}

    @staticmethod
    def concept_groups(groups: ConceptGroups | Mapping[str, list[str]] | str | os.PathLike) -> ConceptGroups:
        """Concept groups from a file (a categories CSV or `Group: w1, w2` lines; give a Path), from such lines as
        text, or from a mapping group -> words."""
        from ..words.groups import ConceptGroups, parse_groups, read_groups

        if isinstance(groups, ConceptGroups):
            return groups
        if isinstance(groups, Path | os.PathLike):
            return read_groups(groups)
        return parse_groups(groups, source="request")

    def concepts(self, groups: Any, *, name: str | None = None, baselines: tuple[str, ...] = ("raw", "pca", "ica"),
                 progress: ProgressCallback | None = None, **kwargs: Any) -> tuple[ConceptReport, dict[str, Path]]:
        """How well features (and the raw-dimension / PCA / ICA baselines) detect concept groups; with `name`
        the report is also written (saes/<sae>/concepts/<name>.json and .png). Returns the report and the files
        written."""
        from ..words.concepts import concept_report, concepts_stage

        groups = self.concept_groups(groups)
        if name is None:
            return concept_report(self.workspace, groups, sae=self._requested_sae, baselines=baselines, progress=progress,
                                  **kwargs), {}
        return concepts_stage(self.workspace, groups, name, sae=self._requested_sae, baselines=baselines, **kwargs)

    def column_groups(self, column: str, **kwargs: Any) -> ConceptGroups:
        """Concept groups from a corpus column: one group per value (e.g. per category), members the documents
        that carry it (embedsae.words.groups.column_groups)."""
        from ..errors import InputError
        from ..words.groups import column_groups

        usable = [c for c in self.workspace.corpus.columns if c not in ("id", "text")]
        if column not in usable:
            raise InputError(f"no column '{column}' to group the documents by; the corpus has: {', '.join(map(str, usable))}")
        return column_groups(self.ids, self.workspace.corpus[column], column, **kwargs)

    def group_labels(self, groups: Any) -> tuple[list[str], Any]:
        """Each document's concept group (its first group; "other" for none) and the match of the groups' words
        (colours of the map)."""
        from ..viz.map import coloring

        groups = self.concept_groups(groups)
        return coloring(self.workspace, "group", groups=groups).labels, groups.match(self.ids)

    @staticmethod
    def concept_baselines() -> tuple[str, ...]:
        """The directions features are compared with in a concept report (raw dimensions, PCA, ICA)."""
        from ..words.baselines import BASELINES

        return BASELINES

    def write_map(self, out: str | os.PathLike, *, color_by: str | None = None, groups: Any = None, dims: int = 2,
                  seed: int = 0, progress: ProgressCallback | None = None) -> tuple[Path, Path]:
        """The interactive map (offline HTML) and a PNG, coloured by a concept group, a feature or a column (the
        layout is the stored one, computed and stored first when there is none)."""
        from ..viz.map import write_map

        groups = self.concept_groups(groups) if groups is not None else None
        sae = self.sae_name if self.sae_names() else None
        return write_map(self.workspace, out, color_by=color_by, groups=groups, dims=dims, sae=sae, seed=seed,
                         progress=progress)

    def match(self, other: str, *, min_cosine: float = 0.35) -> dict[str, Any]:
        """Map each feature of this SAE to its closest feature of the SAE `other` (usually a larger one) by
        decoder cosine, with the splitting trees."""
        from ..structure.matching import match_saes

        return match_saes(self.workspace, self.sae_name, other, min_cosine=min_cosine)

    # ------------------------------------------------------------------ other tools' formats
    def import_sae(self, source: str | os.PathLike | None = None, *, hub: str | None = None,
                   **kwargs: Any) -> Metrics:
        """Add an SAE of another tool (saerch .pth, SAELens, sparsify, embedsae; or `hub`: REPO[/FILE] on the
        Hugging Face hub) to this workspace and evaluate it (embedsae.interop.import_sae takes the rest)."""
        from ..errors import InputError
        from ..interop import download_from_hub, import_sae

        if (source is None) == (hub is None):
            raise InputError("give either an SAE file or folder, or a hub name REPO[/FILE]")
        metrics = import_sae(self.workspace, download_from_hub(hub) if hub else source, **kwargs)
        self.refresh()
        return Metrics.from_dict(metrics)

    def export(self, out: str | os.PathLike, fmt: str, *, card: bool = True, overwrite: bool = False) -> Path:
        """Write this SAE for SAELens, sparsify, sentence-transformers or embedsae (a hub-ready folder)."""
        from ..interop import export_sae

        return export_sae(self.workspace, out, fmt, sae_name=self.sae_name, card=card, overwrite=overwrite)
