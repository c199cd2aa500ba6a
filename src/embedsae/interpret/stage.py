"""The interpret stage: for every alive feature, select examples, write a label and score it, batch by batch,
committing each batch to the feature store so a killed run resumes where it stopped."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..data.embedders import l2_normalise
from ..workspace import Workspace
from .examples import ExampleConfig, select_examples
from .store import FeatureStore, db_path

logger = logging.getLogger(__name__)


@dataclass
class CleanConfig:
    """The clean-feature filter (the seed's): thresholds on scores and density, duplicate labels by score."""

    min_embedding_auc: float = 0.8
    max_density: float = 0.2
    min_llm_f1: float = 0.5
    """Applied only to features that have an LLM detection score."""
    min_active: int = 3


def feature_stats(codes_csc, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per latent: number of documents it fires on, density, mean and max activation where it fires."""
    n_active = np.diff(codes_csc.indptr)
    sums = np.asarray(codes_csc.sum(axis=0), dtype=np.float64).ravel()
    maxes = codes_csc.max(axis=0).toarray().ravel().astype(np.float64)  # activations are non-negative
    return n_active, n_active / max(n_docs, 1), sums / np.maximum(n_active, 1), maxes


def interpret(
    ws: Workspace | str,
    sae: str | None = None,
    *,
    labeller: str = "keywords",
    llm: Any = None,
    llm_score: bool = True,
    max_features: int | None = None,
    batch_size: int = 128,
    examples: ExampleConfig | None = None,
    clean: CleanConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Label and score every alive feature of an SAE (resuming a previous run); returns a summary.

    `labeller` is "keywords" (offline) or "llm" (needs `llm`, an `LLMConfig`). With an `llm` config the LLM
    detection scorer runs too (unless `llm_score` is False), whichever labeller made the labels.
    """
    from tqdm.auto import tqdm

    from ..errors import InputError
    from ..sae.codes import workspace_codes

    t0 = time.perf_counter()
    ws = ws if isinstance(ws, Workspace) else Workspace.open(ws)
    name = ws.resolve_sae(sae)
    if labeller not in ("keywords", "llm"):
        raise InputError(f"unknown labeller '{labeller}': use 'keywords' (offline) or 'llm'")
    if labeller == "llm" and llm is None:
        raise InputError("the LLM labeller needs an endpoint: pass --llm-base-url URL and --llm-model NAME")
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    ex_cfg = examples or ExampleConfig()
    codes = workspace_codes(ws, name, progress=progress, save=True)
    csr = codes.to_csr()
    csc = csr.tocsc()
    n_active, density, act_mean, act_max = feature_stats(csc, ws.n_documents)
    alive = np.flatnonzero(n_active > 0)
    chosen = alive[:max_features] if max_features is not None else alive
    labeller_name = "keywords" if labeller == "keywords" else f"llm:{llm.model}"

    store = FeatureStore(db_path(ws.sae_dir(name)))
    try:
        store.write_stats(zip(range(len(n_active)), density, act_mean, act_max, n_active))
        run = store.new_run()
        done = store.done_ids(labeller_name)
        todo = np.asarray([f for f in chosen if int(f) not in done], dtype=np.int64)
        logger.info(f"interpreting SAE '{name}': {len(alive)} alive of {len(n_active)} features, "
            f"{len(chosen) - len(todo)} already done, {len(todo)} to do ({labeller_name})")
        client = None
        if llm is not None:
            from .llm import ChatClient

            client = ChatClient(llm, store=store)
        if len(todo):
            _process(ws, name, store, todo, csr, csc, labeller, client, llm, llm_score, ex_cfg, batch_size, run, progress,
                     tqdm)
        n_clean = apply_clean_filter(store, clean or CleanConfig())
        table = store.table()
    finally:
        store.close()
    done_now = table[table["id"].isin(chosen) & (table["status"] == "done")]
    summary = {
        "sae": name, "labeller": labeller_name, "features": int(len(n_active)), "alive": int(len(alive)),
        "interpreted": int(len(done_now)), "skipped": int(len(chosen) - len(todo)),
        "failed": int((table["id"].isin(chosen) & (table["status"] == "failed")).sum()),
        "mean_embedding_auc": _mean(done_now["embedding_auc"]),
        "median_embedding_auc": _mean(done_now["embedding_auc"], median=True), "mean_llm_f1": _mean(done_now["llm_f1"]),
        "mean_category_f1": _mean(done_now["category_f1"]), "clean": n_clean,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if client is not None:
        summary["llm_usage"] = client.usage.as_dict()
    settings = {"labeller": labeller_name, "max_features": max_features, "examples": asdict(ex_cfg),
                "clean": asdict(clean or CleanConfig())}
    ws.record_stage(f"interpret:{name}", settings, summary=summary)
    return summary


def _mean(col, median: bool = False) -> float | None:
    vals = col.dropna()
    return round(float(vals.median() if median else vals.mean()), 4) if len(vals) else None


def _process(ws, name, store, todo, csr, csc, labeller, client, llm, llm_score, ex_cfg, batch_size, run, progress,
             tqdm):
    """Label and score the features in `todo`, one committed batch at a time."""
    from .keywords import KeywordLabeller, PhraseEmbeddings, build_vocabulary
    from .scorers import category_scores, document_categories, embedding_scores

    doc_vectors = l2_normalise(ws.embeddings)
    embedder = ws.embedder(batch_size=256)
    phrase_emb = PhraseEmbeddings(lambda texts: embedder.embed(texts))
    texts = ws.corpus["text"].astype(str).tolist()
    keyword_labeller = None
    if labeller == "keywords":
        encoder = ws.load_sae(name).W_enc.detach().float().cpu().numpy()
        keyword_labeller = KeywordLabeller(build_vocabulary(texts, progress=progress), doc_vectors, encoder, phrase_emb)
    cats = document_categories(ws.corpus)
    cat_scores = category_scores(csr, cats, todo) if cats else {}
    bar = tqdm(total=len(todo), disable=not progress, desc="interpret", unit="feature")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        exs = select_examples(csc, batch, doc_vectors, ex_cfg)
        if labeller == "keywords":
            made = keyword_labeller.label_batch(exs)
            error = None
        else:
            made, error = _llm_labels(client, llm, exs, texts)
        labelled = [(ex, lab) for ex, lab in zip(exs, made) if lab is not None]
        phrase_emb.add([lab[0] for _, lab in labelled if lab[0]])
        labels, scores, rows, categories = {}, {}, {}, {}
        for ex, (label, detail) in labelled:
            f = ex.feature
            labels[f] = (label, labeller if labeller == "keywords" else f"llm:{llm.model}", detail)
            s = embedding_scores(phrase_emb.get([label])[0], doc_vectors, ex) if label else {}
            cs = cat_scores.get(f, {})
            categories[f] = cs.get("category")
            s.update({k: v for k, v in cs.items() if k != "category"})
            scores[f] = s
            rows[f] = ex.rows()
        if client is not None and llm_score and error is None:
            det, error = _llm_detection(client, llm, [ex for ex, lab in labelled if lab[0]], labels, texts)
            for f, s in det.items():
                scores[f].update(s)
        store.write_batch(labels=labels, scores=scores, examples=rows, categories=categories, run=run)
        bar.update(len(batch))
        if error is not None:
            bar.close()
            raise error
    bar.close()


def _llm_labels(client, llm, exs, texts):
    """LLM labels for a batch; failures of single features are recorded, an endpoint failure stops the run."""
    from .llm import LLMEndpointError, MalformedAnswer, label_prompt, parse_label

    prompts = [label_prompt([texts[d] for d in ex.top[: llm.n_examples]], ex.top_act[: llm.n_examples],
                            [texts[d] for d in ex.shown_neg[: llm.n_negatives]], llm.chars) for ex in exs]
    answers = client.complete_many(prompts, validate=parse_label)
    made: list = []
    error = None
    for ans in answers:
        if isinstance(ans, LLMEndpointError):
            error = error or ans
            made.append(None)  # not attempted to the end: left for the next run
        elif isinstance(ans, MalformedAnswer):
            made.append((None, {"error": f"malformed answer: {ans}"}))
        elif isinstance(ans, Exception):
            made.append((None, {"error": str(ans)}))
        else:
            try:
                made.append((parse_label(ans), {"answer": ans[-2000:]}))
            except MalformedAnswer as exc:
                made.append((None, {"error": f"malformed answer: {exc}", "answer": ans[-500:]}))
    return made, error


def _llm_detection(client, llm, exs, labels, texts):
    """LLM detection scores (Pearson, F1) for labelled features of a batch."""
    from .llm import (
        LLMEndpointError,
        MalformedAnswer,
        detection_documents,
        detection_prompt,
        detection_scores,
        parse_ratings,
    )

    docs = [detection_documents(ex, llm.n_detect) for ex in exs]
    prompts = [detection_prompt(labels[ex.feature][0], [texts[d] for d in d_], llm.chars) for ex, (d_, _) in
               zip(exs, docs)]
    answers = client.complete_many(prompts, validate=lambda a: parse_ratings(a, 1))
    out, error = {}, None
    for ex, (d_, acts), ans in zip(exs, docs, answers):
        if isinstance(ans, LLMEndpointError):
            error = error or ans
            continue
        if isinstance(ans, Exception):
            continue
        try:
            out[ex.feature] = detection_scores(parse_ratings(ans, len(d_)), acts)
        except MalformedAnswer:
            continue
    return out, error


def apply_clean_filter(store: FeatureStore, cfg: CleanConfig) -> int:
    """Mark clean features: labelled, scores over the thresholds, density below the cap, and for each label
    shared by several features only the best-scoring one. Returns how many are clean."""
    t = store.table()
    ok = (t["status"] == "done") & t["label"].notna() & (t["n_active"] >= cfg.min_active)
    ok &= t["density"] < cfg.max_density
    ok &= t["embedding_auc"].fillna(0) >= cfg.min_embedding_auc
    ok &= t["llm_f1"].isna() | (t["llm_f1"] >= cfg.min_llm_f1)
    cand = t[ok].copy()
    cand["key"] = cand["label"].str.lower().str.strip()
    cand["rank"] = cand["llm_f1"].fillna(0) + cand["embedding_auc"].fillna(0)
    best = cand.sort_values(["rank", "id"], ascending=[False, True]).drop_duplicates("key")
    store.set_clean(best["id"].tolist())
    return int(len(best))


def run_stage(ws: Workspace, sae_name: str, progress: bool = True) -> None:
    """The `embedsae run` stage: offline interpretation of every alive feature."""
    s = interpret(ws, sae_name, progress=progress)
    logger.info(f"interpret: {s['interpreted']} features labelled, mean embedding AUC {s['mean_embedding_auc']}, "
        f"{s['clean']} clean ({s['seconds']:.0f}s)")
