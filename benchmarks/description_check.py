"""Reader-facing check of the offline labeller's descriptions: are their parts true of the documents, specific,
and free of text-extraction junk? (The embedding AUC cannot tell: it rewards words close to the documents in the
embedding space, whether or not the documents hold them.)

    python benchmarks/description_check.py WS_COPY [--sae NAME] [--top 10] [--generic 0.02] [--show 10] [--json F]

WS_COPY is an interpreted workspace (e.g. the copy `label_quality.py --work DIR` leaves in DIR/ws). For every
labelled feature, the parts of its description besides the name (the labeller's stored `description_parts`)
are checked against the feature's `--top` strongest activating documents (title and text):

- grounded: the part occurs in at least 2 of them (each of its content words, plural "s" aside);
- in one only: the part occurs in exactly one of them (a word from one odd document);
- generic: the part occurs in more than `--generic` of the corpus's documents ("feature", "reason", "century");
- junk: a description holding a word glued from two by text extraction ("usingDeep": lower-case letters, then a
  capital and lower-case letters, both halves words of the corpus).

Prints one table row (shares) and, with `--show`, K random features (seed 7) with their descriptions.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"[^\W\d_][^\W_]*(?:[-'][^\W_]+)*")
_GLUED = re.compile(r"\b([a-z]{2,})([A-Z][a-z]{2,})\b")


def stem(w: str) -> str:
    w = w.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def content_words(text: str, stops: frozenset[str]) -> set[str]:
    return {stem(t) for t in _TOKEN.findall(text) if t.lower() not in stops}


def glued(text: str, known: set[str]) -> list[str]:
    """Words of `text` glued from two known words by text extraction ("usingDeep")."""
    return [m.group(0) for m in _GLUED.finditer(text) if m.group(1) in known and stem(m.group(2)) in known]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("--sae")
    ap.add_argument("--top", type=int, default=10, help="strongest activating documents a part is looked for in")
    ap.add_argument("--generic", type=float, default=0.02, help="corpus document share above which a part is generic")
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()

    from embedsae.interpret.phrases import stop_words
    from embedsae.interpret.store import FeatureStore, db_path
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    store = FeatureStore.read(db_path(ws.sae_dir(name)))
    if store is None:
        raise SystemExit(f"{ws.path}: SAE '{name}' is not interpreted (run embedsae interpret first)")
    with store:
        table = store.table()
        done = table[(table["status"] == "done") & table["label"].notna()].set_index("id")
        details = store.details(done.index.astype(int).tolist(), "keywords")
    stops = stop_words() | frozenset("of in for with on to from by under via over at as between a an the".split())
    corpus = ws.corpus
    titles = corpus["title"].astype(str).tolist() if "title" in corpus.columns else [""] * len(corpus)
    texts = corpus["text"].astype(str).tolist()
    words = [content_words(f"{t} {x}", stops) for t, x in zip(titles, texts)]
    known = {w for ws_ in words for w in ws_} | stops
    index: dict[str, set[int]] = {}
    for d, ws_ in enumerate(words):
        for w in ws_:
            index.setdefault(w, set()).add(d)
    n_docs = len(words)
    csc = workspace_codes(ws, name).to_csr().tocsc()

    def docs_with(part: str) -> set[int]:
        ws_ = content_words(part, stops)
        if not ws_:
            return set()
        sets = sorted((index.get(w, set()) for w in ws_), key=len)
        out = set(sets[0])
        for s in sets[1:]:
            out &= s
        return out

    n_parts = grounded = single = generic = 0
    junk = n_desc = 0
    rows = {}
    for f, r in done.iterrows():
        f = int(f)
        desc = r["description"] if isinstance(r["description"], str) else ""
        parts = (details.get(f) or {}).get("description_parts") or []
        lo, hi = csc.indptr[f], csc.indptr[f + 1]
        top = set(csc.indices[lo:hi][np.argsort(-csc.data[lo:hi], kind="stable")[: args.top]].tolist())
        n_desc += 1
        junk += bool(glued(desc, known))
        flags = []
        for p in parts:
            if p.lower() not in desc.lower()[len(r["label"]):]:  # left out (too long, shares the name's words)
                continue
            where = docs_with(p)
            k = len(where & top)
            n_parts += 1
            grounded += k >= 2
            single += k == 1
            gen = len(where) > args.generic * n_docs
            generic += gen
            flags.append((p, k, round(len(where) / n_docs, 4)))
        rows[f] = (r["label"], desc, flags)
    out = {"features": n_desc, "parts": n_parts, "parts_per_description": n_parts / max(n_desc, 1),
           "grounded": grounded / max(n_parts, 1), "in_one_top_doc": single / max(n_parts, 1),
           "generic": generic / max(n_parts, 1), "junk_descriptions": junk / max(n_desc, 1),
           "set_apart": float(np.mean([" set apart by " in (x[1] or "") for x in rows.values()])) if rows else 0.0}
    print(f"{ws.path}: {n_desc} descriptions, {n_parts} parts ({out['parts_per_description']:.2f} each), "
          f"top {args.top} documents, generic above {args.generic:.1%} of {n_docs}")
    print("| parts in >= 2 top docs | in 1 only | generic | descriptions with junk | with 'set apart by' |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {out['grounded']:.1%} | {out['in_one_top_doc']:.1%} | {out['generic']:.1%} | "
          f"{out['junk_descriptions']:.2%} ({junk}) | {out['set_apart']:.1%} |")
    if args.show:
        pick = np.sort(np.random.default_rng(7).choice(sorted(rows), min(args.show, len(rows)), replace=False))
        for f in pick:
            label, desc, flags = rows[int(f)]
            print(f"{f} | {desc} | " + "; ".join(f"{p} ({k} top, df {d:.2%})" for p, k, d in flags))
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "descriptions": {int(f): r[1] for f, r in rows.items()}},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
