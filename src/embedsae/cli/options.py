"""Command-line options generated from settings dataclasses (embedsae.settings): one flag per field, its
help text the field's docstring, its default the dataclass's own (flags left out keep it)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from ..settings import fields_of

_SCALARS = (int, float, str)


def flag_name(field: str, prefix: str = "") -> str:
    """The flag of a field: `batch_size` with prefix `llm` becomes `--llm-batch-size`."""
    return "--" + (prefix + "-" if prefix else "") + field.replace("_", "-")


def add_settings_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    flags: dict[str, str] | None = None,
) -> None:
    """Add one option per field of `cls` (restricted by `only` / `exclude`); `flags` renames some of them."""
    only_set = set(only) if only is not None else None
    skip = set(exclude)
    for f in fields_of(cls):
        if f.name in skip or (only_set is not None and f.name not in only_set):
            continue
        flag = (flags or {}).get(f.name) or flag_name(f.name, prefix)
        dest = _dest(f.name, prefix)
        default_text = "" if f.default is dataclasses.MISSING or f.default is None else f" (default {f.default})"
        help_text = (f.help or f.name.replace("_", " ")).replace("%", "%%") + default_text
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if f.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if f.one_of is not None:  # checked by the library (one line naming the registered choices), listed here
            kwargs["help"] += f"; one of: {', '.join(map(str, f.choices or ()))}"
            kwargs["type"] = str
        elif f.choices is not None:
            kwargs["choices"] = list(f.choices)
            kwargs["type"] = type(f.choices[0])
        elif f.type in _SCALARS:
            kwargs["type"] = f.type
        elif typing.get_origin(f.type) in (list, tuple):
            inner = (typing.get_args(f.type) or (str,))[0]
            kwargs["type"] = inner if inner in _SCALARS else str
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = str
        kwargs["metavar"] = kwargs.pop("metavar", None) or _metavar(f.type, f.choices)
        if f.choices is not None and f.one_of is None:
            kwargs.pop("metavar")
        parser.add_argument(flag, **kwargs)


def settings_kwargs(cls: type, args: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
    """The fields of `cls` that were given on the command line (those left out keep the dataclass default)."""
    out = {}
    for f in fields_of(cls):
        value = getattr(args, _dest(f.name, prefix), None)
        if value is not None:
            out[f.name] = value
    return out


def _dest(name: str, prefix: str) -> str:
    return f"{prefix.replace('-', '_')}_{name}" if prefix else name


def _metavar(tp: Any, choices: Any) -> str | None:
    if tp is int:
        return "N"
    if tp is float:
        return "X"
    return None
