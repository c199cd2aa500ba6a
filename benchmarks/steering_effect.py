"""The steering figures: on N real queries, raising an absent feature should raise the share of top-10
hits where it fires; lowering (removing) the query's strongest feature should lower it.

    python benchmarks/steering_effect.py WS --beir ../shared/data/cranfield [--queries 50]
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
    ap.add_argument("--strength", type=float, default=3.0, help="edit size in units of the feature's largest "
                    "activation over the documents (default 3)")
    ap.add_argument("--forms", default="residual,decode")
    ap.add_argument("--modes", default="dense,concept")
    args = ap.parse_args()
    searcher = Searcher(args.workspace, args.sae)
    texts = read_beir(args.beir).queries["text"].astype(str).tolist()[: args.queries]
    vectors = searcher.embed(texts)
    print(f"strength {args.strength}")
    print("| form | mode | queries | raise: share before | after | queries improved | lower: share before | after "
          "| queries reduced | cos raise | cos lower |")
    print("|" + " --- |" * 11)
    for form in args.forms.split(","):
        for mode in args.modes.split(","):
            r = steering_effect(searcher, vectors, form=form, mode=mode, strength=args.strength)
            print(f"| {form} | {mode} | {r['queries']} | {r['raise_before']:.3f} | {r['raise_after']:.3f} | "
                  f"{r['raise_improved']:.0%} | {r['lower_before']:.3f} | {r['lower_after']:.3f} | "
                  f"{r['lower_reduced']:.0%} | {r['cos_raise']:.3f} | {r['cos_lower']:.3f} |")


if __name__ == "__main__":
    main()
