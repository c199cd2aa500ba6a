"""Feature families (the seed's method): groups of features at different levels of abstraction, from co-occurrence.

1. Co-occurrence of features over documents, normalised by feature frequency, thresholded.
2. Maximum spanning tree of that graph; each edge oriented from the denser (more general) feature to the
   sparser one.
3. A root (no incoming edge) with more than two children starts a family of all its descendants; so does,
   recursively, each of its children with more than two children.
4. Several rounds: the parents found are removed and the tree is rebuilt, which uncovers families under
   very general features.
5. Families with more than three children are kept; near-duplicates (children overlap above a Jaccard
   threshold) are dropped, the larger kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ..progress import ProgressCallback, track
from .cooccurrence import Cooccurrence
from .settings import FamilySettings


@dataclass
class Family:
    """A parent feature and its descendants in the oriented spanning tree."""

    parent: int
    children: list[int]
    """Descendants of the parent, depth-first."""
    tree_parent: list[int]
    """For each child, its parent in the tree (the family's parent or another child)."""
    round: int = 0
    label: str = ""
    parent_label: str = ""
    child_labels: list[str] = field(default_factory=list)
    cooccurrence_ratio: float | None = None

    @property
    def members(self) -> list[int]:
        return [self.parent, *self.children]

    def depths(self) -> list[int]:
        """Depth of each child below the parent (1 = direct child)."""
        depth = {self.parent: 0}
        for c, p in zip(self.children, self.tree_parent):
            depth[c] = depth[p] + 1
        return [depth[c] for c in self.children]

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent, "children": self.children, "label": self.label, "parent_label": self.parent_label,
            "child_labels": self.child_labels, "tree_parent": self.tree_parent, "depth": self.depths(),
            "size": len(self.children), "round": self.round, "cooccurrence_ratio": self.cooccurrence_ratio,
        }


def oriented_tree(cooc: Cooccurrence, features: np.ndarray, threshold: float,
                  normalisation: Literal["sqrt", "min", "max"] = "sqrt") -> dict[int, list[int]]:
    """Maximum spanning forest of the thresholded normalised co-occurrence among `features`, as feature -> children.

    Edges point from the feature firing in more documents to the one firing in fewer (ties: lower id first).
    """
    from scipy.sparse.csgraph import minimum_spanning_tree

    w = cooc.normalised(features, threshold=threshold, kind=normalisation)
    if w.nnz == 0:
        return {}
    cost = w.copy()
    cost.data = 2.0 - cost.data  # weights are in (0, 1): minimising 2 - w maximises w over each spanning tree
    tree = sp.coo_matrix(minimum_spanning_tree(sp.triu(cost, format="csr")))
    u, v = features[tree.row], features[tree.col]
    fu, fv = cooc.freq[u], cooc.freq[v]
    u_first = (fu > fv) | ((fu == fv) & (u < v))
    parents, kids = np.where(u_first, u, v), np.where(u_first, v, u)
    children: dict[int, list[int]] = {}
    for p, c in sorted(zip(parents.tolist(), kids.tolist())):
        children.setdefault(p, []).append(c)
    return children


def tree_families(children: dict[int, list[int]], min_root_children: int) -> list[tuple[int, list[int], list[int]]]:
    """(parent, descendants, tree parents) for each root with enough children and, recursively, such children."""
    has_parent = {c for cs in children.values() for c in cs}
    found = []
    for root in sorted(children):
        if root in has_parent or len(children[root]) < min_root_children:
            continue
        # depth-first tree from the root (a node reached twice keeps its first parent)
        parent_of: dict[int, int] = {}
        tree_kids: dict[int, list[int]] = {}
        stack, seen = [root], {root}
        while stack:
            node = stack.pop()
            kids = [c for c in children.get(node, []) if c not in seen]
            seen.update(kids)
            tree_kids[node] = kids
            for c in kids:
                parent_of[c] = node
            stack.extend(reversed(kids))

        todo = [root]
        while todo:
            node = todo.pop()
            desc = _descendants(tree_kids, node)
            found.append((node, desc, [parent_of[d] for d in desc]))
            todo.extend(c for c in reversed(tree_kids.get(node, [])) if len(tree_kids.get(c, [])) >= min_root_children)
    return found


def _descendants(tree_kids: dict[int, list[int]], node: int) -> list[int]:
    """All nodes below `node`, depth-first."""
    out, stack = [], list(reversed(tree_kids.get(node, [])))
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(tree_kids.get(n, [])))
    return out


def find_families(
    cooc: Cooccurrence, candidates: np.ndarray, settings: FamilySettings | None = None, *,
    progress: ProgressCallback | None = None,
) -> list[Family]:
    """The feature families among `candidates` (feature ids), largest first, near-duplicates removed."""
    settings = settings or FamilySettings()
    remaining = np.asarray(sorted(set(np.asarray(candidates).tolist())), dtype=np.int64)
    raw: list[Family] = []
    for rnd in track(range(settings.rounds), progress, "families", unit="round"):
        if len(remaining) < 2:
            break
        children = oriented_tree(cooc, remaining, settings.threshold, settings.normalisation)
        found = tree_families(children, settings.min_root_children)
        if not found:
            break
        for parent, desc, tparents in found:
            if len(desc) >= settings.min_children:
                raw.append(Family(parent=parent, children=desc, tree_parent=tparents, round=rnd))
        roots = np.asarray(sorted({f[0] for f in found}), dtype=np.int64)
        remaining = np.setdiff1d(remaining, roots, assume_unique=True)
    return deduplicate(raw, settings.max_jaccard)


