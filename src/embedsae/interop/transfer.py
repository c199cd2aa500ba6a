"""SAEs in and out of a workspace: import another tool's SAE as a trained SAE, export one to another tool."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import layout
from .._io import disk_error, write_json, write_text
from ..errors import InputError, ModelMismatchError, require
from ..registry import EXPORT_FORMATS as EXPORT_FORMAT_REGISTRY
from ..workspace import Workspace
from . import formats
from .card import model_card

logger = logging.getLogger(__name__)

EXPORT_FORMATS = EXPORT_FORMAT_REGISTRY.names()


def import_sae(
    ws: Workspace | str | os.PathLike,
    source: str | os.PathLike,
    *,
    name: str | None = None,
    k: int | None = None,
    fmt: str | None = None,
    trained_on: str | None = None,
    evaluate: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Add an SAE file or folder of another tool as a trained SAE of the workspace; returns its metrics.

    The SAE must take vectors of the workspace's dimension and, where its files name an embedding model,
    that model (set `trained_on` to the workspace's model to vouch for files that name another or none).
    It is saved like a trained SAE (saes/<name>/), becomes the latest, and is evaluated (metrics.json).
    """
    from ..pipeline import _check_name, _evaluate_locked, _same_model, check_new_sae, replace_sae

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    got = formats.read_sae(source, fmt=fmt, k=k)
    sae = got.sae
    if sae.cfg.d_in != ws.dim:
        raise ModelMismatchError(
            f"the SAE in {source} takes {sae.cfg.d_in}-d vectors but workspace {ws.path} holds {ws.dim}-d vectors of "
            f"'{ws.model_id}'" + (f"; it was trained on '{got.model_id}' vectors" if got.model_id else "")
        )
    model = trained_on or got.model_id
    if model is None:
        logger.warning("%s names no embedding model; assuming it fits the workspace's '%s'", source, ws.model_id)
    elif not _same_model(model, ws.model_id):
        raise ModelMismatchError(
            f"the SAE in {source} was trained on vectors of '{model}' but workspace {ws.path} holds vectors of "
            f"'{ws.model_id}'; embed the corpus with '{model}', or set `trained_on` to '{ws.model_id}' if its "
            "vectors do come from that model"
        )
    sae.cfg.model_id = ws.model_id
    sae.cfg.extra = {**sae.cfg.extra, "imported": {"format": got.format, "source": str(source), **got.details}}
    name = name or _default_name(Path(source))
    _check_name(name)
    check_new_sae(ws, name, overwrite)
    with ws.sae_lock(name, "import an SAE"):
        check_new_sae(ws, name, overwrite)
        work = ws.saes_dir / f".partial-{name}"
        if work.exists():
            shutil.rmtree(work)
        sae.save(work)
        replace_sae(ws, name, work)
        ws.record_stage(f"import:{name}", {"format": got.format, "source": str(source), "k": sae.cfg.k, **got.details})
        ws.set_latest_sae(name)
        logger.info("imported %s SAE '%s' (k=%d, %d latents) into %s", got.format, name, sae.cfg.k, sae.cfg.n_latents,
                    ws.path)
        return _evaluate_locked(ws, name, True) if evaluate else {"sae": name}


def _default_name(source: Path) -> str:
    name = source.stem if source.is_file() else source.name
    return name.lstrip(".") or "imported"


