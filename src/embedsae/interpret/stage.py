"""The interpret stage: for every alive feature, select examples, write a label and score it, batch by batch,
committing each batch to the feature store so a killed run resumes where it stopped."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from ..data.vectors import IN_MEMORY_BYTES, unit_rows
from ..progress import ProgressCallback, Tracker
from ..registry import LABELLERS
from ..settings import OneOf, Range, Settings, check
from ..threads import blas_single_thread
from ..workspace import Workspace
from .examples import ExampleConfig, select_examples
from .hard import NearestDocuments
from .labellers import LabelContext, Labeller, is_one_phrase, labeller_version, make_labeller
from .store import DISK_FULL, FeatureStore, db_path, remove_database

if TYPE_CHECKING:
    from .llm import LLMConfig

logger = logging.getLogger(__name__)


@dataclass
class CleanConfig(Settings):
    """The clean-feature filter (the seed's): thresholds on scores and density, duplicate labels by score. A feature's
    label passes when its name, or its description, reaches both embedding AUC thresholds."""

    min_embedding_auc: float = 0.8
    """Least embedding AUC (of the name or of the description) against random non-activating documents."""
    min_embedding_auc_hard: float = 0.6
    """Least embedding AUC (of the same) against hard negatives (each activating document's nearest non-activating
    document)."""
    max_density: float = 0.2
    """Features firing on this share of documents or more are not clean."""
    min_llm_f1: float = 0.5
    """Least LLM detection F1 (applied only to features that have an LLM detection score)."""
    min_active: int = 3
    """Least number of documents a clean feature fires on."""

    def validate(self) -> None:
        super().validate()
        for name in ("min_embedding_auc", "min_embedding_auc_hard", "min_llm_f1"):
            check(0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1], got {getattr(self, name)}")
        check(0 < self.max_density <= 1, f"max_density must be in (0, 1], got {self.max_density}")
        check(self.min_active >= 1, f"min_active must be at least 1, got {self.min_active}")


@dataclass
class InterpretSettings(Settings):
    """Which labeller runs and on how many features."""

    labeller: Annotated[str, OneOf(LABELLERS)] = "keywords"
    """The labeller (registered in embedsae.registry.LABELLERS): keywords, offline; llm, an OpenAI-compatible chat
    endpoint or a local model."""
    llm_score: bool = True
    """Run the LLM detection scorer too, when an LLM is configured."""
    max_features: Annotated[int, Range(ge=1)] | None = None
    """Interpret only the first N alive features (default: all)."""
    batch_size: int = 128
    """Features labelled and committed to the feature store together."""
    phrase_precision: Literal["bf16", "f32"] = "bf16"
    """Precision of the model embedding candidate phrases and labels (documents are always embedded in f32): bf16,
    about 2.5x faster on CPUs with native bf16 (AMX / AVX512_BF16; elsewhere the model runs f32), vectors to cosine
    0.9999 of f32's; f32."""
    redo: bool = False
    """Label every chosen feature again, also those the labeller already labelled (a run otherwise goes on where
    the last one stopped, and relabels only features labelled by another version of the labeller)."""
    in_memory_bytes: int = IN_MEMORY_BYTES // 4
    """Unit document vectors up to this many bytes (rows x dimension x 4; 512 MiB: 350,000 384-d vectors) are held in
    memory; larger corpora are read when needed from the workspace's memory-mapped vectors (0: always so)."""

    def validate(self) -> None:
        super().validate()
        check(self.batch_size >= 1, f"batch_size must be positive, got {self.batch_size}")
        check(self.in_memory_bytes >= 0, f"in_memory_bytes must be 0 or more, got {self.in_memory_bytes}")


def phrase_embeddings(ws: Workspace, precision: str = "bf16"):
    """The stage's phrase-embedding cache (`keywords.PhraseEmbeddings`) over the workspace's model: in `precision`,
    batches of 64 (texts sorted by length, each batch padded to its longest: short phrases pad little), the
    cached export run without loading sentence-transformers where there is one."""
    from .keywords import PhraseEmbeddings

    embedder = ws.embedder(batch_size=64, precision=precision, lightweight=True)
    return PhraseEmbeddings(lambda texts: embedder.embed(texts))


def feature_stats(codes_csc, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per latent: number of documents it fires on, density, mean and max activation where it fires."""
    n_active = np.diff(codes_csc.indptr)
    sums = np.asarray(codes_csc.sum(axis=0), dtype=np.float64).ravel()
    maxes = codes_csc.max(axis=0).toarray().ravel().astype(np.float64)  # activations are non-negative
    return n_active, n_active / max(n_docs, 1), sums / np.maximum(n_active, 1), maxes


def interpret(
    ws: Workspace | str,
    sae: str | None = None,
    settings: InterpretSettings | None = None,
    *,
    llm: LLMConfig | None = None,
    examples: ExampleConfig | None = None,
    clean: CleanConfig | None = None,
    labeller_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Label and score every alive feature of an SAE (resuming a previous run); returns a summary.

    `settings` (or keyword overrides of its fields, e.g. `max_features=100`) pick the labeller, looked up in
    the labeller registry (`embedsae.interpret.labellers`). With an `llm` config the LLM detection scorer runs
    too (unless `llm_score` is off), whichever labeller made the labels.
    """
    import scipy.sparse as sp

    from ..sae.codes import workspace_codes
    from ..structure.cooccurrence import activation_stats

    t0 = time.perf_counter()
    cfg = (settings or InterpretSettings()).replace(**overrides)
    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    name = ws.resolve_sae(sae)
    ex_cfg = examples or ExampleConfig()
    clean_cfg = clean or CleanConfig()
    with ws.sae_lock(name, "interpret"):  # no other stage writes the SAE meanwhile (a second interpret is refused)
        codes = workspace_codes(ws, name, progress=progress, save=True)
        csr = codes.to_csr()
        stats = activation_stats(ws, name, codes, save=True)  # feature-major codes, kept for the app's cards
        csc = sp.csc_matrix((stats.acts, stats.docs, stats.indptr), shape=csr.shape)
        n_active, density, act_mean, act_max = feature_stats(csc, ws.n_documents)
        alive = np.flatnonzero(n_active > 0)
        chosen = alive[: cfg.max_features] if cfg.max_features is not None else alive
        path = db_path(ws.sae_dir(name))
        new = not path.exists()
        try:
            store = FeatureStore(path)
        except OSError as exc:  # a full disk may stop the database's creation itself
            if new and exc.errno in DISK_FULL:
                remove_database(path)
            raise
        try:
            context = LabelContext(
                ws=ws, sae=name, texts=ws.ensure_texts(), doc_vectors=unit_rows(ws.vectors, cfg.in_memory_bytes),
                phrase_emb=phrase_embeddings(ws, cfg.phrase_precision), llm=llm, store=store, progress=progress,
                options=dict(labeller_options or {}))
            if llm is not None:
                from .llm import make_chat_client

                context.chat = make_chat_client(llm, store=store, progress=progress)
                context.chat.check()
            labeller = make_labeller(cfg.labeller, context)
            store.write_stats(zip(range(len(n_active)), density, act_mean, act_max, n_active))
            run = store.new_run()
            version = labeller_version(labeller)
            done = set() if cfg.redo else store.done_ids(labeller.name, version)
            todo = np.asarray([f for f in chosen if int(f) not in done], dtype=np.int64)
            logger.info(f"interpreting SAE '{name}': {len(alive)} alive of {len(n_active)} features, "
                        f"{len(chosen) - len(todo)} already done, {len(todo)} to do ({labeller.name})")
            detect = context.chat is not None and cfg.llm_score
            n_renamed = 0
            if len(todo):
                nearest = NearestDocuments(context.doc_vectors, pool=ex_cfg.hard_pool, seed=ex_cfg.seed)
                r = _Run(context, labeller, store, csr, csc, ex_cfg, cfg.batch_size, run, detect, nearest)
                # many small products: more BLAS threads only contend (measured: the stage 7x slower on 2 busy
                # cores); the embedding model keeps its own threads
                with blas_single_thread():
                    _process(r, todo)
                    n_renamed = _distinct_names(r)
            n_clean = apply_clean_filter(store, clean_cfg)
            table = store.table()
        except OSError as exc:
            store.close(checkpoint=False)
            if new and exc.errno in DISK_FULL:  # the run wrote nothing worth keeping: leave no database behind
                remove_database(path)
            raise
        except BaseException:
            store.close()
            raise
        else:
            store.close()
    done_now = table[table["id"].isin(chosen) & (table["status"] == "done")]
    summary = {
        "sae": name, "labeller": labeller.name, "features": int(len(n_active)), "alive": int(len(alive)),
        "interpreted": int(len(done_now)), "skipped": int(len(chosen) - len(todo)),
        "failed": int((table["id"].isin(chosen) & (table["status"] == "failed")).sum()),
        "mean_embedding_auc": _mean(done_now["embedding_auc"]),
        "mean_embedding_auc_hard": _mean(done_now["embedding_auc_hard"]),
        "mean_description_auc": _mean(done_now["description_auc"]),
        "mean_description_auc_hard": _mean(done_now["description_auc_hard"]),
        "single_phrase": _share(done_now["label"], is_one_phrase),
        "distinct_names": _distinct(table[table["status"] == "done"]["label"]), "renamed": n_renamed,
        "mixtures": int((done_now["mixture"] == 1).sum()),
        "median_embedding_auc": _mean(done_now["embedding_auc"], median=True), "mean_llm_f1": _mean(done_now["llm_f1"]),
        "mean_category_f1": _mean(done_now["category_f1"]), "clean": n_clean,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if context.chat is not None:
        summary["llm_usage"] = context.chat.usage.as_dict()
    record = {"labeller": labeller.name, "labeller_version": version, "redo": cfg.redo,
              "max_features": cfg.max_features, "examples": ex_cfg.to_dict(), "clean": clean_cfg.to_dict()}
    ws.record_stage(f"interpret:{name}", record, summary=summary)
    return summary


def _distinct(col) -> float | None:
    """Share of names that no other feature has (`names.name_key`: case, spacing and plural "s" ignored)."""
    from .names import distinct_share

    share = distinct_share(col.dropna().tolist())
    return None if share is None else round(share, 4)


def _share(col, pred) -> float | None:
    vals = col.dropna()
    return round(float(np.mean([pred(v) for v in vals])), 4) if len(vals) else None


def _mean(col, median: bool = False) -> float | None:
    vals = col.dropna()
    return round(float(vals.median() if median else vals.mean()), 4) if len(vals) else None


@dataclass
class _Run:
    """One interpret run: the labeller and its context, the store, the codes and the settings."""

    context: LabelContext
    labeller: Labeller
    store: FeatureStore
    csr: Any
    csc: Any
    examples: ExampleConfig
    batch_size: int
    run: int
    detect: bool
    """Whether the LLM detection scorer runs."""
    nearest: NearestDocuments
    """Each document's nearest documents (for the per-document hard negatives), kept across batches."""


def _process(r: _Run, todo: np.ndarray) -> None:
    """Label and score the features in `todo`, one committed batch at a time."""
    from .labellers import LabellingStopped, as_label
    from .scorers import category_scores, document_categories, embedding_scores, quality_scores

    ctx = r.context
    cats = _categories(ctx.ws, document_categories)
    cat_scores = category_scores(r.csr, cats, todo) if cats else {}
    tracker = Tracker(ctx.progress, "interpret", len(todo), unit="feature")
    for start in range(0, len(todo), r.batch_size):
        batch = todo[start : start + r.batch_size]
        exs = select_examples(r.csc, batch, ctx.doc_vectors, r.examples, nearest=r.nearest)
        error = None
        try:
            made = r.labeller.label_batch(exs, ctx)
        except LabellingStopped as stop:
            made, error = stop.results, stop.cause
        labelled = [(ex, lab) for ex, lab in zip(exs, map(as_label, made)) if lab is not None]
        ctx.phrase_emb.add([t for _, lab in labelled for t in (lab.name, lab.description) if t])
        labels, descriptions, scores, rows, categories = {}, {}, {}, {}, {}
        for ex, lab in labelled:
            f = ex.feature
            labels[f] = (lab.name, r.labeller.name, lab.detail)
            descriptions[f] = lab.description
            s = embedding_scores(ctx.phrase_emb.get([lab.name])[0], ctx.doc_vectors, ex) if lab.name else {}
            if lab.name and lab.description:
                s.update(embedding_scores(ctx.phrase_emb.get([lab.description])[0], ctx.doc_vectors, ex,
                                          prefix="description_auc"))
            s.update(quality_scores(ctx.doc_vectors, ex))
            cs = cat_scores.get(f, {})
            categories[f] = cs.get("category")
            s.update({k: v for k, v in cs.items() if k != "category"})
            scores[f] = s
            rows[f] = ex.rows()
        if r.detect and error is None:
            from .llm import llm_detection

            det, error = llm_detection(ctx.chat, ctx.llm, [ex for ex, lab in labelled if lab.name], labels, ctx.texts)
            for f, s in det.items():
                scores[f].update(s)
        r.store.write_batch(labels=labels, scores=scores, examples=rows, categories=categories, run=r.run,
                            descriptions=descriptions, version=labeller_version(r.labeller))
        tracker.update(len(batch))
        if error is not None:
            tracker.close()
            raise error
    tracker.close()


def _categories(ws: Workspace, parse) -> list[list[str]] | None:
    """Per document its categories (`scorers.document_categories`), the corpus's category column read block by
    block; None when the corpus has none."""
    if "categories" not in ws.manifest.get("columns", []):
        return None
    out: list[list[str]] = []
    for part in ws.corpus_batches(["categories"]):
        out += parse(part) or [[] for _ in range(len(part))]
    return out if any(out) else None


def _distinct_names(r: _Run) -> int:
    """Rename features that share a name (`names.rename_shared`), rebuild their descriptions and score both again;
    returns how many were renamed. Only features whose labeller stored its candidates take part."""
    from .keywords import describe
    from .names import rename_shared, shared_names
    from .scorers import auc_matrix, embedding_scores

    t = r.store.table()
    t = t[(t["status"] == "done") & t["label"].notna()]
    names = dict(zip(t["id"].astype(int), t["label"]))
    members = sorted({f for fs in shared_names(names).values() for f in fs})
    details = {f: d for f, d in r.store.details(members, r.labeller.name).items() if d.get("candidates")}
    if not details:
        return 0
    ctx = r.context
    exs = {ex.feature: ex for ex in select_examples(r.csc, np.asarray(sorted(details)), ctx.doc_vectors, r.examples,
                                                   nearest=r.nearest)}

    def contrast(f: int, others: list[int], cands: list[str]) -> np.ndarray:
        rest = np.concatenate([exs[g].shown_pos for g in others if g in exs] or [np.zeros(0, np.int64)])
        if f not in exs or not len(rest) or not len(exs[f].shown_pos):
            return np.zeros(len(cands))
        vecs = ctx.phrase_emb.get(cands)
        return auc_matrix(vecs @ np.asarray(ctx.doc_vectors[exs[f].shown_pos]).T,
                          vecs @ np.asarray(ctx.doc_vectors[rest]).T)

    renamed = rename_shared(names, {f: d["candidates"] for f, d in details.items()}, contrast)
    descs = dict(zip(t["id"].astype(int), t["description"]))
    for f, name in renamed.items():
        parts = details[f].get("description_parts")
        descs[f] = (describe(name, parts, set_apart=details[f].get("description_set_apart", True))
                    if parts is not None else descs.get(f))
    ctx.phrase_emb.add([x for f, name in renamed.items() for x in (name, descs[f]) if isinstance(x, str)])  # one call
    for f, name in renamed.items():
        d, desc = details[f], descs[f]
        scores = embedding_scores(ctx.phrase_emb.get([name])[0], ctx.doc_vectors, exs[f])
        if isinstance(desc, str):
            scores.update(embedding_scores(ctx.phrase_emb.get([desc])[0], ctx.doc_vectors, exs[f],
                                           prefix="description_auc"))
        r.store.rename(f, r.labeller.name, name, desc if isinstance(desc, str) else None, scores,
                       {**d, "renamed_from": names[f]})
    return len(renamed)


def apply_clean_filter(store: FeatureStore, cfg: CleanConfig) -> int:
    """Mark clean features: labelled, scores over the thresholds, density below the cap, and for each label
    shared by several features only the best-scoring one. Returns how many are clean."""
    t = store.table()
    ok = (t["status"] == "done") & t["label"].notna() & (t["n_active"] >= cfg.min_active)
    ok &= t["density"] < cfg.max_density
    def passes(rand: str, hard: str):
        return (t[rand].fillna(0) >= cfg.min_embedding_auc) & (t[hard].isna() | (t[hard] >= cfg.min_embedding_auc_hard))

    ok &= passes("embedding_auc", "embedding_auc_hard") | (
        t["description_auc"].notna() & passes("description_auc", "description_auc_hard"))
    ok &= t["llm_f1"].isna() | (t["llm_f1"] >= cfg.min_llm_f1)
    cand = t[ok].copy()
    cand["key"] = cand["label"].str.lower().str.strip()
    cand["rank"] = cand["llm_f1"].fillna(0) + cand["embedding_auc_combined"].fillna(cand["embedding_auc"].fillna(0))
    best = cand.sort_values(["rank", "id"], ascending=[False, True]).drop_duplicates("key")
    store.set_clean(best["id"].tolist())
    return int(len(best))


def run_stage(ws: Workspace, sae_name: str, progress: ProgressCallback | None = None) -> None:
    """The `embedsae run` stage: offline interpretation of every alive feature."""
    s = interpret(ws, sae_name, progress=progress)
    logger.info(f"interpret: {s['interpreted']} features labelled, mean embedding AUC {s['mean_embedding_auc']}, "
        f"{s['clean']} clean ({s['seconds']:.0f}s)")
