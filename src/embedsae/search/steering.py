"""Steering a query by editing its SAE features.

A spec is ``ID=VALUE`` or ``"label text"=VALUE``: ``VALUE`` sets the feature's activation (``0`` removes
it), ``+X`` raises it by X and ``-X`` lowers it by X; lowering past zero pushes the query away from the
feature. A feature's largest activation over the documents (``doc_max`` in the steering report) gives the
scale: edits of a few times that move the results visibly (see benchmarks/steering_effect.py). Two forms of the steered vector:

- ``residual`` (default): ``q' = q + W_dec^T (z' - z)``, which keeps what the SAE does not reconstruct;
- ``decode`` (the seed app's form): ``q' = b_pre + W_dec^T z'``, the decoded edited code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, NotFoundError, check_feature

FORMS = ("residual", "decode")
MAX_VALUE = 100.0
"""Largest absolute steering value (set or added): activations are of order 1, and far larger values only
overflow the ranking."""
_SPEC = re.compile(r"^\s*(?P<target>.+?)\s*=\s*(?P<value>[+-]?\s*\d*\.?\d+(?:[eE][+-]?\d+)?)\s*$")


@dataclass
class Edit:
    """One feature edit: which feature, how (set or add), by how much, and how the feature was found."""

    feature: int
    op: str
    value: float
    spec: str = ""
    matched_by: str = "id"
    match_score: float | None = None

    def apply(self, current: float) -> float:
        return current + self.value if self.op == "add" else self.value


@dataclass
class SteerResult:
    """A steered query vector with what changed."""

    vector: np.ndarray
    original: np.ndarray
    changes: list[dict[str, Any]] = field(default_factory=list)
    cosine: float = 1.0
    form: str = "residual"

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "cosine_original_vs_steered": self.cosine, "changes": self.changes}


def parse_spec(spec: str) -> tuple[str, str, float]:
    """('target', op, value) from 'ID=VALUE', 'label=+X' or 'label=-X'."""
    m = _SPEC.match(spec)
    if not m:
        raise InputError(
            f"bad steering spec '{spec}': use ID=VALUE or \"label text\"=VALUE, where VALUE sets the activation "
            "(0 removes the feature), +X raises it and -X lowers it, e.g. 123=0.5 or \"wing flutter\"=+0.3"
        )
    target = m.group("target").strip().strip("\"'").strip()
    raw = m.group("value").replace(" ", "")
    op = "add" if raw[0] in "+-" else "set"
    value = float(raw)
    if not target:
        raise InputError(f"bad steering spec '{spec}': the label is empty; give a feature id or some label text, "
                         "e.g. 123=0.5 or \"wing flutter\"=+0.3")
    if not abs(value) <= MAX_VALUE:
        raise InputError(f"bad steering spec '{spec}': the value must be between -{MAX_VALUE:g} and {MAX_VALUE:g} "
                         "(activations are of order 1)")
    return target, op, value


class Steering:
    """A list of feature edits, applied to query vectors with an SAE."""

    def __init__(self, edits: Sequence[Edit], form: str = "residual") -> None:
        if form not in FORMS:
            raise InputError(f"unknown steering form '{form}'; use one of {', '.join(FORMS)}")
        self.edits = list(edits)
        self.form = form

    def __bool__(self) -> bool:
        return bool(self.edits)

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[str],
        sae,
        *,
        labels: Mapping[int, str] | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        form: str = "residual",
    ) -> Steering:
        """Parse specs; label text resolves to a labelled feature (exact, then substring match), else to the
        feature whose decoder direction is closest to the embedded text (needs `embed`)."""
        edits = []
        for spec in specs:
            target, op, value = parse_spec(spec)
            if target.isdigit():
                try:
                    feature = check_feature(target, sae.cfg.n_latents)
                except NotFoundError as exc:
                    raise NotFoundError(f"steering spec '{spec}': {exc}") from None
                edits.append(Edit(feature, op, value, spec))
                continue
            feature, how, score = resolve_label(target, sae, labels or {}, embed)
            edits.append(Edit(feature, op, value, spec, how, score))
        return cls(edits, form)

    def apply(self, sae, query: np.ndarray, labels: Mapping[int, str] | None = None) -> SteerResult:
        """The steered query vector (same norm handling as the input: unit norm if the input was)."""
        import torch

        q = np.asarray(query, np.float32).reshape(-1)
        with torch.no_grad():
            z = sae.encode(torch.from_numpy(q[None, :]))[0].numpy().astype(np.float32)
        z_new = z.copy()
        changes = []
        for e in self.edits:
            before = float(z_new[e.feature])
            z_new[e.feature] = e.apply(before)
            changes.append({
                "feature": e.feature, "label": (labels or {}).get(e.feature, f"feature {e.feature}"),
                "spec": e.spec, "matched_by": e.matched_by, "match_score": e.match_score,
                "before": round(before, 5), "after": round(float(z_new[e.feature]), 5),
            })
        W = sae.W_dec.detach().numpy()
        if self.form == "residual":
            v = q + (z_new - z) @ W
        else:
            v = z_new @ W + sae.b_pre.detach().numpy()
        norm_q = float(np.linalg.norm(q))
        if abs(norm_q - 1.0) < 1e-3:
            v = v / max(float(np.linalg.norm(v)), 1e-12)
        cos = float(v @ q / max(float(np.linalg.norm(v)) * norm_q, 1e-12))
        return SteerResult(v.astype(np.float32), q, changes, round(cos, 5), self.form)


MIN_DIRECTION_MATCH = 0.5
"""A label text that matches no label steers the feature whose decoder direction is closest to the text's
embedding only from this cosine on; below it the edit is refused (an unrelated feature would be steered)."""


def resolve_label(
    text: str, sae, labels: Mapping[int, str], embed: Callable[[list[str]], np.ndarray] | None
) -> tuple[int, str, float | None]:
    """(feature, how it matched, match score) for a label text."""
    needle = text.strip().lower()
    exact = [i for i, lab in labels.items() if lab.strip().lower() == needle]
    if exact:
        return min(exact), "label", 1.0
    sub = sorted((len(lab), i) for i, lab in labels.items() if needle in lab.lower())
    if sub:
        return sub[0][1], "label substring", round(len(needle) / sub[0][0], 3)
    if embed is None:
        raise InputError(
            f"no feature label matches '{text}'" + ("" if labels else " (this SAE has no labels yet: interpret it)")
            + "; give a feature id instead, e.g. 123=0.5"
        )
    e = np.asarray(embed([text]), np.float32).reshape(-1)
    W = sae.W_dec.detach().numpy()
    d = e - sae.b_pre.detach().numpy()
    sims = W @ d / max(float(np.linalg.norm(d)), 1e-12)
    best = int(np.argmax(sims))
    if sims[best] < MIN_DIRECTION_MATCH:
        closest = np.argsort(-sims)[:3]
        shown = "; ".join(f"{int(i)} '{labels.get(int(i), '')}' ({sims[i]:.2f})" for i in closest)
        raise InputError(
            f"no feature label contains '{text}', and no feature's direction matches it well enough (best cosine "
            f"{sims[best]:.2f} < {MIN_DIRECTION_MATCH}); the closest are {shown}. Steer one of them by id "
            "(e.g. 123=0.5) or use words of a label"
        )
    return best, "decoder direction", round(float(sims[best]), 4)
