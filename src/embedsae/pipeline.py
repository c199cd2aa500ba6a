"""The pipeline stages as library calls: embed, train, evaluate, sweep (the CLI is a thin layer over these)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import layout
from ._io import save_npy, write_json
from .data.corpus_store import ColumnReader, CorpusFile, TextStore
from .data.embedders import (
    PACKAGED_NAMES,
    Embedder,
    check_vector_shape,
    l2_normalise,
    load_embedder,
    load_vectors,
    validate_vectors,
)
from .data.embedding import EmbedSettings, embed_to_store
from .data.shards import write_array
from .data.vectors import VectorSource, as_source
from .errors import InputError, ModelMismatchError, WorkspaceError
from .progress import ProgressCallback, Tracker
from .workspace import Workspace

logger = logging.getLogger(__name__)


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
    embedder_options: dict[str, Any] | None = None,
    settings: EmbedSettings | None = None,
    progress: ProgressCallback | None = None,
) -> Workspace:
    """Read a corpus, embed it (or take precomputed vectors) and write the workspace.

    Vectors already in `out` for the same model and corpus are reused, not recomputed. A workspace made
    with another model is an error unless `overwrite` is set. `embedder_options` go to `load_embedder`
    (e.g. `base_url` for an `openai:` model); an embedder's `reopen` options are kept in the manifest.
    `backend` is the embedding engine of a sentence-transformers model (auto, torch, onnx, openvino; see
    data/backends.py). `settings` say how vectors are stored and where embedding runs (shard size, devices,
    Ray; see data/embedding.py): texts are embedded shard by shard, and a run killed part way resumes at its
    first missing shard when run again.
    """
    settings = settings or EmbedSettings()
    if limit is not None and limit < 1:
        raise InputError(f"the record limit must be at least 1, got {limit}")
    out = Path(out)
    staged = _stage_corpus(corpus, out, text_field=text_field, title_field=title_field, id_field=id_field,
                           limit=limit, progress=progress, texts_required=vectors is None)
    try:
        return _embed_staged(staged, out, "dataframe" if isinstance(corpus, pd.DataFrame) else str(corpus), model=model,
                             vectors=vectors, normalize=normalize, batch_size=batch_size, backend=backend,
                             overwrite=overwrite, embedder=embedder, embedder_options=embedder_options,
                             settings=settings, progress=progress)
    finally:
        staged.remove()


def _stage_corpus(corpus: str | os.PathLike | pd.DataFrame, out: Path, *, limit: int | None,
                  progress: ProgressCallback | None, texts_required: bool, **fields: str | None) -> CorpusFile:
    """The corpus read chunk by chunk, checked and written as Parquet in a hidden file beside the workspace."""
    from .data.corpus_store import write_corpus
    from .data.readers import iter_corpus, normalise_corpus

    if isinstance(corpus, pd.DataFrame):  # in memory already: no progress to report
        table = normalise_corpus(corpus, texts_required=texts_required, **fields)
        chunks: Any = [table.iloc[:limit].reset_index(drop=True) if limit is not None else table]
        progress = None
    else:
        chunks = iter_corpus(corpus, limit=limit, texts_required=texts_required, **fields)
    trackers: list[Tracker] = []

    def on_rows(n: int) -> None:  # the bar starts with the first chunk read (a bad first line shows none)
        if not trackers:
            trackers.append(Tracker(progress, "read", None, unit="doc"))
        trackers[0].update(n)

    try:
        return write_corpus(chunks, out.parent / f".{out.name}.corpus-{os.getpid()}.parquet", on_rows=on_rows)
    finally:
        for tracker in trackers:
            tracker.close()


def _embed_staged(staged: CorpusFile, out: Path, source: str, *, model: str | None, vectors: Any,
                  normalize: bool | None, batch_size: int, backend: str, overwrite: bool, embedder: Embedder | None,
                  embedder_options: dict[str, Any] | None, settings: EmbedSettings,
                  progress: ProgressCallback | None) -> Workspace:
    ids = ColumnReader(staged.path, "id")
    if vectors is not None:
        if isinstance(vectors, np.ndarray):
            arr, where, model_id = vectors, "the vectors given", model or "precomputed"
        else:
            arr, where = load_vectors(vectors), f"vectors from {vectors}"
            model_id = model or f"precomputed:{Path(vectors).name}"
        check_vector_shape(arr, expected_rows=staged.rows, source=where)
        normalized = bool(normalize)
        _check_existing(out, model_id, arr.shape[1], overwrite)
        seen = {"nonzero": False}

        def prepare(start: int, block: np.ndarray) -> np.ndarray:
            block = validate_vectors(block, ids[start : start + len(block)], source=where, all_zero=False)
            seen["nonzero"] = seen["nonzero"] or bool(np.any(block))
            return l2_normalise(block) if normalized else block

        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(progress, "vectors", staged.rows, unit="vector")
        try:
            store = write_array(out, arr, model_id=model_id, shard_rows=settings.shard_rows, prepare=prepare,
                                on_rows=tracker.update)
            if not seen["nonzero"]:
                raise InputError(f"{where} are all zero; they carry no information to train on")
        except BaseException:  # bad vectors found part way: leave nothing behind
            shutil.rmtree(out if created else out / layout.SHARDS_PARTIAL, ignore_errors=True)
            raise
        tracker.close()
        record = {"source": source, "vectors": where, "normalize": normalized}
        return Workspace.create(out, staged, store, model_id=model_id, normalized=normalized,
                                settings={**record, "shard_rows": settings.shard_rows})

    normalized = True if normalize is None else normalize
    if Workspace.exists(out) and not overwrite:
        ws = Workspace.open(out)
        wanted = model if model is not None else (embedder.model_id if embedder else None)
        same_model = wanted is None or _same_model(wanted, ws.model_id)
        if not same_model:
            raise ModelMismatchError(
                f"workspace {out} was embedded with '{ws.model_id}', not '{wanted}'; embed into a new workspace "
                "or set `overwrite` to replace it"
            )
        if ws.manifest.get("corpus_fingerprint") == staged.fingerprint and ws.manifest["model"].get("normalized") == normalized:
            logger.info(f"workspace {out} already holds {ws.n_documents} vectors of {ws.model_id} for this corpus; not re-embedding")
            return ws
    options = {**(embedder_options or {}), **({"backend": backend} if backend is not None else {})}
    emb = embedder or load_embedder(model, batch_size=batch_size, normalize=normalized, **options)
    if Workspace.exists(out) and not overwrite:
        _check_existing(out, emb.model_id, emb.dim, overwrite)
    logger.info(f"embedding {staged.rows} documents with {emb.model_id} ({emb.dim}-d, {getattr(emb, 'backend', 'its own')} "
                "backend)")
    t0 = time.perf_counter()
    job = {"model": emb.model_id, "normalized": normalized, "corpus_fingerprint": staged.fingerprint}
    actor_options = {"batch_size": batch_size, "normalize": normalized, **options}
    out.mkdir(parents=True, exist_ok=True)
    with Workspace(out, {}).stage_lock("embed"):  # a second embed into the same folder is refused, not interleaved
        store = embed_to_store(out, TextStore(staged.texts), emb, job, settings, ids=ids,
                               model_options=actor_options, progress=progress)
        record = {
            "source": source, "batch_size": batch_size, "normalize": normalized, "seconds": round(time.perf_counter() - t0, 2),
            **{k: v for k, v in settings.to_dict().items() if k in ("shard_rows", "devices", "engine")},
            **({"usage": dict(emb.usage)} if getattr(emb, "usage", None) else {}),
        }
        return Workspace.create(out, staged, store, model_id=emb.model_id, normalized=normalized, settings=record,
                                model_options=getattr(emb, "reopen", None))


def _same_model(a: str, b: str) -> bool:
    return a == b or (a in PACKAGED_NAMES and b in PACKAGED_NAMES)


def _check_existing(out: str | os.PathLike, model_id: str, dim: int, overwrite: bool) -> None:
    if overwrite or not Workspace.exists(out):
        return
    ws = Workspace.open(out)
    if not _same_model(model_id, ws.model_id) or ws.dim != dim:
        raise ModelMismatchError(
            f"workspace {out} holds {ws.dim}-d vectors of '{ws.model_id}', not {dim}-d vectors of '{model_id}'; "
            "embed into a new workspace or set `overwrite` to replace it"
        )


# ---------------------------------------------------------------------------- train
def default_sae_name(architecture: str, k: int, latents: int) -> str:
    return f"{architecture}-k{k}-n{latents}"


def train(
    ws: Workspace | str | os.PathLike,
    *,
    k: int | None = None,
    latents: int | None = None,
    architecture: str | None = None,
    name: str | None = None,
    pursuit: int | None = None,
    train_vectors: VectorSource | np.ndarray | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    evaluate: bool = True,
    overwrite: bool = True,
    **train_kwargs: Any,
):
    """Train an SAE on the workspace's vectors (or on `train_vectors`) into saes/<name>/.

    Work happens in a hidden folder holding checkpoints; only a finished SAE is moved into place, so a
    killed run leaves the previous SAE of that name intact and `resume=True` continues it. A finished SAE
    replaces one of the same name (with its labels, families and concept index, and their manifest records)
    unless `overwrite` is False, which refuses at once, as `import_sae` does. While it trains, no other stage
    writes that SAE (the SAE's lock, `Workspace.sae_lock`). `k`, `latents`
    (n_latents), `architecture` and `pursuit` are SAEConfig settings, `train_kwargs` TrainConfig ones; those
    not given keep their defaults. Started by torchrun with several processes, they train one SAE data-parallel
    (see sae/distributed.py); rank 0 writes it.
    """
    from .sae import SAEConfig, distributed
    from .sae.trainer import TrainConfig

    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    given = {"k": k, "n_latents": latents, "architecture": architecture, "pursuit": pursuit}
    cfg = SAEConfig(d_in=ws.dim, model_id=ws.model_id, **{key: v for key, v in given.items() if v is not None})
    unknown = sorted(set(train_kwargs) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise InputError(f"unknown training setting(s) {', '.join(unknown)}; the settings are those of TrainConfig")
    tcfg = TrainConfig(**train_kwargs)
    name = name or default_sae_name(cfg.architecture, cfg.k, cfg.n_latents)
    _check_name(name)
    vectors = ws.vectors if train_vectors is None else as_source(train_vectors)
    if vectors.shape[1] != ws.dim:
        raise ModelMismatchError(f"training vectors are {vectors.shape[1]}-d but workspace {ws.path} holds {ws.dim}-d vectors")
    check_new_sae(ws, name, overwrite)
    if resume:
        _check_resumable(layout.partial_folder(ws.path, name), cfg)
    if distributed.init_from_env(tcfg.device) and distributed.rank() != 0:  # rank 0 holds the lock and writes
        return _train_locked(ws, name, cfg, tcfg, vectors, train_vectors is None, resume, progress, evaluate)
    with ws.sae_lock(name, "train"):
        check_new_sae(ws, name, overwrite)
        return _train_locked(ws, name, cfg, tcfg, vectors, train_vectors is None, resume, progress, evaluate)


def check_new_sae(ws: Workspace, name: str, overwrite: bool) -> None:
    """Refuse a new SAE named like an existing one unless `overwrite` is set."""
    if not overwrite and name in ws.sae_names():
        raise WorkspaceError(f"workspace {ws.path} already has an SAE named '{name}'; choose another name or set "
                             "`overwrite` to replace it (its labels, families and concept index go with it)")


def _check_resumable(work: Path, cfg: Any) -> None:
    """Refuse to resume a run that was started with another SAE shape."""
    path = work / layout.TRAIN_CONFIG
    if not (work / layout.CHECKPOINT).is_file() or not path.is_file():
        return
    from .integrity import read_json_object

    old = read_json_object(path).get("sae", {})
    changed = [f"{key} {old.get(key)} -> {getattr(cfg, key)}" for key in ("d_in", "n_latents", "k", "architecture")
               if old.get(key) != getattr(cfg, key)]
    if changed:
        raise InputError(
            f"the unfinished run of '{work.name.removeprefix(layout.PARTIAL_PREFIX)}' was started with other settings "
            f"({', '.join(changed)}); resume it with the same settings, or start it afresh without `resume`"
        )


def _train_locked(ws: Workspace, name: str, cfg: Any, tcfg: Any, vectors: VectorSource, own_vectors: bool,
                  resume: bool, progress: ProgressCallback | None, evaluate: bool):
    from .sae import create_sae, distributed
    from .sae.trainer import config_dict, train_on_array

    work = layout.partial_folder(ws.path, name)
    if distributed.rank() != 0:  # a data-parallel helper: trains once rank 0 has readied the folder, writes nothing
        distributed.barrier()
        import torch

        torch.manual_seed(tcfg.seed)
        sae, _, _ = train_on_array(create_sae(cfg), vectors, tcfg, out_dir=work, resume=resume)
        distributed.barrier()  # stays until rank 0 has put the SAE in place: a helper leaving cannot cut that short
        return sae.cpu()
    if not resume and work.exists():
        if (work / layout.CHECKPOINT).is_file():
            logger.info(f"discarding the unfinished run of '{name}' (resume it instead by setting `resume`)")
        shutil.rmtree(work)
    if resume and not (work / layout.CHECKPOINT).is_file():
        logger.info(f"no unfinished run of '{name}' to resume; starting from the beginning")
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / layout.TRAIN_CONFIG, {"sae": cfg.to_dict(), "train": config_dict(tcfg)})
    logger.info(f"training {cfg.architecture} SAE '{name}': k={cfg.k}, {cfg.n_latents} latents, {vectors.shape[0]} vectors "
                f"of dim {ws.dim}")
    t0 = time.perf_counter()
    import torch

    torch.manual_seed(tcfg.seed)
    sae = create_sae(cfg)
    distributed.barrier()
    try:
        sae, trainer, val_idx = train_on_array(sae, vectors, tcfg, out_dir=work, resume=resume, progress=progress)
    except BaseException:
        if not (work / layout.CHECKPOINT).is_file():  # nothing to resume: leave nothing behind
            shutil.rmtree(work, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    sae.save(work)
    if own_vectors:  # held-out rows of this workspace (trained on other vectors, all of its rows are)
        save_npy(work / layout.VAL_INDICES, val_idx.astype(np.int64))
    (work / layout.CHECKPOINT).unlink(missing_ok=True)
    final = replace_sae(ws, name, work)
    distributed.barrier()  # the SAE is in place: the helpers may leave
    from .plots import plot_training_log

    plot_training_log(trainer.log, final / layout.TRAIN_LOG_PNG, title=name)
    ws.record_stage(f"train:{name}", {"sae": cfg.to_dict(), "train": config_dict(tcfg)}, seconds=round(seconds, 2),
                    resolved=trainer.resolved)
    ws.set_latest_sae(name)
    logger.info(f"trained '{name}' in {seconds:.1f}s ({trainer.step} steps)")
    if evaluate:
        _evaluate_locked(ws, name, True, progress)
    return sae.cpu()


def replace_sae(ws: Workspace, name: str, folder: Path) -> Path:
    """Move a finished SAE folder into place as saes/<name>/, replacing one of that name and forgetting the
    manifest's records of the stages run on it (the caller holds the SAE's lock); returns the final folder."""
    final = ws.sae_dir(name)
    if final.exists():
        shutil.rmtree(final)
    ws.forget_sae_stages(name)
    os.replace(folder, final)
    return final


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"invalid SAE name '{name}': use letters, digits, '-', '_' (no slashes, not starting with '.')")


# ---------------------------------------------------------------------------- evaluate
def evaluate_sae(ws: Workspace | str | os.PathLike, name: str | None = None, *, neighbours: bool = True,
                 progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Quality figures of an SAE on the workspace's vectors (all of them up to 16,384, else a seeded sample of that
    many: `sae.metrics.EVAL_ROWS`); written to saes/<name>/metrics.json."""
    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    name = ws.resolve_sae(name)
    with ws.sae_lock(name, "evaluate"):
        return _evaluate_locked(ws, name, neighbours, progress)


