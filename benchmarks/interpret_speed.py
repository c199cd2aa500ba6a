"""Speed and quality of the offline keyword labeller: the default (one phrase chosen by its AUCs on the shown
examples against random, corpus and hard negatives, with the d' prior) against the d' prior alone, on the same
features of one workspace, in the same run.

    python benchmarks/interpret_speed.py WS [--sae NAME] [--features 300] [--seed 0]

Prints, per variant, the seconds to label the features (vocabulary building and model loading excluded, paid
once; phrase embeddings are not shared between variants), phrases embedded, the mean held-out embedding AUC
against random and against hard negatives, the share of single-phrase labels, and the time ratio to the d' prior.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from embedsae.data.embedders import l2_normalise
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import MIXED_PREFIX, KeywordLabeller, PhraseEmbeddings, build_vocabulary
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.stage import feature_stats
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--features", type=int, default=300, help="random alive features to label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    csc = workspace_codes(ws, name).to_csr().tocsc()
    n_active, *_ = feature_stats(csc, ws.n_documents)
    alive = np.flatnonzero(n_active)
    feats = np.sort(np.random.default_rng(args.seed).choice(alive, min(args.features, len(alive)), replace=False))
    docs = l2_normalise(ws.embeddings)
    t0 = time.perf_counter()
    vocab = build_vocabulary(ws.corpus["text"].astype(str).tolist())
    print(f"vocabulary: {len(vocab.phrases)} phrases ({int(vocab.standalone.sum())} stand alone) "
          f"in {time.perf_counter() - t0:.1f}s")
    embedder = ws.embedder(batch_size=256)
    encoder = ws.load_sae(name).W_enc.detach().float().cpu().numpy()
    exs = select_examples(csc, feats, docs)
    variants = {"d' prior only (baseline)": dict(prior_weight=1000.0, mixed=False), "default": {}}
    base = None
    for variant, kw in variants.items():
        pe = PhraseEmbeddings(lambda t: embedder.embed(t))
        labeller = KeywordLabeller(vocab, docs, encoder, pe, **kw)
        t = time.perf_counter()
        made = [m for s in range(0, len(exs), args.batch_size)
                for m in labeller.label_batch(exs[s : s + args.batch_size], None)]
        seconds = time.perf_counter() - t
        base = base or seconds
        scores = [embedding_scores(pe.get([lab])[0], docs, ex) for ex, (lab, _) in zip(exs, made) if lab]
        rand = np.nanmean([s["embedding_auc"] if s["embedding_auc"] is not None else np.nan for s in scores])
        hard = np.nanmean([s["embedding_auc_hard"] if s["embedding_auc_hard"] is not None else np.nan for s in scores])
        single = np.mean([not lab.startswith(MIXED_PREFIX) for lab, _ in made if lab])
        print(f"{variant:<26} {seconds:7.2f}s (x{seconds / base:.2f}), {len(pe)} phrases embedded, held-out AUC "
              f"{rand:.3f} random / {hard:.3f} hard, {single:.1%} single phrases, {len(feats)} features")


if __name__ == "__main__":
    main()
