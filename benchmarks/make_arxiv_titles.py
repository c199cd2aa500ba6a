"""Make a BEIR-layout known-item benchmark from the arXiv abstracts: titles are the queries, abstracts
(without their titles) the corpus, and each title's own abstract its one relevant document.

    python benchmarks/make_arxiv_titles.py OUT_DIR [--docs 1500] [--queries 300] [--seed 0]

A seeded random sample of --docs abstracts forms the corpus; --queries of them give their titles as
queries. A development set for the fusion study (benchmarks/fusion_study.py), next to Cranfield.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv" / "abstracts.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--source", default=str(SOURCE))
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.source, encoding="utf-8") if line.strip()]
    rows = [r for r in rows if r.get("title", "").strip() and r.get("abstract", "").strip()]
    rng = np.random.default_rng(args.seed)
    docs = [rows[i] for i in rng.choice(len(rows), min(args.docs, len(rows)), replace=False)]
    queries = [docs[i] for i in rng.choice(len(docs), min(args.queries, len(docs)), replace=False)]
    out = Path(args.out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for r in docs:
            f.write(json.dumps({"_id": r["id"], "title": "", "text": " ".join(r["abstract"].split())}) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        for r in queries:
            f.write(json.dumps({"_id": "q" + r["id"], "text": " ".join(r["title"].split())}) + "\n")
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for r in queries:
            f.write(f"q{r['id']}\t{r['id']}\t1\n")
    print(f"{out}: {len(docs)} abstracts, {len(queries)} title queries")


if __name__ == "__main__":
    main()
