"""Speed and quality of the offline keyword labeller: document-centroid candidate ranking (the default) against
embedding every candidate (the baseline), on the same features of one workspace, in the same run.

    python benchmarks/interpret_speed.py WS [--sae NAME] [--features 200] [--repeats 3]

Prints, per variant, the median seconds to label the features (vocabulary and model loading excluded, paid once),
phrases embedded, and the mean held-out embedding AUC; then the speed ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import PhraseEmbeddings, build_vocabulary, label_batch, phrase_centroids
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.stage import _unit_rows, feature_stats
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--features", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    csc = workspace_codes(ws, name).to_csr().tocsc()
    n_active, *_ = feature_stats(csc, ws.n_documents)
    feats = np.flatnonzero(n_active)[: args.features]
    docs = _unit_rows(ws.embeddings)
    t0 = time.perf_counter()
    vocab = build_vocabulary(ws.corpus["text"].astype(str).tolist())
    cent = phrase_centroids(vocab, docs)
    print(f"vocabulary: {len(vocab.phrases)} phrases in {time.perf_counter() - t0:.1f}s")
    embedder = ws.embedder(batch_size=256)
    exs = select_examples(csc, feats, docs)
    results = {}
    for variant, embed_all in (("centroid ranking (default)", False), ("embed every candidate (baseline)", True)):
        times, aucs, n_emb = [], [], 0
        for _ in range(args.repeats):
            pe = PhraseEmbeddings(lambda t: embedder.embed(t))
            t = time.perf_counter()
            made = label_batch(vocab, cent, exs, docs, pe, embed_all=embed_all)
            times.append(time.perf_counter() - t)
            n_emb = len(pe)
            aucs = [embedding_scores(pe.get([lab])[0], docs, ex)["embedding_auc"] for ex, (lab, _) in zip(exs, made) if lab]
        results[variant] = statistics.median(times)
        print(f"{variant:<34} median {results[variant]:7.2f}s over {args.repeats} runs, {n_emb} phrases embedded, "
              f"mean held-out AUC {np.nanmean(aucs):.3f} on {len(feats)} features")
    base, ours = results["embed every candidate (baseline)"], results["centroid ranking (default)"]
    print(f"speed-up of the default over the baseline: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