def _evaluate_locked(ws: Workspace, name: str, neighbours: bool, progress: ProgressCallback | None = None) -> dict[str, Any]:
    from .plots import plot_density_histogram
    from .sae.codes import stored_codes, workspace_codes
    from .sae.metrics import EVAL_ROWS
    from .sae.metrics import evaluate_sae as _evaluate

    sae = ws.load_sae(name)
    folder = ws.sae_dir(name)
    val = None
    if (folder / layout.VAL_INDICES).is_file():
        from .integrity import reading

        with reading(folder / layout.VAL_INDICES):
            val = np.asarray(np.load(folder / layout.VAL_INDICES), dtype=np.int64).reshape(-1)
    if val is not None and len(val) and val.max() >= ws.n_documents:
        val = None  # trained on other vectors than these
    # small corpora: encode every document once, store the codes for later stages and evaluate on them
    codes = (workspace_codes(ws, name, model=sae, save=True, progress=progress) if ws.n_documents <= EVAL_ROWS
             else stored_codes(ws, name))
    metrics = _evaluate(sae, ws.vectors, val_indices=val, neighbours=neighbours, codes=codes, progress=progress)
    metrics["sae"] = name
    write_json(folder / layout.METRICS, metrics)
    plot_density_histogram(metrics, folder / layout.DENSITY_PNG, title=name)
    return metrics


