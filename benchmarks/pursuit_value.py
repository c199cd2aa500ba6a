"""Where pursuit pays: the same SAE encoding with the plain top-k encoder (pursuit 0) and with encoder-guided
pursuit (the default, 4), on a BEIR corpus: held-out NMSE, concept and hybrid retrieval nDCG@10, and the mean
embedding AUC (random and hard negatives) of the offline labels of the first `--features` features.

    python benchmarks/pursuit_value.py ../shared/data/cranfield [--features 150] [--out /tmp/pursuit-value]

Both workspaces start from one embedding and train with the same seed (training does not depend on the encoder;
the script checks the two decoders are identical), so every difference comes from the codes. Uses the test embedding cache when EMBEDSAE_TEST_CACHE is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("beir", type=Path)
    ap.add_argument("--features", type=int, default=150, help="features interpreted per encoder")
    ap.add_argument("--out", type=Path, default=Path("/tmp/pursuit-value"))
    args = ap.parse_args()

    from embedsae import pipeline
    from embedsae.interpret.stage import interpret
    from embedsae.search import build_index
    from embedsae.search.evaluate import evaluate_retrieval
    from embedsae.workspace import Workspace

    embedder = None
    if os.environ.get("EMBEDSAE_TEST_CACHE"):
        sys.path.insert(0, str(ROOT))
        from tests.conftest import CachingEmbedder

        from embedsae.data.embedders import SentenceTransformerEmbedder

        embedder = CachingEmbedder(SentenceTransformerEmbedder(backend="torch"))
    shutil.rmtree(args.out, ignore_errors=True)
    base = pipeline.embed(args.beir, args.out / "base", embedder=embedder)
    rows, weights = {}, {}
    for pursuit in (0, 4):
        dst = args.out / f"pursuit-{pursuit}"
        shutil.copytree(base.path, dst)
        ws = Workspace.open(dst)
        t = time.perf_counter()
        pipeline.train(ws, pursuit=pursuit)  # same seed: the same weights; only the encoder differs
        train_s = time.perf_counter() - t
        name = ws.resolve_sae()
        weights[pursuit] = ws.load_sae(name).W_dec.detach()
        metrics = json.loads((ws.sae_dir(name) / "metrics.json").read_text())
        build_index(ws, name)
        ndcg = {r["mode"]: round(r["ndcg@10"], 4)
                for r in evaluate_retrieval(ws, args.beir, modes=["concept", "hybrid"], sae=name)}
        s = interpret(ws, name, max_features=args.features)
        rows[pursuit] = {"train+evaluate s": round(train_s, 1), "held-out nmse": round(metrics["nmse"], 4), **ndcg,
                         "auc random": s.get("mean_embedding_auc"), "auc hard": s.get("mean_embedding_auc_hard")}
    same = bool((weights[0] == weights[4]).all())
    print(f"{args.beir}: pipeline.train defaults, codes from the plain encoder (pursuit 0) and from pursuit (4); "
          f"identical decoder weights: {same}; interpreted: the first {args.features} features")
    for pursuit, row in rows.items():
        print(f"  pursuit {pursuit}: " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
