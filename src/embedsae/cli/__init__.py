"""The `embedsae` command line: a thin layer that parses arguments and calls the library.

Each module listed in COMMAND_MODULES has a `register(subparsers)` function that adds its commands;
every command's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence

from .._version import __version__

COMMAND_MODULES = [
    "embedsae.cli.core",
    "embedsae.cli.interpret",
    "embedsae.cli.structure",
    "embedsae.cli.search",
    "embedsae.cli.words",
    "embedsae.cli.interop",
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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except EmbedSAEError as exc:
        message = with_flags(str(exc), parser, args.command) + _next_step(exc, args)
        print(f"embedsae {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embedsae {args.command}: interrupted; every file written is whole (nothing half-written is kept)"
              + _resume_hint(args), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"embedsae {args.command}: error: {_DISK_ERRORS[exc.errno]}{where}; nothing was written: "
              f"{'free some space' if exc.errno == errno.ENOSPC else 'use a folder you can write to'} and run it again",
              file=sys.stderr)
        return 2


_DISK_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


def _resume_hint(args: argparse.Namespace) -> str:
    if args.command == "train":
        return "; run the same command with --resume to continue from the last checkpoint"
    if args.command in ("interpret", "run"):
        return "; run the same command again to continue where it stopped"
    return ""


def _next_step(exc: Exception, args: argparse.Namespace) -> str:
    """The command that fixes a missing workspace or stage."""
    from ..errors import NotAWorkspaceError, StageMissingError

    ws = getattr(args, "workspace", None) or getattr(args, "output", None) or "WS"
    if isinstance(exc, NotAWorkspaceError):
        return f" (embedsae embed CORPUS -o {ws})"
    if isinstance(exc, StageMissingError):
        hint = {"train": f"embedsae train {ws} --k 32 --latents 3072", "interpret": f"embedsae interpret {ws}"}
        return f"; run: {hint.get(exc.stage, f'embedsae {exc.stage} {ws}')}"
    return ""


def with_flags(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """The library names settings as `name`; on the command line, say the command's flag for each instead."""
    import re

    flags: dict[str, str] = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        sub = action.choices.get(command) if hasattr(action, "choices") else None
        for opt in getattr(sub, "_actions", []):
            long = [o for o in opt.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(opt.dest, long[0])
    return re.sub(r"`([a-z_]+)`", lambda m: flags.get(m.group(1), m.group(1)), message)


def _log_to_stderr() -> None:
    """Library messages (the `embedsae` logger) go to stderr as plain lines, so stdout stays clean for --json."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is at the time (it may be replaced between two in-process calls)."""

        @property
        def stream(self):  # type: ignore[override]
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    root = logging.getLogger("embedsae")
    if not any(type(h).__name__ == "CurrentStderr" for h in root.handlers):
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
