"""Concept detection on GloVe-50 (top N words) with the Battig categories: SAE features vs raw dimensions,
PCA and ICA components. Prints the summary rows, the five best group -> feature matches, and timings.

    PYTHONPATH=src python benchmarks/words_concepts.py [--top 20000] [--k 4 --latents 4096 ...] [--ws DIR]

Uses the recommended word settings (embedsae.words.RECOMMENDED_TRAIN) unless overridden. Reuses an SAE of
the same name already trained in --ws.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATTIG = ROOT.parent / "shared" / "data" / "words" / "categories-battig.csv"


def main() -> None:
    from embedsae import pipeline
    from embedsae.words import RECOMMENDED_TRAIN, build_word_workspace, concept_report, read_groups
    from embedsae.workspace import Workspace

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--top", type=int, default=20000)
    p.add_argument("--groups", default=str(BATTIG))
    p.add_argument("--ws", help="workspace folder to (re)use (default: a temporary folder)")
    for key, value in RECOMMENDED_TRAIN.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args()
    if not Path(args.groups).is_file():
        raise SystemExit(f"groups file not found: {args.groups} (the shared data folder must sit beside the project)")
    settings = {key: getattr(args, key) for key in RECOMMENDED_TRAIN}
    folder = Path(args.ws) if args.ws else Path(tempfile.mkdtemp(prefix="words-bench-")) / "ws"
    t0 = time.perf_counter()
    ws = Workspace.open(folder) if Workspace.exists(folder) else build_word_workspace("glove50", folder, top=args.top)
    t1 = time.perf_counter()
    name = "words-k{k}-n{latents}-e{epochs}-lr{lr}".format(**settings)
    if name not in ws.sae_names():
        pipeline.train(ws, name=name, evaluate=False, **settings)
    t2 = time.perf_counter()
    report = concept_report(ws, read_groups(args.groups), sae=name)
    t3 = time.perf_counter()
    print(f"workspace {ws.path}: {ws.n_documents} words; SAE {name}")
    print(pipeline.markdown_table(__import__("pandas").DataFrame(report.rows())))
    print("five best group -> feature matches:")
    for d in report.best_matches("sae", 5):
        print(f"  {d['group']} -> f{d['feature']} F1 {d['f1']:.3f} (P {d['precision']:.2f}, R {d['recall']:.2f}): "
              + ", ".join(d["top_words"]))
    print(f"\nseconds: workspace {t1 - t0:.1f}, training {t2 - t1:.1f}, report {t3 - t2:.1f}")


if __name__ == "__main__":
    main()
