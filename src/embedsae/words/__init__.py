"""Word embeddings as workspaces, concept groups, and how well features detect them (against baselines)."""

from .concepts import ConceptReport, concept_report
from .groups import ConceptGroups, read_groups
from .sources import RECOMMENDED_TRAIN, build_word_workspace, load_glove50, read_text_vectors

__all__ = [
    "RECOMMENDED_TRAIN",
    "ConceptGroups",
    "ConceptReport",
    "build_word_workspace",
    "concept_report",
    "load_glove50",
    "read_groups",
    "read_text_vectors",
]
