"""The pipeline stages as library calls: embed, train, evaluate, sweep (the CLI is a thin layer over these)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._io import read_json, save_npy, write_json
from .data.embedders import PACKAGED_NAMES, Embedder, l2_normalise, load_embedder, load_vectors, validate_vectors
from .data.readers import read_corpus
from .errors import InputError, ModelMismatchError, WorkspaceError
from .workspace import Workspace, corpus_fingerprint


def log(msg: str) -> None:
    """Progress messages go to stderr, so stdout stays clean for --json output."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- embed
def embed(
    corpus: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    vectors: str | os.PathLike | np.ndarray | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    normalize: bool | None = None,
    batch_size: int = 64,
    backend: str = "auto",
    limit: int | None = None,
    overwrite: bool = False,
    embedder: Embedder | None = None,
    progress: bool = True,
) -> Workspace:
    """Read a corpus, embed it (or take precomputed vectors) and write the workspace.

    Vectors already in `out` for the same model and corpus are reused, not recomputed. A workspace made
    with another model is an error unless `overwrite` is set. `backend` is the embedding engine of a
    sentence-transformers model (auto, torch, onnx, openvino; see data/backends.py).
    """
    if isinstance(corpus, pd.DataFrame):
        from .data.readers import normalise_corpus

        table = normalise_corpus(corpus, text_field=text_field, title_field=title_field, id_field=id_field)
        if limit is not None:
            table = table.iloc[:limit].reset_index(drop=True)
    else:
        table = read_corpus(corpus, text_field=text_field, title_field=title_field, id_field=id_field, limit=limit)
    ids = table["id"].tolist()

    if vectors is not None:
        if isinstance(vectors, np.ndarray):
            arr, source, model_id = vectors, "the vectors given", model or "precomputed"
        else:
            arr, source = load_vectors(vectors), f"vectors from {vectors}"
            model_id = model or f"precomputed:{Path(vectors).name}"
        arr = validate_vectors(arr, ids, expected_rows=len(table), source=source)
        normalized = bool(normalize)
        if normalized:
            arr = l2_normalise(arr)
        _check_existing(out, model_id, arr.shape[1], overwrite)
        settings = {"source": str(corpus) if not isinstance(corpus, pd.DataFrame) else "dataframe", "vectors": source, "normalize": normalized}
        return Workspace.create(out, table, arr, model_id=model_id, normalized=normalized, settings=settings)

    normalized = True if normalize is None else normalize
    if Workspace.exists(out) and not overwrite:
        ws = Workspace.open(out)
        wanted = model if model is not None else (embedder.model_id if embedder else None)
        same_model = wanted is None or _same_model(wanted, ws.model_id)
        if not same_model:
            raise ModelMismatchError(
                f"workspace {out} was embedded with '{ws.model_id}', not '{wanted}'; embed into a new workspace "
                "or pass --overwrite to replace it"
            )
        if ws.manifest.get("corpus_fingerprint") == corpus_fingerprint(table) and ws.manifest["model"].get("normalized") == normalized:
            log(f"workspace {out} already holds {ws.n_documents} vectors of {ws.model_id} for this corpus; not re-embedding")
            return ws
    emb = embedder or load_embedder(model, batch_size=batch_size, normalize=normalized, backend=backend)
    if Workspace.exists(out) and not overwrite:
        _check_existing(out, emb.model_id, emb.dim, overwrite)
    log(f"embedding {len(table)} documents with {emb.model_id} ({emb.dim}-d, {getattr(emb, 'backend', 'its own')} backend)")
    t0 = time.perf_counter()
    arr = emb.embed(table["text"].tolist(), progress=progress)
    arr = validate_vectors(arr, ids, expected_rows=len(table), expected_dim=emb.dim, source="the embeddings")
    settings = {
        "source": str(corpus) if not isinstance(corpus, pd.DataFrame) else "dataframe",
        "batch_size": batch_size, "normalize": normalized, "seconds": round(time.perf_counter() - t0, 2),
    }
    return Workspace.create(out, table, arr, model_id=emb.model_id, normalized=normalized, settings=settings)


def _same_model(a: str, b: str) -> bool:
    return a == b or (a in PACKAGED_NAMES and b in PACKAGED_NAMES)


