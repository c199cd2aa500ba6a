"""Speed and quality of the offline keyword labeller: the default (name and description chosen by their AUCs on
the shown examples against random, corpus and hard negatives, with the d' priors, from vocabulary phrases,
corpus-wide phrases and title runs) against the vocabulary phrases of the shown documents alone (no title runs, no
corpus-wide phrases), on the same features of one workspace, in the same run.

    python benchmarks/interpret_speed.py WS [--sae NAME] [--features 300] [--seed 0] [--precision bf16]

Prints, per variant, the seconds to label the features (vocabulary building and model loading excluded, paid
once; phrase embeddings are not shared between variants), phrases embedded, the mean held-out embedding AUC of
the names and of the descriptions against random and against hard negatives, the share of one-phrase names, and
the time ratio to the first variant.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from embedsae.data.embedders import l2_normalise
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import KeywordLabeller, build_vocabulary
    from embedsae.interpret.labellers import as_label, is_one_phrase
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.stage import feature_stats, phrase_embeddings
    from embedsae.sae.codes import workspace_codes
    from embedsae.threads import blas_single_thread
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--features", type=int, default=300, help="random alive features to label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="bf16", help="of the phrase embeddings, as the stage's phrase_precision")
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
    encoder = ws.load_sae(name).W_enc.detach().float().cpu().numpy()
    exs = select_examples(csc, feats, docs)
    titles = ws.titles()
    variants = {"shown documents' phrases only": dict(n_chunks=0, n_global=0, titles=None),
                "default": dict(titles=titles)}
    base = None

    def mean_auc(texts: list) -> tuple[float, float]:
        got = [embedding_scores(pe.get([t])[0], docs, ex) for ex, t in zip(exs, texts) if t]
        return tuple(float(np.nanmean([g[k] if g[k] is not None else np.nan for g in got]))  # type: ignore[return-value]
                     for k in ("embedding_auc", "embedding_auc_hard"))

    for variant, kw in variants.items():
        pe = phrase_embeddings(ws, args.precision)  # as the stage embeds phrases
        labeller = KeywordLabeller(vocab, docs, encoder, pe, **kw)
        t = time.perf_counter()
        with blas_single_thread():
            made = [as_label(m) for s in range(0, len(exs), args.batch_size)
                    for m in labeller.label_batch(exs[s : s + args.batch_size], None)]
        seconds = time.perf_counter() - t
        base = base or seconds
        n_embedded = len(pe)
        name = mean_auc([m.name for m in made])
        desc = mean_auc([m.description for m in made])
        single = np.mean([is_one_phrase(m.name) for m in made if m.name])
        print(f"{variant:<30} {seconds:7.2f}s (x{seconds / base:.2f}), {n_embedded} phrases embedded, held-out AUC "
              f"names {name[0]:.3f} random / {name[1]:.3f} hard, descriptions {desc[0]:.3f} / {desc[1]:.3f}, "
              f"{single:.1%} one-phrase names, {len(feats)} features")


if __name__ == "__main__":
    main()
