"""Settings in one place: dataclasses whose field docstrings are the help text.

Every group of settings (training, examples, clean filter, concept index, families, LLM, ...) is a
dataclass deriving from `Settings`. Its fields carry their defaults, their bounds (`Annotated[int, Range(ge=1)]`),
the registry their value comes from (`Annotated[str, OneOf(LABELLERS)]`) and, in the docstring right below each
field, the text that the CLI shows as `--help` and the app as its forms' and schemas' help. Validation happens in
one way: `validate()` runs after construction and raises `InputError` naming the setting. Front ends build their
options, forms and request schemas from `fields_of(cls)`; they restate no default, bound, choice or help text.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import operator
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import InputError

S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric setting (`Annotated[int, Range(ge=1)]`); `what` names it in messages."""

    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    what: str | None = None

    def problem(self, value: float) -> str | None:
        """Why `value` is out of bounds ("must be at least 1"; a share: "must be in [0, 1)"), or None."""
        too_low = (self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
        too_high = (self.lt is not None and not value < self.lt) or (self.le is not None and not value <= self.le)
        if not (too_low or too_high):
            return None
        lo, hi = (self.gt if self.gt is not None else self.ge), (self.lt if self.lt is not None else self.le)
        if lo is not None and hi is not None and hi - lo <= 1:  # a share or a probability: name the interval
            return (f"must be in {'(' if self.gt is not None else '['}{_num(lo)}, "
                    f"{_num(hi)}{')' if self.lt is not None else ']'}")
        if too_low:
            if self.gt is not None:
                return "must be positive" if self.gt == 0 else f"must be above {_num(self.gt)}"
            return f"must be at least {_num(self.ge)}" if self.ge else "must be 0 or more"
        return f"must be below {_num(self.lt)}" if self.lt is not None else f"must be at most {_num(self.le)}"


def _num(x: float | None) -> str:
    return f"{int(x):,}" if x is not None and float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class OneOf:
    """A setting whose value is the name of an entry of a registry (`embedsae.registry`): its choices are the names
    registered when they are read, so a plug-in registered later appears in every front end."""

    registry: Any
    extra: tuple[str, ...] = ()
    """Values allowed besides the registered names (e.g. "auto")."""


@dataclass(frozen=True)
class FieldInfo:
    """One setting: its name, Python type, default, bounds, choices and help text."""

    name: str
    type: Any
    """The field's type with Optional removed (int, float, str, bool, a Literal, or a list type)."""
    optional: bool
    """True when None is an allowed value."""
    default: Any
    help: str
    literal_choices: tuple[Any, ...] | None = None
    """Allowed values of a Literal-typed setting."""
    one_of: OneOf | None = None
    """The registry whose names are the allowed values."""
    range: Range | None = None
    """Bounds of a numeric setting."""
    pattern: str | None = None
    """A regular expression a text setting must match."""

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values (a Literal's, or the registry's names as registered now), or None for any."""
        if self.one_of is not None:
            return (*self.one_of.extra, *self.one_of.registry.names())
        return self.literal_choices


class Settings:
    """Base of every settings dataclass: validation after construction, dict round trips, field help."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError when a value is out of range (subclasses extend this)."""
        for f in fields_of(type(self)):
            value = getattr(self, f.name)
            if value is None:
                if not f.optional:
                    raise InputError(f"setting '{f.name}' needs a value")
                continue
            if f.one_of is not None and value not in f.one_of.extra:
                f.one_of.registry.check(value)  # "unknown labeller 'x'; use one of ..."
                continue
            choices = f.choices
            if choices is not None and value not in choices:
                raise InputError(f"setting '{f.name}' is '{value}'; use one of: {', '.join(map(str, choices))}")
            if f.range is not None and isinstance(value, int | float) and not isinstance(value, bool):
                problem = f.range.problem(value)
                if problem:
                    raise InputError(f"{f.range.what or f.name.replace('_', ' ')} {problem}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any] | None) -> S:
        """Settings from a dict, ignoring keys this version does not know (older or newer workspaces)."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def replace(self: S, **changes: Any) -> S:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def check(condition: bool, message: str) -> None:
    """Raise InputError(message) unless `condition` holds (the one way settings are validated)."""
    if not condition:
        raise InputError(message)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (and of its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


@functools.cache
def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """Every init field of a settings dataclass with its type, default, choices and help text."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, meta = _strip_annotated(hints.get(f.name, Any))
        tp, optional = _strip_optional(tp)
        tp, more = _strip_annotated(tp)
        meta += more
        choices = tuple(typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else None
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(FieldInfo(f.name, tp, optional, default, docs.get(f.name, ""), choices,
                             next((m for m in meta if isinstance(m, OneOf)), None),
                             next((m for m in meta if isinstance(m, Range)), None)))
    return tuple(out)


def _strip_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, tuple(meta)
    return tp, ()


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else functools.reduce(operator.or_, args)), True
    return tp, False
