"""Settings in one place: dataclasses whose field docstrings are the help text.

Every group of settings (training, examples, clean filter, concept index, families, LLM, ...) is a
dataclass deriving from `Settings`. Its fields carry their defaults and, in the docstring right below each
field, the text that the CLI shows as `--help` and the HTTP API as the schema's description. Validation
happens in one way: `validate()` runs after construction and raises `InputError` naming the setting.
Front ends build their options from `fields_of(cls)`; they restate no default and no help text.
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
class FieldInfo:
    """One setting: its name, Python type, default and help text."""

    name: str
    type: Any
    """The field's type with Optional removed (int, float, str, bool, a Literal, or a list type)."""
    optional: bool
    """True when None is an allowed value."""
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    """Allowed values, for Literal-typed settings."""


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
            if f.choices is not None and value not in f.choices:
                raise InputError(f"setting '{f.name}' is '{value}'; use one of: {', '.join(map(str, f.choices))}")

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
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, optional = _strip_optional(hints.get(f.name, Any))
        choices = tuple(typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else None
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(FieldInfo(f.name, tp, optional, default, docs.get(f.name, ""), choices))
    return tuple(out)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else functools.reduce(operator.or_, args)), True
    return tp, False
