"""Building and locating the search indexes of a workspace: one per registered retriever that keeps one."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import now_iso, write_json
from ..errors import InputError
from ..progress import ProgressCallback, Tracker
from ..workspace import Workspace
from .concept import ConceptSettings
from .milvus import MilvusSettings
from .storage import BACKENDS, concept_path, folder_bytes, index_dir, index_info, part_built, store_class

__all__ = ["BACKENDS", "adopt_sae", "build_index", "concept_path", "folder_bytes", "index_dir", "index_info",
           "part_built"]

logger = logging.getLogger(__name__)


def adopt_sae(ws: Workspace, source: Workspace, name: str | None = None) -> str:
    """Copy an SAE trained in another workspace into this one (same embedding model required); returns its name."""
    from ..sae.base import read_config

    name = source.resolve_sae(name)
    src = source.sae_dir(name)
    cfg = read_config(src)
    if cfg.model_id is None and source.model_id != ws.model_id:
        cfg.model_id = source.model_id
    ws.check_sae_compatible(cfg)
    if source.model_id != ws.model_id:
        from ..errors import ModelMismatchError

        raise ModelMismatchError(
            f"workspace {source.path} was embedded with '{source.model_id}' but {ws.path} with '{ws.model_id}'; "
            "an SAE only applies to vectors of the model it was trained on"
        )
    dst = ws.sae_dir(name)
    if dst.resolve() != src.resolve():
        with ws.sae_lock(name, "copy in an SAE"), source.sae_lock(name, "copy out the SAE", shared=True):
            _copy_sae(ws, source, name, src, dst)
    ws.set_latest_sae(name)
    return name


def _copy_sae(ws: Workspace, source: Workspace, name: str, src: Path, dst: Path) -> None:
    """Copy the SAE's files beside its place, then move them in (the caller holds both SAEs' locks)."""
    from ..pipeline import replace_sae

    tmp = ws.saes_dir / f".adopt-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("cfg.json", "sae.safetensors", "metrics.json", "train_log.png"):
        if (src / f).is_file():
            shutil.copy2(src / f, tmp / f)
    write_json(tmp / "origin.json", {"workspace": str(source.path), "sae": name, "copied": now_iso()})
    replace_sae(ws, name, tmp)
    (dst / "sae.safetensors").touch()  # newer than any stale codes


def build_index(
    ws: Workspace,
    sae: str | None = None,
    *,
    settings: ConceptSettings | None = None,
    lexical: bool = True,
    dense: bool = True,
    ann: bool = False,
    parts: Iterable[str] | None = None,
    backend: str = "embedded",
    milvus: MilvusSettings | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Build the index of every registered retriever that has one (dense, concept, BM25, ...); write index.json.

    `parts` names the retrievers to build (default: all; `lexical=False` leaves BM25 out, `dense=False` the
    dense part, so that dense search is off and the hybrid fuses what is left). The exact dense index is the
    workspace's embedding matrix itself; `ann` adds the approximate one. `backend` "milvus" keeps the concept
    index and the dense vectors in a Milvus collection (`milvus` says where) instead of the workspace.
    """
    from .retriever import retriever_class, retriever_names

    settings = settings or ConceptSettings()
    name = ws.resolve_sae(sae)
    names = [n for n in (retriever_names() if parts is None else parts) if retriever_class(n).index_part]
    names = [n for n in names if (lexical or n != "bm25") and (dense or n != "dense")]
    left_out = {}
    if not ws.has_texts:
        wanted = [n for n in names if retriever_class(n).needs_text]
        if parts is not None and wanted:
            raise InputError(f"the documents of workspace {ws.path} have no text: {', '.join(wanted)} cannot index them")
        left_out = {n: "the documents have no text" for n in wanted}
        names = [n for n in names if n not in wanted]
    if not names:
        raise InputError("no index to build: every part was left out")
    store_class(backend).check_build(names, ann)
    with ws.sae_lock(name, "build the index"), ws.stage_lock("index", "build the index"):
        return _build_locked(ws, name, settings, names, ann, backend, milvus, progress, left_out)


def _build_locked(ws: Workspace, name: str, settings: ConceptSettings, names: list[str], ann: bool, backend: str,
                  milvus: MilvusSettings | None, progress: ProgressCallback | None,
                  left_out: dict[str, str]) -> dict[str, Any]:
    from .retriever import BuildContext, retriever_class

    ctx = BuildContext(ws, name, settings, ann=ann, progress=progress, parts=tuple(names), backend=backend,
                       milvus=milvus, store=store_class(backend)(ws))
    ctx.cache["sae"] = ws.load_sae(name)
    t0 = time.perf_counter()
    info: dict[str, Any] = {"sae": name, "documents": ws.n_documents, "built": now_iso(), "parts": names,
                            "backend": backend, **({"left_out": left_out} if left_out else {})}
    tracker = Tracker(progress, "index", len(names), unit="index")
    logger.info(f"indexing {ws.n_documents} documents: {', '.join(names)}")
    for n in names:
        tracker.set_message(n)
        built = retriever_class(n).build(ctx)
        if built is not None:
            info[n] = built
        tracker.update()
    info["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(index_dir(ws) / "index.json", info)
    ws.record_stage("index", {"sae": name, "concept": asdict(settings), "parts": names, "ann": ann,
                                     "backend": backend},
                    seconds=info["seconds"])
    return info