def deduplicate(families: list[Family], max_jaccard: float) -> list[Family]:
    """Drop families whose children overlap a larger kept family's by more than `max_jaccard` (Jaccard)."""
    if not families:
        return []
    families = sorted(families, key=lambda f: (-len(f.children), f.round, f.parent))
    n_feat = max(max(f.members) for f in families) + 1
    rows = np.concatenate([np.full(len(f.children), i) for i, f in enumerate(families)])
    cols = np.concatenate([f.children for f in families])
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(families), n_feat))
    m.data[:] = 1.0  # a child listed twice counts once
    inter = (m @ m.T).tocsr()
    sizes = np.asarray(m.sum(axis=1)).ravel()
    kept: list[int] = []
    kept_mask = np.zeros(len(families), dtype=bool)
    for i in range(len(families)):
        lo, hi = inter.indptr[i], inter.indptr[i + 1]
        js, overlap = inter.indices[lo:hi], inter.data[lo:hi]
        sel = kept_mask[js]
        jacc = overlap[sel] / (sizes[i] + sizes[js[sel]] - overlap[sel])
        if np.any(jacc > max_jaccard):
            continue
        kept.append(i)
        kept_mask[i] = True
    return [families[i] for i in kept]


# ---------------------------------------------------------------------------- statistics
def family_cooccurrence_ratio(cooc: Cooccurrence, family: Family) -> float | None:
    """Mean parent-child normalised co-occurrence over mean child-child (off-diagonal); None if undefined."""
    ids = np.asarray([*family.children, family.parent], dtype=np.int64)
    mat = cooc.normalised(ids).toarray()
    n = len(family.children)
    parent_child = mat[-1, :n].mean()
    child_block = mat[:n, :n]
    pairs = n * (n - 1)
    child_child = child_block.sum() / pairs if pairs else 0.0
    if child_child <= 0:
        return None
    return float(parent_child / child_child)


def block_ratios(
    cooc: Cooccurrence, features: np.ndarray, families: list[Family], *, permutations: int = 10, seed: int = 0
) -> tuple[float, float]:
    """Mean normalised co-occurrence inside family blocks over outside them: for the families, and for random blocks.

    Features are ordered family by family (each in its first family, largest first); the others stand alone.
    The random figure averages the same block sizes over random orders of the features.
    """
    features = np.asarray(sorted(set(np.asarray(features).tolist())), dtype=np.int64)
    pos = {int(f): i for i, f in enumerate(features)}
    block = np.full(len(features), -1, dtype=np.int64)
    for b, fam in enumerate(families):
        for f in fam.members:
            i = pos.get(int(f))
            if i is not None and block[i] < 0:
                block[i] = b
    w = sp.coo_matrix(cooc.normalised(features))

    def ratio(blk: np.ndarray) -> float:
        sizes = np.bincount(blk[blk >= 0]) if np.any(blk >= 0) else np.zeros(0, dtype=np.int64)
        in_pairs = float(np.sum(sizes * (sizes - 1)))
        all_pairs = float(len(blk) * (len(blk) - 1))
        same = (blk[w.row] == blk[w.col]) & (blk[w.row] >= 0)
        in_sum, total = float(w.data[same].sum()), float(w.data.sum())
        if in_pairs == 0 or all_pairs == in_pairs:
            return float("nan")
        out_mean = (total - in_sum) / (all_pairs - in_pairs)
        return (in_sum / in_pairs) / out_mean if out_mean > 0 else float("inf")

    rng = np.random.default_rng(seed)
    random = [ratio(rng.permutation(block)) for _ in range(max(permutations, 1))]
    return ratio(block), float(np.mean(random))


def family_stats(
    cooc: Cooccurrence, families: list[Family], candidates: np.ndarray, base: np.ndarray, settings: FamilySettings
) -> dict[str, Any]:
    """The seed's family statistics (and counts): cooccurrence_ratio, block_ratio(_random), coverage."""
    ratios = [family_cooccurrence_ratio(cooc, f) for f in families]
    for f, r in zip(families, ratios):
        f.cooccurrence_ratio = None if r is None else round(r, 4)
    finite = [r for r in ratios if r is not None and np.isfinite(r)]
    block, block_random = block_ratios(cooc, candidates, families, permutations=settings.random_permutations,
                                       seed=settings.seed)
    members = {m for f in families for m in f.members}
    base_set = set(np.asarray(base).tolist())
    sizes = [len(f.children) for f in families]
    return {
        "families": len(families),
        "cooccurrence_ratio": _finite(np.mean(finite)) if finite else None,
        "block_ratio": _finite(block),
        "block_ratio_random": _finite(block_random),
        "coverage": len(members & base_set) / len(base_set) if base_set else 0.0,
        "mean_children": float(np.mean(sizes)) if sizes else 0.0,
        "max_children": int(max(sizes)) if sizes else 0,
        "features_considered": int(len(candidates)),
        "coverage_base": int(len(base_set)),
    }


def _finite(x: float) -> float | None:
    """A float for JSON, None when it is NaN or infinite."""
    x = float(x)
    return x if np.isfinite(x) else None
