"""Label quality: the interpret stage's names and descriptions against the baseline "title of the feature's top
document", scored the same way (embedding AUC of held-out activating documents against 200 random non-activating
ones and against their per-document hard negatives), with the share of one-phrase names, of distinct names and
the stage time.

    python benchmarks/label_quality.py WS [--sae NAME] [--work DIR] [--reuse] [--features N] [--show 20]
        [--baseline-src DIR --rounds 2] [--limit N]

Runs `interpret` (all features, the default offline labeller) on a copy of the workspace WS in DIR (a temporary
folder by default; `--reuse` scores a copy interpreted before), then for the interpreted features (or a random
N of them, seed 0) prints one row per kind of label:

- names and descriptions of the labeller, embedded here in f32 (the stage embeds phrases in bf16 by default), and
  the stage's own stored scores of them;
- the title of the feature's top document (its strongest activating document: half the time one of the held-out
  documents, so its own text is among those scored), and the title of its top shown document (the strongest of
  those the labeller sees). A corpus without titles gives the first sentence of the text instead.

`--show K` prints K random features (seed 2026) with name, description, both scores and their top-3 titles.
`--baseline-src DIR` also times the interpret stage of the code in DIR (a `src` folder, e.g. an export of main)
on another copy, the two alternated `--rounds` times, and prints the medians, their ratio and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STAGE = """
import json, sys, time
from embedsae.interpret.stage import interpret
t = time.perf_counter()
s = interpret(sys.argv[1], max_features=int(sys.argv[2]) if len(sys.argv) > 2 else None)
s["wall"] = time.perf_counter() - t
print(json.dumps(s))
"""


def run_stage(ws: Path, src: str | None, limit: int | None) -> dict:
    """Interpret the features of a fresh copy of `ws` in a child process (code from `src`, or this checkout)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    argv = [sys.executable, "-c", STAGE, str(ws)] + ([str(limit)] if limit else [])
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"interpret failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", " ".join(str(text).split()), maxsplit=1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--work", help="folder for the interpreted copy (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="score the copy in --work as it is (interpreted before)")
    ap.add_argument("--limit", type=int, help="interpret only the first N alive features (default: all)")
    ap.add_argument("--features", type=int, help="score a random N of the interpreted features (default: all)")
    ap.add_argument("--show", type=int, default=0, help="print K random features with their labels and titles")
    ap.add_argument("--baseline-src", help="a src folder whose interpret stage is timed against this one's")
    ap.add_argument("--rounds", type=int, default=1, help="alternated timing rounds with --baseline-src")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()

    from embedsae.data.vectors import unit
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import PhraseEmbeddings
    from embedsae.interpret.labellers import is_one_phrase
    from embedsae.interpret.names import distinct_share
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.store import FeatureStore, db_path
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    tmp = tempfile.mkdtemp(prefix="label-quality-")
    work = Path(args.work or tmp)
    copy = work / "ws"
    times: dict[str, list[float]] = {"this": [], "baseline": []}
    loads = [os.getloadavg()[0]]
    if not args.reuse:
        for r in range(max(1, args.rounds)):
            order = ["baseline", "this"] if r % 2 else ["this", "baseline"]
            for who in order:
                if who == "baseline" and not args.baseline_src:
                    continue
                target = copy if who == "this" else work / "baseline-ws"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(args.workspace, target)
                s = run_stage(target, args.baseline_src if who == "baseline" else None, args.limit)
                times[who].append(s["wall"])
                loads.append(os.getloadavg()[0])
                print(f"interpret ({who}, round {r + 1}): {s['wall']:.1f}s, load {loads[-1]:.1f}", file=sys.stderr)
    ws = Workspace.open(copy)
    name = ws.resolve_sae(args.sae)
    with FeatureStore(db_path(ws.sae_dir(name))) as store:
        table = store.table()
    done = table[(table["status"] == "done") & table["label"].notna()].set_index("id")
    ids = done.index.to_numpy()
    if args.features and args.features < len(ids):
        ids = np.sort(np.random.default_rng(0).choice(ids, args.features, replace=False))
    csc = workspace_codes(ws, name).to_csr().tocsc()
    docs = unit(ws.embeddings)
    exs = select_examples(csc, ids, docs)
    has_titles = "title" in ws.corpus.columns
    texts = ws.corpus["text"].astype(str).tolist()
    titles = ws.titles() if has_titles else [first_sentence(t) for t in texts]
    top_doc = []
    for f in ids:
        lo, hi = csc.indptr[f], csc.indptr[f + 1]
        top_doc.append(int(csc.indices[lo:hi][np.argmax(csc.data[lo:hi])]))
    embedder = ws.embedder(batch_size=256)
    pe = PhraseEmbeddings(lambda t: embedder.embed(t))

    def scored(labels: list) -> tuple[float, float]:
        """Mean held-out AUCs of per-feature labels (None: not scored), embedded here in f32."""
        pe.add([lab for lab in labels if isinstance(lab, str)])
        got = [embedding_scores(pe.get([lab])[0], docs, ex) if isinstance(lab, str) else
               {"embedding_auc": None, "embedding_auc_hard": None} for lab, ex in zip(labels, exs)]
        return (float(np.nanmean([g["embedding_auc"] if g["embedding_auc"] is not None else np.nan for g in got])),
                float(np.nanmean([g["embedding_auc_hard"] if g["embedding_auc_hard"] is not None else np.nan
                                  for g in got])))

    sub = done.loc[ids]
    # names and descriptions re-embedded in f32 (the stage may embed phrases in bf16): the stored scores beside
    rows = [
        ("names", *scored(sub["label"].tolist()),
         float(np.mean([is_one_phrase(x) for x in done["label"]])), distinct_share(done["label"].tolist())),
        ("descriptions", *scored(sub["description"].tolist()), None, None),
        ("names (stage's stored scores)", float(sub["embedding_auc"].mean()), float(sub["embedding_auc_hard"].mean()),
         None, None),
        ("descriptions (stage's stored scores)", float(sub["description_auc"].mean()),
         float(sub["description_auc_hard"].mean()), None, None),
    ]
    what = "title" if has_titles else "first sentence"
    base = [titles[d] for d in top_doc]
    rows.append((f"baseline: {what} of the top document", *scored(base),
                 float(np.mean([is_one_phrase(x) for x in base])), None))
    shown = [titles[int(ex.top[0])] for ex in exs]
    rows.append((f"baseline: {what} of the top shown document", *scored(shown),
                 float(np.mean([is_one_phrase(x) for x in shown])), None))
    print(f"\n{ws.path.name}: {len(ids)} features scored of {len(done)} interpreted ({ws.n_documents} documents)")
    print("| labels | vs random | vs hard | one phrase | distinct names |\n| --- | --- | --- | --- | --- |")
    for label, r, h, one, dis in rows:
        print(f"| {label} | {r:.3f} | {h:.3f} | {'' if one is None else f'{one:.1%}'} | "
              f"{'' if dis is None else f'{dis:.1%}'} |")
    figures = {"workspace": str(args.workspace), "features": int(len(ids)),
               "rows": [dict(zip(("labels", "auc", "auc_hard", "one_phrase", "distinct"), r)) for r in rows],
               "load": loads}
    for who, ts in times.items():
        if ts:
            print(f"interpret stage ({who}): median {statistics.median(ts):.1f}s of {len(ts)} "
                  f"({', '.join(f'{t:.1f}' for t in ts)})")
            figures[f"stage_{who}"] = ts
    if times["baseline"]:
        ratio = statistics.median(times["this"]) / statistics.median(times["baseline"])
        print(f"this / baseline: {ratio:.2f}x; load average {min(loads):.1f}-{max(loads):.1f}")
        figures["ratio"] = ratio
    if args.show:
        pick = np.sort(np.random.default_rng(2026).choice(ids, min(args.show, len(ids)), replace=False))
        print("\n| id | name | description | name AUC rand / hard | description AUC rand / hard | top-3 titles |\n"
              "| --- | --- | --- | --- | --- | --- |")
        for f in pick:
            r = done.loc[f]
            lo, hi = csc.indptr[f], csc.indptr[f + 1]
            top3 = csc.indices[lo:hi][np.argsort(-csc.data[lo:hi], kind="stable")[:3]]
            print(f"| {f} | {r['label']} | {r['description']} | {r['embedding_auc']:.2f} / {r['embedding_auc_hard']:.2f} "
                  f"| {r['description_auc']:.2f} / {r['description_auc_hard']:.2f} | "
                  f"{' · '.join(titles[d] for d in top3)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    if not args.work:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
