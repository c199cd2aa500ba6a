"""Speed and quality of the offline keyword labeller: the default (pairs and triples of phrases) against plainer
variants (single phrases only; pairs only), on the same features of one workspace, in the same run.

    python benchmarks/interpret_speed.py WS [--sae NAME] [--features 300]

Prints, per variant, the seconds to label the features (vocabulary building and model loading excluded, paid
once; phrase embeddings are not shared between variants), phrases embedded, and the mean held-out embedding AUC.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from embedsae.data.embedders import l2_normalise
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import KeywordLabeller, PhraseEmbeddings, build_vocabulary
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.stage import feature_stats
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--features", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    csc = workspace_codes(ws, name).to_csr().tocsc()
    n_active, *_ = feature_stats(csc, ws.n_documents)
    feats = np.flatnonzero(n_active)[: args.features]
    docs = l2_normalise(ws.embeddings)
    t0 = time.perf_counter()
    vocab = build_vocabulary(ws.corpus["text"].astype(str).tolist())
    print(f"vocabulary: {len(vocab.phrases)} phrases ({int(vocab.standalone.sum())} stand alone) "
          f"in {time.perf_counter() - t0:.1f}s")
    embedder = ws.embedder(batch_size=256)
    encoder = ws.load_sae(name).W_enc.detach().float().cpu().numpy()
    exs = select_examples(csc, feats, docs)
    variants = {"single phrases": dict(pairs=False, triples=False), "pairs": dict(triples=False),
                "pairs and triples (default)": {}}
    for variant, kw in variants.items():
        pe = PhraseEmbeddings(lambda t: embedder.embed(t))
        labeller = KeywordLabeller(vocab, docs, encoder, pe, **kw)
        t = time.perf_counter()
        made = [m for s in range(0, len(exs), args.batch_size) for m in labeller.label_batch(exs[s : s + args.batch_size])]
        seconds = time.perf_counter() - t
        aucs = [embedding_scores(pe.get([lab])[0], docs, ex)["embedding_auc"] for ex, (lab, _) in zip(exs, made) if lab]
        print(f"{variant:<28} {seconds:7.2f}s, {len(pe)} phrases embedded, mean held-out AUC "
              f"{np.nanmean(np.asarray(aucs, dtype=float)):.3f} on {len(feats)} features")


if __name__ == "__main__":
    main()
