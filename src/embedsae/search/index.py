"""Building and locating the search indexes of a workspace (dense, concept, lexical)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import read_json, write_json
from ..errors import WorkspaceError
from ..workspace import Workspace, now_iso
from .concept import FILE_NAME, ConceptIndex, ConceptSettings, doc_norms

logger = logging.getLogger(__name__)

INDEX_DIR = "index"


def index_dir(ws: Workspace) -> Path:
    """WS/index/: the dense ANN index, the BM25 index and index.json."""
    return ws.path / INDEX_DIR


def concept_path(ws: Workspace, sae: str) -> Path:
    """Where the concept index of an SAE lives: saes/<name>/concept_index.npz."""
    return ws.sae_dir(sae) / FILE_NAME


def index_info(ws: Workspace) -> dict[str, Any] | None:
    """What `build_index` wrote last (index.json), or None."""
    path = index_dir(ws) / "index.json"
    return read_json(path) if path.is_file() else None


def adopt_sae(ws: Workspace, source: Workspace, name: str | None = None) -> str:
    """Copy an SAE trained in another workspace into this one (same embedding model required); returns its name."""
    from ..sae import SAEConfig

    name = source.resolve_sae(name)
    src = source.sae_dir(name)
    cfg = SAEConfig.from_dict(read_json(src / "cfg.json"))
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
        tmp = ws.saes_dir / f".adopt-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in ("cfg.json", "sae.safetensors", "metrics.json", "train_log.png"):
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
        write_json(tmp / "origin.json", {"workspace": str(source.path), "sae": name, "copied": now_iso()})
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
        (dst / "sae.safetensors").touch()  # newer than any stale codes
    ws.set_latest_sae(name)
    return name


def build_index(
    ws: Workspace,
    sae: str | None = None,
    *,
    settings: ConceptSettings | None = None,
    lexical: bool = True,
    ann: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the concept index (per SAE), the BM25 index and optionally the usearch ANN index; write index.json.

    The exact dense index is the workspace's embedding matrix itself (nothing to build).
    """
    from ..sae.codes import encode_array
    from .dense import AnnIndex
    from .lexical import LexicalIndex

    settings = settings or ConceptSettings()
    name = ws.resolve_sae(sae)
    model = ws.load_sae(name)
    t0 = time.perf_counter()
    logger.info(f"indexing {ws.n_documents} documents: concept index of SAE '{name}' ({settings.doc_k} latents per document)")
    codes = encode_array(model, ws.embeddings, k=min(settings.doc_k, model.cfg.n_latents), progress=progress)
    norms = doc_norms(model, codes.indices, codes.values)
    concept = ConceptIndex.from_codes(codes.indices, codes.values, model.cfg.n_latents, norms, settings, name)
    concept.save(concept_path(ws, name))
    dense_bytes = int(ws.n_documents * ws.dim * 4)
    info: dict[str, Any] = {
        "sae": name, "documents": ws.n_documents, "built": now_iso(),
        "dense": {"kind": "exact cosine (embeddings.npy)", "bytes": dense_bytes},
        "concept": {**concept.describe(), "file_bytes": concept_path(ws, name).stat().st_size,
                    "stored_vs_dense": round(concept.stored_bytes / dense_bytes, 4),
                    "memory_vs_dense": round(concept.memory_bytes / dense_bytes, 4)},
    }
    if lexical:
        logger.info("indexing words for BM25")
        lex = LexicalIndex.build(ws.corpus["text"].astype(str).tolist(), progress=progress)
        lex.save(index_dir(ws) / "bm25")
        info["bm25"] = {"folder": "index/bm25", "bytes": _folder_bytes(index_dir(ws) / "bm25")}
    if ann:
        logger.info("building the approximate dense index (usearch)")
        AnnIndex.build(ws.embeddings).save(index_dir(ws) / "dense.usearch")
        info["ann"] = {"file": "index/dense.usearch", "bytes": (index_dir(ws) / "dense.usearch").stat().st_size}
    info["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(index_dir(ws) / "index.json", info)
    ws.record_stage("index", {"sae": name, "concept": asdict(settings), "lexical": lexical, "ann": ann},
                    seconds=info["seconds"])
    return info


def require_concept(ws: Workspace, sae: str) -> ConceptIndex:
    """The stored concept index of an SAE, checked against the workspace."""
    index = ConceptIndex.load(concept_path(ws, sae))
    if index.n_docs != ws.n_documents:
        raise WorkspaceError(
            f"the concept index of '{sae}' covers {index.n_docs} documents but {ws.path} holds {ws.n_documents}; "
            f"rebuild it with: embedsae index {ws.path} --sae {sae}"
        )
    return index


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
