"""Job forms and job request schemas, built from the library's stage settings (`embedsae.stages`): every default,
bound, choice and help text comes from the library, so the app restates none of them. A field whose choices come
from a registry (architectures, labellers) is checked against the registry when a request arrives, so a plug-in
registered before the app starts is offered and accepted."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ..settings import FieldInfo
from ..stages import STAGES, stage_fields


class JobBase(BaseModel):
    """A job request: the stage (`kind`) and its settings; a setting left out keeps the library's default."""

    model_config = ConfigDict(extra="forbid")

    def values(self) -> dict[str, Any]:
        """The settings given (not None), by the stage's field names."""
        return {k: v for k, v in self.model_dump(exclude={"kind"}).items() if v is not None}


def _in_registry(f: FieldInfo):
    def check(value: Any) -> Any:
        if value is not None and value not in (f.choices or ()):
            raise ValueError(f"'{value}' is not one of {', '.join(map(str, f.choices or ()))}")
        return value

    return AfterValidator(check)


def pydantic_field(f: FieldInfo) -> tuple[Any, Any]:
    """(annotation, default) of one setting as a pydantic field, with its bounds, pattern and help."""
    tp: Any = Literal[f.literal_choices] if f.literal_choices else f.type  # type: ignore[valid-type]
    meta: list[Any] = []
    constraints: dict[str, Any] = {"description": f.help or None}
    if f.range is not None:
        constraints.update({k: getattr(f.range, k) for k in ("ge", "le", "gt", "lt") if getattr(f.range, k) is not None})
    if f.pattern is not None:
        constraints["pattern"] = f.pattern
    if f.one_of is not None:
        meta.append(_in_registry(f))
    default = None if f.default is dataclasses.MISSING else f.default
    annotated = Annotated[tp, Field(**constraints), *meta] if meta else Annotated[tp, Field(**constraints)]
    if f.optional or default is None:
        return annotated | None, default
    return annotated, default


def job_model(kind: str) -> type[JobBase]:
    """The request model of one stage's job."""
    fields = {f.name: pydantic_field(f) for f in stage_fields(kind)}
    model = create_model(f"{kind.capitalize()}Job", __base__=JobBase, __doc__=STAGES[kind].help,
                         kind=(Literal[kind], ...), **fields)  # type: ignore[call-overload]
    return model


JOB_MODELS: dict[str, type[JobBase]] = {kind: job_model(kind) for kind in STAGES}
JobRequest = Annotated[typing.Union[tuple(JOB_MODELS.values())], Field(discriminator="kind")]  # noqa: UP007
"""A job request of any stage, told apart by `kind`."""


def registry_choices() -> dict[str, dict[str, list[Any]]]:
    """Job model name -> {field: the registered choices} for the fields whose values come from a registry."""
    return {model.__name__: {f.name: list(f.choices or ()) for f in stage_fields(kind) if f.one_of is not None}
            for kind, model in JOB_MODELS.items()}


def form_fields(kind: str) -> list[dict[str, Any]]:
    """The inputs of a stage's form: name, input type, default, bounds, choices, help."""
    out = []
    for f in stage_fields(kind):
        if f.name == "sae":
            continue  # the form runs on the SAE chosen in the page's menu
        default = None if f.default is dataclasses.MISSING else f.default
        item: dict[str, Any] = {"name": f.name, "label": f.name.replace("_", " "), "help": f.help, "default": default,
                                "choices": list(f.choices) if f.choices else None}
        if f.type is bool:
            item["input"] = "checkbox"
        elif f.choices:
            item["input"] = "select"
        elif f.type in (int, float):
            item["input"] = "number"
            item["step"] = "1" if f.type is int else "any"
            r = f.range
            if r is not None:
                item["min"] = r.ge if r.ge is not None else r.gt
                item["max"] = r.le if r.le is not None else r.lt
        else:
            item["input"] = "text"
            item["pattern"] = (f.pattern or "").strip("^$") or None
        out.append(item)
    return out


def form_values(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """A submitted form as a job request's fields: empty inputs left out (the library's default), checkboxes
    as booleans."""
    out: dict[str, Any] = {"kind": kind}
    for f in stage_fields(kind):
        if f.type is bool:
            out[f.name] = form.get(f.name) in ("true", "on", "1")
            continue
        value = str(form.get(f.name, "")).strip()
        if value:
            out[f.name] = value
    return out