def _check_existing(out: str | os.PathLike, model_id: str, dim: int, overwrite: bool) -> None:
    if overwrite or not Workspace.exists(out):
        return
    ws = Workspace.open(out)
    if not _same_model(model_id, ws.model_id) or ws.dim != dim:
        raise ModelMismatchError(
            f"workspace {out} holds {ws.dim}-d vectors of '{ws.model_id}', not {dim}-d vectors of '{model_id}'; "
            "embed into a new workspace or pass --overwrite to replace it"
        )


# ---------------------------------------------------------------------------- train
def default_sae_name(architecture: str, k: int, latents: int) -> str:
    return f"{architecture}-k{k}-n{latents}"


def train(
    ws: Workspace | str | os.PathLike,
    *,
    k: int = 32,
    latents: int = 3072,
    architecture: str = "topk",
    name: str | None = None,
    pursuit: int | None = None,
    train_vectors: np.ndarray | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    evaluate: bool = True,
    **train_kwargs: Any,
):
    """Train an SAE on the workspace's vectors (or on `train_vectors`) into saes/<name>/.

    Work happens in a hidden folder holding checkpoints; only a finished SAE is moved into place, so a
    killed run leaves the previous SAE of that name intact and `resume=True` continues it. `pursuit` sets
    `SAEConfig.pursuit` (how the trained SAE encodes; default 4, 0 = plain top-k).
    """
    from .sae import SAEConfig, create_sae
    from .sae.trainer import TrainConfig, config_dict, train_on_array

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    name = name or default_sae_name(architecture, k, latents)
    _check_name(name)
    vectors = np.asarray(ws.embeddings if train_vectors is None else train_vectors, dtype=np.float32)
    if vectors.shape[1] != ws.dim:
        raise ModelMismatchError(f"training vectors are {vectors.shape[1]}-d but workspace {ws.path} holds {ws.dim}-d vectors")
    cfg = SAEConfig(d_in=ws.dim, n_latents=latents, k=k, architecture=architecture, model_id=ws.model_id,
                    **({} if pursuit is None else {"pursuit": pursuit}))
    tcfg = TrainConfig(**train_kwargs)
    work = ws.saes_dir / f".partial-{name}"
    if not resume and work.exists():
        shutil.rmtree(work)
    if resume and not (work / "checkpoint.pt").is_file():
        log(f"no unfinished run of '{name}' to resume; starting from the beginning")
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / "train_config.json", {"sae": cfg.to_dict(), "train": config_dict(tcfg)})
    log(f"training {architecture} SAE '{name}': k={k}, {latents} latents, {len(vectors)} vectors of dim {ws.dim}")
    t0 = time.perf_counter()
    import torch

    torch.manual_seed(tcfg.seed)
    sae = create_sae(cfg)
    sae, trainer, val_idx = train_on_array(sae, vectors, tcfg, out_dir=work, resume=resume, progress=progress, stop_after=stop_after)
    if stop_after is not None and trainer.step < trainer.total_steps:
        trainer.save_checkpoint()
        return sae
    seconds = time.perf_counter() - t0
    sae.save(work)
    save_npy(work / "val_indices.npy", val_idx.astype(np.int64))
    final = ws.sae_dir(name)
    if final.exists():
        shutil.rmtree(final)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    os.replace(work, final)
    from .plots import plot_training_log

    plot_training_log(trainer.log, final / "train_log.png", title=name)
    ws.record_stage(f"train:{name}", {"sae": cfg.to_dict(), "train": config_dict(tcfg)}, seconds=round(seconds, 2))
    ws.set_latest_sae(name)
    log(f"trained '{name}' in {seconds:.1f}s ({trainer.step} steps)")
    if evaluate and train_vectors is None:
        evaluate_sae(ws, name)
    return sae.cpu()


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"invalid SAE name '{name}': use letters, digits, '-', '_' (no slashes, not starting with '.')")


