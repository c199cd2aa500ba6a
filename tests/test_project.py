"""The service layer (embedsae.Project) on a real Cranfield workspace: reads answer from cached parts and never
write; the families bug (a card read emptied the clean set) stays fixed; the manifest survives concurrent
writers; codes copied with a workspace stay valid."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

import embedsae
from embedsae import layout, pipeline
from embedsae.cli import main as cli_main
from embedsae.errors import InputError, WorkspaceError
from embedsae.workspace import Workspace


@pytest.fixture(scope="module")
def cran_sae(cranfield_ws, tmp_path_factory):
    """A private copy of the Cranfield workspace with a small trained SAE (not interpreted)."""
    dst = tmp_path_factory.mktemp("project") / "ws"
    shutil.copytree(cranfield_ws.path, dst)
    ws = Workspace.open(dst)
    pipeline.train(ws, k=8, latents=256, epochs=5, seed=3)
    return ws


@pytest.fixture(scope="module")
def cran_done(cran_sae, tmp_path_factory):
    """cran_sae copied, then interpreted (first 64 features), with families and indexes."""
    from embedsae.interpret.stage import interpret
    from embedsae.search.index import build_index
    from embedsae.structure import families_stage

    dst = tmp_path_factory.mktemp("project-done") / "ws"
    shutil.copytree(cran_sae.path, dst)
    ws = Workspace.open(dst)
    interpret(ws, max_features=64)
    families_stage(ws)
    build_index(ws)
    return ws


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_reads_never_write_a_file(cran_done):
    before = snapshot(cran_done.path)
    p = embedsae.open(cran_done.path)
    page = p.features(sort="score", limit=5)
    assert page.total >= len(page.items) == 5
    card = p.feature(page.items[0].id)
    assert card.label == page.items[0].label and card.top_documents
    assert p.neighbours(page.items[0].id)["decoder_similar"]
    assert p.families() is not None
    for mode in ("dense", "concept", "bm25", "hybrid"):
        assert p.search("boundary layer transition", mode=mode, top=3).hits
    assert p.info().documents == cran_done.n_documents and p.metrics().sae == p.sae_name
    assert snapshot(cran_done.path) == before


def test_card_read_does_not_empty_the_families(cran_sae, tmp_path):
    """Regression: a feature card used to create features.db, after which the clean set was empty and the
    families were built from nothing (Cranfield: 413 families before a card, 0 after)."""
    from embedsae.interpret import clean_features
    from embedsae.structure.stage import build_families

    dst = tmp_path / "ws"
    shutil.copytree(cran_sae.path, dst)
    ws = Workspace.open(dst)
    before = len(build_families(ws).families)
    assert before > 0 and clean_features(ws) is None
    assert cli_main(["feature", str(dst), "3", "--json"]) == 0
    assert not ws.sae_file(ws.resolve_sae(), layout.FEATURES_DB).exists()
    assert clean_features(ws) is None
    assert len(build_families(ws).families) == before


def test_features_filter_sort_and_page(cran_done):
    p = embedsae.open(cran_done.path)
    every = p.features()
    assert every.total == len(every.items) and [r.id for r in every.items] == sorted(r.id for r in every.items)
    assert all(r.n_active > 0 for r in every.items)
    by_score = p.features(sort="score").items
    aucs = [r.scores.embedding_auc_combined for r in by_score if r.scores.embedding_auc_combined is not None]
    assert len(aucs) > 10 and aucs == sorted(aucs, reverse=True)  # the combined AUC (random and hard negatives)
    dens = [r.density for r in p.features(sort="density").items]
    assert dens == sorted(dens, reverse=True)
    second = p.features(sort="density", offset=3, limit=4)
    assert [r.id for r in second.items] == [r.id for r in p.features(sort="density").items[3:7]]
    word = every.items[0].label.split()[0]
    hits = p.features(search=word.upper())
    assert hits.total >= 1 and all(word.lower() in r.label.lower() for r in hits.items)
    assert all(r.clean for r in p.features(clean=True).items)
    with pytest.raises(InputError, match="unknown feature order"):
        p.features(sort="colour")
    with pytest.raises(InputError, match="feature 9999 does not exist"):
        p.feature(9999)


def test_features_before_interpret_is_a_clear_error(cran_sae):
    with pytest.raises(WorkspaceError, match="has not been interpreted"):
        embedsae.open(cran_sae.path).features()


def test_project_sees_a_new_interpretation(cran_sae, tmp_path):
    """A cached part is rebuilt when the files it came from change (another process ran a stage)."""
    from embedsae.interpret.stage import interpret

    dst = tmp_path / "ws"
    shutil.copytree(cran_sae.path, dst)
    p = embedsae.open(dst)
    with pytest.raises(WorkspaceError):
        p.features()
    assert p.feature(5).labeller is None
    interpret(Workspace.open(dst), max_features=8)
    labelled = [r for r in p.features().items if r.label]
    assert len(labelled) >= 8
    assert p.feature(labelled[0].id).labeller == "keywords"


def _record_many(path: str, tag: str, n: int) -> None:
    ws = Workspace.open(path)
    for i in range(n):
        ws.record_stage(f"{tag}-{i}", {"i": i})


def test_concurrent_stage_records_all_survive(cran_sae, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(cran_sae.path, dst)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(str(dst), tag, 40)) for tag in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    stages = json.loads((dst / layout.MANIFEST).read_text())["stages"]
    assert {f"{t}-{i}" for t in "ab" for i in range(40)} <= set(stages)


def test_codes_stay_valid_when_copied_and_not_when_retrained(cran_sae, tmp_path):
    from embedsae.sae.codes import stored_codes, workspace_codes

    src = tmp_path / "src"
    shutil.copytree(cran_sae.path, src)
    ws = Workspace.open(src)
    name = ws.resolve_sae()
    codes = workspace_codes(ws, save=True)
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)  # new mtimes, same content
    again = stored_codes(Workspace.open(copy), name)
    assert again is not None
    np.testing.assert_array_equal(again.indices, codes.indices)
    old = ws.sae_file(name, layout.CODES).read_bytes()
    pipeline.train(ws, name=name, k=8, latents=256, epochs=2, seed=9, evaluate=False)  # other weights, same name
    ws.sae_file(name, layout.CODES).write_bytes(old)  # stale codes left beside the new weights
    assert stored_codes(ws, name) is None
