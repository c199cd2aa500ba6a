"""Interactive and static views of a workspace (UMAP maps, concept-detection figures)."""