METRIC_KEYS = ("sae", "k", "n_latents", "n_vectors", "nmse", "nmse_train", "n_heldout", "l0", "dead_latents",
               "dead_fraction", "log_feature_density", "act_mean")
"""What every stored evaluation holds (metrics.json)."""


def load_metrics(ws: Workspace, name: str) -> dict[str, Any] | None:
    """The stored evaluation of an SAE (None before one was made; DamagedFileError when it is damaged)."""
    from .integrity import read_json_object

    path = ws.sae_file(name, layout.METRICS)
    return read_json_object(path, required=METRIC_KEYS) if path.is_file() else None


# ---------------------------------------------------------------------------- sweep
def sweep(
    ws: Workspace | str | os.PathLike,
    ks: list[int],
    latents: list[int],
    *,
    architecture: str = "topk",
    progress: ProgressCallback | None = None,
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
    out = ws.path / layout.SWEEP
    out.mkdir(exist_ok=True)
    with atomic_path(out / layout.SWEEP_CSV) as tmp:
        table.to_csv(tmp, index=False)
    write_text(out / layout.SWEEP_MD, markdown_table(table))
    plot_sweep(table, out / layout.SWEEP_PNG)
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
    from .sae.base import read_config

    ws.reload_manifest()
    saes = []
    for name in ws.sae_names():
        cfg = read_config(ws.sae_dir(name))
        m = load_metrics(ws, name) or {}
        saes.append({
            "name": name, "architecture": cfg.architecture, "k": cfg.k, "latents": cfg.n_latents,
            "nmse": m.get("nmse"), "dead_fraction": m.get("dead_fraction"),
        })
    if not ws.sharded and not ws.path.joinpath(layout.EMBEDDINGS).is_file():
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
    "embedsae.viz.map:run_stage",
]


def run_stages():
    """The post-training stages of `embedsae run`, imported on demand."""
    import importlib

    for spec in RUN_STAGES:
        module, func = spec.split(":")
        yield getattr(importlib.import_module(module), func)