def download_from_hub(spec: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch `REPO/FILE` (a saerch .pth) or `REPO` / `REPO/FOLDER` (an SAE folder) from the Hugging Face hub."""
    hub = require("huggingface_hub", "Downloading SAEs from the Hugging Face hub")
    parts = spec.strip("/").split("/")
    if len(parts) < 2:
        raise InputError(f"'{spec}' is not a hub location; give OWNER/REPO or OWNER/REPO/PATH")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        if sub.endswith((".pth", ".pt")):
            return Path(hub.hf_hub_download(repo, sub, cache_dir=cache_dir))
        folder = hub.snapshot_download(repo, allow_patterns=[f"{sub}/*"] if sub else None, cache_dir=cache_dir)
    except Exception as exc:
        raise InputError(f"could not download '{spec}' from the Hugging Face hub: {exc}") from exc
    return Path(folder) / sub if sub else Path(folder)


def export_sae(
    ws: Workspace | str | os.PathLike, out: str | os.PathLike, fmt: str, *, sae_name: str | None = None,
    card: bool = True, overwrite: bool = False,
) -> Path:
    """Write one of the workspace's SAEs as a folder for another tool (with a README.md model card).

    Formats: saelens, sparsify and embedsae (an SAE folder each) and sentence-transformers (the workspace's
    embedding model and the SAE as one SparseEncoder). `overwrite` replaces an existing non-empty folder.
    """
    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format '{fmt}'; use one of {', '.join(EXPORT_FORMATS)}")
    name = ws.resolve_sae(sae_name)
    out = Path(out)
    check_export_folder(out, ws)
    if out.exists() and not (out.is_dir() and (overwrite or not any(out.iterdir()))):
        raise InputError(f"{out} exists and is not an empty folder; choose another output folder or set `overwrite` to replace it")
    with ws.sae_lock(name, "export the SAE", shared=True):  # no stage replaces the SAE while it is read
        sae = ws.load_sae(name)
        work = out.parent / f".{out.name}.partial"  # the folder appears complete or not at all
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            _write(ws, name, sae, fmt, work, card, str(out))
        except BaseException as exc:
            shutil.rmtree(work, ignore_errors=True)
            disk = disk_error(exc)
            if disk is not None and disk is not exc:
                raise disk from exc
            raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    logger.info("exported SAE '%s' of %s as %s to %s", name, ws.path, fmt, out)
    return out


def check_export_folder(out: Path, ws: Workspace) -> None:
    """Refuse an export folder that would replace or mix with work: the current folder or one holding it, a
    workspace, a folder inside one, or a folder holding one."""
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise InputError(f"'{out}' is the current folder or holds it; export to a new folder, e.g. {ws.path.name}-export")
    for folder in (target, *target.parents):
        if Workspace.exists(folder) or folder == ws.path.resolve():
            where = "is" if folder == target else "lies inside"
            raise InputError(f"'{out}' {where} the workspace {folder}; export to a folder outside every workspace")
    for root, _, files in os.walk(target):  # nothing to walk when the folder is new
        if layout.MANIFEST in files:
            raise InputError(f"'{out}' holds the workspace {root}; export to a folder outside every workspace")


def _write(ws: Workspace, name: str, sae, fmt: str, work: Path, card: bool, shown_path: str) -> None:
    from ..pipeline import load_metrics

    if fmt == "saelens":
        formats.write_saelens(sae, work, model_id=ws.model_id, log10_density=_log10_density(ws, name))
    elif fmt == "sparsify":
        formats.write_sparsify(sae, work, model_id=ws.model_id)
    elif fmt == "embedsae":
        formats.write_embedsae(sae, work, model_id=ws.model_id)
    else:
        from .st_encoder import export_sparse_encoder

        export_sparse_encoder(ws, sae, work)
    metrics = load_metrics(ws, name)
    if metrics is not None and fmt == "embedsae":
        write_json(work / "metrics.json", metrics)
    if card:
        write_text(work / "README.md", model_card(sae, fmt, name=name, model_id=ws.model_id, metrics=metrics,
                                                  documents=ws.n_documents, path=shown_path))


def _log10_density(ws: Workspace, name: str) -> np.ndarray:
    """log10 of each latent's firing share over the workspace's documents (SAELens' sparsity file; -10 if dead)."""
    from ..sae.codes import workspace_codes

    density = workspace_codes(ws, name).density()
    return np.log10(np.maximum(density, 1e-10)).astype(np.float32)
