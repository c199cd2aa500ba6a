"""Checking a whole workspace: read every file as the stages would and verify the shards' recorded sha256."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import layout
from .errors import EmbedSAEError
from .integrity import damaged, read_json_object, reading
from .records import FileCheck


def check_workspace(path: str | os.PathLike) -> list[FileCheck]:
    """Read every file of a workspace whole, as the stages would, and verify the shards' recorded sha256: one
    FileCheck per file (or per SAE part), damaged ones with the message a reader would give. Writes nothing."""
    from .workspace import Workspace

    root = Path(path)
    out: list[FileCheck] = []

    def check(rel: str, fn) -> Any:
        try:
            value = fn()
        except EmbedSAEError as exc:
            out.append(FileCheck(rel, False, str(exc)))
            return None
        out.append(FileCheck(rel, True))
        return value

    ws = check(layout.MANIFEST, lambda: Workspace.open(root))
    if ws is None:
        return out
    check(layout.CORPUS, lambda: _read_corpus(ws))
    if ws.sharded:
        check(f"{layout.SHARDS}/{layout.SHARDS_INDEX}", lambda: _verify_shards(ws))
    else:
        check(layout.EMBEDDINGS, lambda: ws.embeddings.sum())
    for name in ws.sae_names():
        for rel, fn in _sae_checks(ws, name):
            if ws.sae_file(name, rel).exists():
                check(f"{layout.SAES}/{name}/{rel}", fn)
    info = ws.path / layout.INDEX / layout.INDEX_JSON
    if info.is_file():
        check(f"{layout.INDEX}/{layout.INDEX_JSON}", lambda: read_json_object(info))
    bm25 = ws.path / layout.INDEX / layout.BM25
    if bm25.is_dir():
        from .search.lexical import LexicalIndex

        check(f"{layout.INDEX}/{layout.BM25}", lambda: LexicalIndex.load(bm25))
    return out


def _read_corpus(ws) -> None:
    with reading(ws.path / layout.CORPUS):
        for _ in ws.corpus_batches(list(ws.manifest.get("columns") or ["id", "text"])):
            pass


def _verify_shards(ws) -> None:
    store = ws.vectors
    bad = store.verify()
    if bad:
        raise damaged(store.folder / bad[0], f"its sha256 differs from the one recorded in {layout.SHARDS_INDEX}"
                      + (f"; {len(bad) - 1} more shard(s) too" if len(bad) > 1 else ""))


def _sae_checks(ws, name: str) -> list[tuple[str, Any]]:
    from .interpret.store import FeatureStore
    from .pipeline import load_metrics
    from .sae.codes import Codes
    from .search.concept import ConceptIndex
    from .structure.stage import load_families

    folder = ws.sae_dir(name)

    def features_db() -> None:
        store = FeatureStore.read(folder / layout.FEATURES_DB)
        try:
            store.check()
        finally:
            store.close()

    return [
        (layout.SAE_CONFIG, lambda: ws.load_sae(name)),
        (layout.METRICS, lambda: load_metrics(ws, name)),
        (layout.CODES, lambda: Codes.load(folder / layout.CODES)),
        (layout.FEATURES_DB, features_db),
        (layout.FAMILIES_JSON, lambda: load_families(ws, name)),
        (layout.CONCEPT_INDEX, lambda: ConceptIndex.load(folder / layout.CONCEPT_INDEX)),
    ]