# ---------------------------------------------------------------------------- evaluate
def evaluate_sae(ws: Workspace | str | os.PathLike, name: str | None = None, *, neighbours: bool = True) -> dict[str, Any]:
    """Quality figures of an SAE on the workspace's vectors; written to saes/<name>/metrics.json."""
    from .plots import plot_density_histogram
    from .sae.codes import stored_codes, workspace_codes
    from .sae.metrics import EVAL_ROWS
    from .sae.metrics import evaluate_sae as _evaluate

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    name = ws.resolve_sae(name)
    sae = ws.load_sae(name)
    folder = ws.sae_dir(name)
    val = np.load(folder / "val_indices.npy") if (folder / "val_indices.npy").is_file() else None
    if val is not None and len(val) and val.max() >= ws.n_documents:
        val = None  # trained on other vectors than these
    # small corpora: encode every document once, store the codes for later stages and evaluate on them
    codes = workspace_codes(ws, name, model=sae) if ws.n_documents <= EVAL_ROWS else stored_codes(ws, name)
    metrics = _evaluate(sae, ws.embeddings, val_indices=val, neighbours=neighbours, codes=codes)
    metrics["sae"] = name
    write_json(folder / "metrics.json", metrics)
    plot_density_histogram(metrics, folder / "density.png", title=name)
    return metrics


def load_metrics(ws: Workspace, name: str) -> dict[str, Any] | None:
    path = ws.sae_dir(name) / "metrics.json"
    return read_json(path) if path.is_file() else None


# ---------------------------------------------------------------------------- sweep
def sweep(
    ws: Workspace | str | os.PathLike,
    ks: list[int],
    latents: list[int],
    *,
    architecture: str = "topk",
    progress: bool = True,
    **train_kwargs: Any,
) -> pd.DataFrame:
    """Train and evaluate a grid of k x latents; write sweep.md, sweep.csv and sweep.png into WS/sweep/."""
    from ._io import atomic_path, write_text
    from .plots import plot_sweep

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    if not ks or not latents:
        raise InputError("a sweep needs at least one k and one latent count")
    rows = []
    for n in latents:
        for k in ks:
            if k > n:
                raise InputError(f"k={k} is larger than latents={n}")
    for n in latents:
        for k in ks:
            name = default_sae_name(architecture, k, n)
            train(ws, k=k, latents=n, architecture=architecture, name=name, progress=progress, evaluate=False, **train_kwargs)
            m = evaluate_sae(ws, name)
            rows.append({
                "k": k, "latents": n, "nmse": round(m["nmse"], 4), "nmse_train": round(m["nmse_train"], 4),
                "log_density": round(m["log_feature_density"], 3), "act_mean": round(m["act_mean"], 4),
                "dead_pct": round(100 * m["dead_fraction"], 2), "neighbour_overlap_at_10": round(m["neighbour_overlap_at_10"], 3),
                "sae": name,
            })
    table = pd.DataFrame(rows)
    out = ws.path / "sweep"
    out.mkdir(exist_ok=True)
    with atomic_path(out / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_text(out / "sweep.md", markdown_table(table))
    plot_sweep(table, out / "sweep.png")
    ws.record_stage("sweep", {"k": ks, "latents": latents, "architecture": architecture, **train_kwargs})
    return table


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-style Markdown table of a DataFrame."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def describe(ws: Workspace) -> dict[str, Any]:
    """A summary of a workspace: model, counts, stages and SAEs with their headline metrics."""
    ws.reload_manifest()
    saes = []
    for name in ws.sae_names():
        cfg = read_json(ws.sae_dir(name) / "cfg.json")
        m = load_metrics(ws, name) or {}
        saes.append({
            "name": name, "architecture": cfg["architecture"], "k": cfg["k"], "latents": cfg["n_latents"],
            "nmse": m.get("nmse"), "dead_fraction": m.get("dead_fraction"),
        })
    if not ws.path.joinpath("embeddings.npy").is_file():
        raise WorkspaceError(f"workspace {ws.path} has no embeddings")
    return {
        "path": str(ws.path), "model": ws.manifest["model"], "documents": ws.n_documents,
        "columns": ws.manifest.get("columns", []), "stages": ws.manifest.get("stages", {}),
        "latest_sae": ws.manifest.get("latest_sae"), "saes": saes,
    }


# ---------------------------------------------------------------------------- run
# Stages that `embedsae run` calls after training, in order, as "module:function" strings. Each function
# takes (workspace, sae_name, progress=...) and writes its own part of the workspace.
RUN_STAGES: list[str] = [
    "embedsae.interpret.stage:run_stage",
    "embedsae.structure.stage:families_stage",
    "embedsae.search.stage:index_stage",
]


def run_stages():
    """The post-training stages of `embedsae run`, imported on demand."""
    import importlib

    for spec in RUN_STAGES:
        module, func = spec.split(":")
        yield getattr(importlib.import_module(module), func)
