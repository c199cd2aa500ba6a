"""Errors that users see: each names what was wrong and how to fix it."""

from __future__ import annotations


class EmbedSAEError(Exception):
    """Base class for every error embedsae raises on purpose (the CLI prints these without a traceback)."""


class InputError(EmbedSAEError, ValueError):
    """The corpus, vectors or arguments given are unusable."""


class NotFoundError(InputError, LookupError):
    """Something the user named does not exist: a feature id, a document row, an SAE, a workspace, a job."""


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


def check_feature(feature: object, n_latents: int, sae: str | None = None) -> int:
    """The feature id as an int, or a NotFoundError saying which ids exist (the one place feature ids are checked)."""
    try:
        f = int(feature)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InputError(f"a feature id must be a whole number, got '{feature}'") from None
    if not 0 <= f < n_latents:
        owner = f"SAE '{sae}'" if sae else "the SAE"
        raise NotFoundError(f"feature {f} does not exist: {owner} has features 0 to {n_latents - 1}")
    return f


def check_row(row: object, n_documents: int, workspace: str) -> int:
    """A document row as an int, or a NotFoundError saying which rows exist."""
    try:
        r = int(row)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InputError(f"a document row must be a whole number, got '{row}'") from None
    if not 0 <= r < n_documents:
        raise NotFoundError(f"no document row {r}: workspace {workspace} has {n_documents} documents, "
                            f"rows 0..{n_documents - 1}")
    return r


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
