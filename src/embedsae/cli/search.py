"""Search commands: index, search, eval-retrieval."""

from __future__ import annotations

import argparse
import json
import sys

from .bars import progress_callback

MODES = ("dense", "concept", "hybrid", "bm25")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build the dense, concept (SAE latent) and BM25 indexes of a workspace")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--sae-from", metavar="WS", help="use an SAE trained in another workspace (same embedding model)")
    p.add_argument("--doc-k", type=int, default=32, help="latents each document keeps (default 32)")
    p.add_argument("--query-k", type=int, default=64, help="latents whose postings a query reads (default 64)")
    p.add_argument("--scoring", default="projection", choices=["projection", "dot", "bm25"],
                   help="concept scoring (default projection)")
    p.add_argument("--rerank", type=int, default=200, help="projection scoring: candidates rescored exactly (default 200)")
    p.add_argument("--k1", type=float, default=1.2, help="BM25-over-latents k1 (default 1.2)")
    p.add_argument("--b", type=float, default=0.75, help="BM25-over-latents b (default 0.75)")
    p.add_argument("--no-bm25", action="store_true", help="skip the lexical BM25 index")
    p.add_argument("--ann", action="store_true", help="also build an approximate dense index (needs embedsae[ann])")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search a workspace: dense, concept, hybrid or BM25, optionally steered")
    p.add_argument("workspace")
    p.add_argument("query")
    _search_args(p)
    p.add_argument("--top", type=int, default=10, help="hits to show (default 10)")
    p.add_argument("--steer", action="append", default=[], metavar="SPEC",
                   help='edit a feature: ID=VALUE or "label"=VALUE sets it (0 removes), =+X raises, =-X lowers; repeatable')
    p.add_argument("--steer-form", default="residual", choices=["residual", "decode"],
                   help="residual: q + W_dec(z'-z) (default); decode: the decoded edited code")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval-retrieval", help="nDCG@10, MRR@10, Recall@100 on a BEIR benchmark of the workspace's corpus")
    p.add_argument("workspace")
    p.add_argument("--beir", required=True, metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    _search_args(p, all_modes=True)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --mode all)")
    p.set_defaults(func=cmd_eval)


def _search_args(p: argparse.ArgumentParser, all_modes: bool = False) -> None:
    choices = (*MODES, "all") if all_modes else MODES
    p.add_argument("--mode", default="concept" if all_modes else "dense", choices=choices,
                   help=f"search mode (default {'concept' if all_modes else 'dense'})")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--fusion", default="rrf", choices=["rrf", "score"], help="hybrid fusion (default rrf)")
    p.add_argument("--weights", help="hybrid weights, e.g. dense=1,concept=1,bm25=1 (default all 1)")
    p.add_argument("--ann", action="store_true", help="dense search through the approximate index")


def _searcher(args: argparse.Namespace):
    from ..search import Searcher

    return Searcher(args.workspace, args.sae, ann=args.ann, fusion=args.fusion, weights=args.weights)


def cmd_index(args: argparse.Namespace) -> int:
    from ..search import ConceptSettings, adopt_sae, build_index
    from ..workspace import Workspace

    settings = ConceptSettings(doc_k=args.doc_k, query_k=args.query_k, scoring=args.scoring, rerank=args.rerank,
                               k1=args.k1, b=args.b)
    ws = Workspace.open(args.workspace)
    sae = args.sae
    if args.sae_from:
        sae = adopt_sae(ws, Workspace.open(args.sae_from), args.sae)
    info = build_index(ws, sae, settings=settings, lexical=not args.no_bm25, ann=args.ann, progress=progress_callback(args.quiet))
    if args.json:
        print(json.dumps(info))
        return 0
    c = info["concept"]
    print(f"indexed {info['documents']} documents of {ws.path} with SAE '{info['sae']}' in {info['seconds']}s")
    print(f"  dense    exact cosine over embeddings.npy: {info['dense']['bytes']:,} bytes (float32)")
    print(f"  concept  {c['postings']:,} postings, {c['stored_bytes']:,} bytes stored "
          f"({c['stored_vs_dense']:.1%} of dense), {c['memory_bytes']:,} in memory ({c['memory_vs_dense']:.1%})")
    if "bm25" in info:
        print(f"  bm25     {info['bm25']['bytes']:,} bytes")
    if "ann" in info:
        print(f"  ann      {info['ann']['bytes']:,} bytes (usearch)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    searcher = _searcher(args)
    res = searcher.search(args.query, args.mode, args.top, steer=args.steer or None, steer_form=args.steer_form)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    if res.steering:
        print(f"steered ({res.steering['form']}): cosine original vs steered = {res.steering['cosine_original_vs_steered']:.4f}")
        for c in res.steering["changes"]:
            how = "" if c["matched_by"] == "id" else f"  [{c['spec']} -> matched by {c['matched_by']}" + (
                f", score {c['match_score']}]" if c["match_score"] is not None else "]")
            scale = f"  (largest in documents {c['doc_max']:.4f}, fires in {c['doc_share']:.1%})" if "doc_max" in c else ""
            print(f"  feature {c['feature']} ({c['label']}): {c['before']:.4f} -> {c['after']:.4f}{scale}{how}")
        print()
    for h in res.hits:
        print(f"{h['rank']:>3}. [{h['score']:.4f}] {h['id']}  {h['title']}")
        if h.get("concepts"):
            print("       " + "; ".join(f"{c['label']} {c['share']:.0%}" for c in h["concepts"]))
    if not res.hits:
        print("no hits", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..pipeline import markdown_table
    from ..search.evaluate import evaluate_retrieval

    modes = list(MODES) if args.mode == "all" else [args.mode]
    searcher = _searcher(args)
    rows = evaluate_retrieval(args.workspace, args.beir, split=args.split, modes=modes, searcher=searcher,
                              progress=progress_callback(args.quiet))
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows))
        return 0
    import pandas as pd

    table = pd.DataFrame([{
        "mode": r["mode"], "nDCG@10": r["ndcg@10"], "MRR@10": r["mrr@10"], "Recall@100": r["recall@100"],
        "latency ms (median)": r["latency_ms"]["median"], "latency ms (p95)": r["latency_ms"]["p95"],
        "index bytes": f"{r['index_bytes']:,}", "queries": r["queries"],
    } for r in rows])
    print(markdown_table(table))
    return 0
