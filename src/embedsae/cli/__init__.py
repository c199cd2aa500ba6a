"""The `embedsae` command line: a thin layer that parses arguments and calls the library.

Each module listed in COMMAND_MODULES has a `register(subparsers)` function that adds its commands;
every command's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

COMMAND_MODULES = [
    "embedsae.cli.core",
    "embedsae.cli.interpret",
    "embedsae.cli.structure",
    "embedsae.cli.search",
    "embedsae.cli.words",
    "embedsae.cli.app",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedsae",
        description="Sparse autoencoders that make dense embeddings interpretable and steerable.",
    )
    parser.add_argument("--version", action="version", version=f"embedsae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors the user can fix are printed as one line (exit code 2), without a traceback."""
    import warnings

    from ..errors import EmbedSAEError

    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    _log_to_stderr()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except EmbedSAEError as exc:
        print(f"embedsae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _log_to_stderr() -> None:
    """Library messages (the `embedsae` logger) go to stderr as plain lines, so stdout stays clean for --json."""
    import logging

    root = logging.getLogger("embedsae")
    if not any(getattr(h, "_embedsae_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._embedsae_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
