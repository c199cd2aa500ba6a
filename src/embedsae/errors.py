"""Errors that users see: each names what was wrong and how to fix it."""

from __future__ import annotations


class EmbedSAEError(Exception):
    """Base class for every error embedsae raises on purpose (the CLI prints these without a traceback)."""


class InputError(EmbedSAEError, ValueError):
    """The corpus, vectors or arguments given are unusable."""


class WorkspaceError(EmbedSAEError):
    """A workspace is missing, incomplete, or does not match what was asked for."""


class WorkspaceBusyError(WorkspaceError):
    """Another process is writing the same part of the workspace."""


class DamagedFileError(WorkspaceError):
    """A file of a workspace cannot be read (truncated, overwritten, not what its name says); `path` names it and
    the message says how to make it again."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class NotAWorkspaceError(WorkspaceError):
    """A path holds no workspace."""


class StageMissingError(WorkspaceError):
    """What was asked for needs a stage that has not run yet (`stage` names it: "train", "interpret", ...)."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class ModelMismatchError(WorkspaceError):
    """A workspace (or SAE) was made with another embedding model or dimension than the one asked for."""


class MissingDependencyError(EmbedSAEError, ImportError):
    """An optional dependency needed for this feature is not installed."""


def require(module: str, feature: str, extra: str | None = None):
    """Import an optional dependency, or raise a MissingDependencyError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f'pip install "embedsae[{extra}]"' if extra else f"pip install {module.split('.')[0]}"
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module.split('.')[0]}', which is not installed. "
            f"Install it with: {hint}"
        ) from exc
