"""The steering figures: on N real queries, raising an absent feature should raise the share of top-10
hits where it fires; lowering the query's strongest feature should lower it.

    python benchmarks/steering_effect.py WS --beir ../shared/data/cranfield [--queries 50] [--strengths 2,4,8]
        [--plot steering.png]

Edits are `strength` x the feature's largest activation over the documents. Prints one table row per
form x mode x strength; --plot draws the share of hits against the strength (residual form, dense).
"""

from __future__ import annotations

import argparse


def main() -> None:
    from embedsae.data.readers import read_beir
    from embedsae.search import Searcher
    from embedsae.search.steer_eval import steering_effect

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--beir", required=True, help="BEIR folder whose queries to use")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--sae")
    ap.add_argument("--strengths", default="4", help="comma-separated edit sizes in units of the feature's largest "
                    "document activation (default 4)")
    ap.add_argument("--forms", default="residual,decode")
    ap.add_argument("--modes", default="dense,concept")
    ap.add_argument("--plot", help="PNG path for share-vs-strength (residual form, dense mode)")
    args = ap.parse_args()
    searcher = Searcher(args.workspace, args.sae)
    texts = read_beir(args.beir).queries["text"].astype(str).tolist()[: args.queries]
    vectors = searcher.embed(texts)
    strengths = [float(s) for s in args.strengths.split(",")]
    print("| form | mode | strength | queries | raise: share before | after | queries improved | lower: share before "
          "| after | queries reduced | cos raise | cos lower |")
    print("|" + " --- |" * 12)
    curve = []
    for form in args.forms.split(","):
        for mode in args.modes.split(","):
            for st in strengths:
                r = steering_effect(searcher, vectors, form=form, mode=mode, strength=st)
                if form == "residual" and mode == "dense":
                    curve.append(r)
                print(f"| {form} | {mode} | {st:g} | {r['queries']} | {r['raise_before']:.3f} | {r['raise_after']:.3f} | "
                      f"{r['raise_improved']:.0%} | {r['lower_before']:.3f} | {r['lower_after']:.3f} | "
                      f"{r['lower_reduced']:.0%} | {r['cos_raise']:.3f} | {r['cos_lower']:.3f} |")
    if args.plot and curve:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["strength"] for r in curve]
        ax.plot(xs, [r["raise_after"] for r in curve], "o-", label="raised absent feature: after")
        ax.plot(xs, [r["raise_before"] for r in curve], "o--", label="raised absent feature: before")
        ax.plot(xs, [r["lower_after"] for r in curve], "s-", label="lowered strongest feature: after")
        ax.plot(xs, [r["lower_before"] for r in curve], "s--", label="lowered strongest feature: before")
        ax.set_xlabel("edit size (x the feature's largest document activation)")
        ax.set_ylabel("share of top-10 hits where the feature fires")
        ax.set_title(f"steering on {curve[0]['queries']} queries (residual form, dense search)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
