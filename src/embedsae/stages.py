"""The stages a user can start from a front end (the app's jobs, the API's job requests), and the settings each
one takes: the fields of the library's Settings dataclasses, with their defaults, bounds, choices and help, so a
form or a request schema restates none of them.

`stage_fields("train")` lists what a train job takes; `embedsae.Project.run_stage(kind, ...)` runs one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field

from .errors import InputError
from .settings import FieldInfo, Range, fields_of

SAE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""What an SAE name may look like: letters, digits, '-', '_' and '.', not starting with a dot, 64 characters at
most."""


@dataclass(frozen=True)
class StageSpec:
    """A stage a front end can start: its settings (Settings classes as "module:Class", each with the fields it
    offers, all when None), renamed fields (`n_latents` is offered as `latents`) and fields of its own."""

    kind: str
    help: str
    settings: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    renames: dict[str, str] = field(default_factory=dict)
    own: tuple[FieldInfo, ...] = ()
    on_sae: bool = True
    """Runs on an existing SAE (the request may name it); train makes one."""


def _own(name: str, tp: type, default: object, help: str, *, optional: bool = True, pattern: str | None = None,
         range: Range | None = None) -> FieldInfo:
    return FieldInfo(name, tp, optional, default, help, range=range, pattern=pattern)


STAGES: dict[str, StageSpec] = {
    "train": StageSpec(
        "train", "Train an SAE on the workspace's vectors (and evaluate it).",
        settings=(("embedsae.sae.config:SAEConfig", ("k", "n_latents", "architecture", "pursuit")),
                  ("embedsae.sae.config:TrainConfig", ("epochs", "batch_size", "lr", "noise", "init", "seed"))),
        renames={"n_latents": "latents"},
        own=(_own("name", str, None, "SAE name (default: architecture, k and latents, e.g. topk-k32-n3072).",
                  pattern=SAE_NAME_PATTERN),
             _own("evaluate", bool, True, "Evaluate the SAE after training (metrics.json, density plot).",
                  optional=False),
             _own("overwrite", bool, False, "Replace an SAE of the same name, with its labels, families and concept "
                  "index (without it, such a job is refused).", optional=False)),
        on_sae=False),
    "interpret": StageSpec(
        "interpret", "Name, describe and score every alive feature of the SAE.",
        settings=(("embedsae.interpret.stage:InterpretSettings", ("labeller", "max_features")),)),
    "families": StageSpec(
        "families", "Group the SAE's features into families (co-occurrence trees).",
        settings=(("embedsae.structure.settings:FamilySettings", ("threshold", "normalisation", "max_density")),)),
    "index": StageSpec(
        "index", "Build the concept and BM25 indexes of the SAE.",
        settings=(("embedsae.search.concept:ConceptSettings", ("doc_k",)),),
        own=(_own("lexical", bool, True, "Also build the lexical BM25 index.", optional=False),)),
    "evaluate": StageSpec("evaluate", "Evaluate the SAE (writes metrics.json and the density plot)."),
    "map": StageSpec("map", "Lay the documents out for the map: UMAP in 2-D and 3-D, stored in the workspace.",
                     on_sae=False),
}
"""The stages a front end can start, by kind (a plug-in stage may add itself here)."""


def settings_class(spec: str) -> type:
    """A Settings class from its "module:Class" string."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def stage_spec(kind: str) -> StageSpec:
    try:
        return STAGES[kind]
    except KeyError:
        raise InputError(f"unknown stage '{kind}'; use one of {', '.join(STAGES)}") from None


@functools.cache
def _settings_fields(kind: str) -> tuple[tuple[type, FieldInfo], ...]:
    spec = stage_spec(kind)
    out = []
    for cls_spec, only in spec.settings:
        cls = settings_class(cls_spec)
        by_name = {f.name: f for f in fields_of(cls)}
        for name in only or tuple(by_name):
            f = by_name[name]
            out.append((cls, dataclasses.replace(f, name=spec.renames.get(name, name))))
    return tuple(out)


def stage_fields(kind: str) -> tuple[FieldInfo, ...]:
    """What a stage takes, in order: its settings' fields (renamed) and its own, with defaults, bounds, choices
    and help."""
    spec = stage_spec(kind)
    sae = () if not spec.on_sae else (
        _own("sae", str, None, "The SAE to run on (default: the workspace's latest trained one).",
             pattern=SAE_NAME_PATTERN),)
    return tuple(f for _, f in _settings_fields(kind)) + spec.own + sae


def stage_classes(kind: str) -> tuple[type, ...]:
    """The Settings classes a stage takes, in order."""
    return tuple(dict.fromkeys(cls for cls, _ in _settings_fields(kind)))


def stage_settings(kind: str, values: dict[str, object]) -> dict[type, dict[str, object]]:
    """`values` (by field name as `stage_fields` gives them, None = default) split into keyword arguments per
    Settings class (by the class's own field names)."""
    spec = stage_spec(kind)
    back = {new: old for old, new in spec.renames.items()}
    out: dict[type, dict[str, object]] = {}
    for cls, f in _settings_fields(kind):
        value = values.get(f.name)
        if value is not None:
            out.setdefault(cls, {})[back.get(f.name, f.name)] = value
    return out

