"""Names that tell features apart: after labelling, features that share a name are renamed from their own
candidates, each by what separates it from the others that had the same name.

A name's key ignores case, spacing and a plural "s" ("Backdoor attacks" and "backdoor attack" are one name).
For each group of features sharing a key, every member's candidates (its labeller's best, with the criterion the
labeller gave them) are scored again: the labeller's criterion plus `CONTRAST_WEIGHT` x the AUC of the member's
shown activating documents against the other members' (with the candidate's embedding). The pairs (member,
candidate) are then taken best first, each name at most once in the whole SAE, so the member that the shared
name fits best may keep it and the others get the candidate that sets them apart. A member left without a
candidate keeps the shared name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

CONTRAST_WEIGHT = 1.0
"""Weight of the AUC against the other members' documents next to the labeller's criterion."""

_SPACE = re.compile(r"\s+")


def name_key(name: str) -> str:
    """The key two names are the same under: lower case, single spaces, each word without a plural "s"."""
    words = _SPACE.sub(" ", name.strip().lower()).split(" ")
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def shared_names(names: Mapping[int, str]) -> dict[str, list[int]]:
    """Key -> the features (two or more, ascending) that share a name under `name_key`."""
    groups: dict[str, list[int]] = {}
    for f, name in names.items():
        groups.setdefault(name_key(name), []).append(int(f))
    return {k: sorted(v) for k, v in groups.items() if len(v) > 1}


def distinct_share(names: Sequence[str]) -> float | None:
    """Share of names that no other name equals under `name_key` (None for no names)."""
    if not names:
        return None
    keys = [name_key(n) for n in names]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return sum(counts[k] == 1 for k in keys) / len(keys)


def rename_shared(
    names: Mapping[int, str],
    candidates: Mapping[int, Mapping[str, float]],
    contrast: Callable[[int, list[int], list[str]], np.ndarray],
) -> dict[int, str]:
    """New names for features that share one (feature -> new name; features keeping theirs are left out).

    `names` are the names of all the SAE's labelled features (a new name must differ from every one of them);
    `candidates[f]` are feature f's candidate names with the labeller's criterion (features without any keep
    their name); `contrast(f, others, cands)` gives, per candidate, the AUC of f's shown activating documents
    against those of the `others`.
    """
    groups = shared_names(names)
    taken = {name_key(n) for f, n in names.items() if name_key(n) not in groups}
    out: dict[int, str] = {}
    for key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        pairs = []
        for f in members:
            if f not in candidates:  # a feature without candidates keeps its name (and takes it first)
                pairs.append((float("inf"), f, names[f]))
                continue
            cands = dict(candidates[f])
            cands.setdefault(names[f], max(cands.values(), default=0.0))
            texts = list(cands)
            others = [g for g in members if g != f and g in candidates]
            score = np.asarray([cands[c] for c in texts]) + CONTRAST_WEIGHT * np.asarray(contrast(f, others, texts))
            pairs += [(float(s), f, c) for s, c in zip(score, texts)]
        done: set[int] = set()
        for _, f, c in sorted(pairs, key=lambda t: (-t[0], t[1], t[2])):
            k = name_key(c)
            if f in done or k in taken:
                continue
            done.add(f)
            taken.add(k)
            if c != names[f]:
                out[f] = c
        taken.add(key)  # members left without a free candidate keep the shared name
    return out
