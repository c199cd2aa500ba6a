"""The base of the records: JSON round trips, and the JSON form of numpy values, NaN and nested records."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")

INTERPRETED = "interpret"
"""`label_source` of names made by the interpret stage."""
KEYWORDS = "keywords"
"""`label_source` of the quick title keywords given to the features of an SAE that was never interpreted."""


def plain(value: Any) -> Any:
    """A JSON-ready copy: records and mappings as dicts, numpy scalars and arrays as numbers and lists, NaN and
    infinities as None."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Record:
    """Base of the records: JSON round trips that keep every field (None where there is no value)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any] | None) -> R:
        """A record from a mapping: unknown keys are ignored, nested records are built from their dicts."""
        data = data or {}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data or not f.init:
                continue
            kwargs[f.name] = _build(hints.get(f.name), data[f.name])
        return cls(**kwargs)


def _build(tp: Any, value: Any) -> Any:
    """`value` converted to type `tp` where `tp` is a record, a list of records or an optional record."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return [_build(inner, v) for v in value]
    if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, dict):
        return tp.from_dict(value)
    return value


def number(v: Any) -> float | None:
    """A finite number rounded to 6 decimals, or None for NaN, infinities and what is not a number."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not math.isfinite(f) else round(f, 6)
