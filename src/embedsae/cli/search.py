"""Search commands: index, search, eval-retrieval."""

from __future__ import annotations

import argparse
import json
import sys

import embedsae

from ..errors import InputError
from .bars import progress_callback
from .options import add_settings_args, settings_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    from ..registry import INDEX_BACKENDS
    from ..search import ConceptSettings
    from ..search.milvus import MilvusSettings

    p = sub.add_parser("index", help="build the dense, concept (SAE latent) and BM25 indexes of a workspace")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--sae-from", metavar="WS", help="use an SAE trained in another workspace (same embedding model)")
    add_settings_args(p, ConceptSettings)
    p.add_argument("--no-bm25", action="store_true", help="skip the lexical BM25 index")
    p.add_argument("--no-dense", action="store_true",
                   help="leave dense search out: the concept and BM25 indexes stand in for it (hybrid = concept + BM25)")
    p.add_argument("--ann", action="store_true", help="also build an approximate dense index (needs embedsae[ann])")
    p.add_argument("--backend", default="embedded", choices=INDEX_BACKENDS.names(),
                   help="where the concept index and dense vectors go: files of the workspace (embedded, default) or "
                        "a Milvus collection (milvus; needs embedsae[milvus])")
    add_settings_args(p.add_argument_group("Milvus backend"), MilvusSettings, prefix="milvus")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search a workspace: dense, concept, hybrid or BM25, optionally steered")
    p.add_argument("workspace")
    p.add_argument("query", nargs="?", help="the query text (or give --query-vector)")
    p.add_argument("--query-vector", metavar="FILE.npy",
                   help="search with this vector (a .npy of one row of the workspace's dimension) instead of a text")
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
    from ..registry import RETRIEVERS
    from ..search import HybridSettings

    modes = RETRIEVERS.names()
    default = "concept" if all_modes else "dense"
    p.add_argument("--mode", default=default, choices=(*modes, "all") if all_modes else modes,
                   help=f"search mode (default {default})" + ("; all: every mode the workspace is indexed for"
                                                              if all_modes else ""))
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    add_settings_args(p, HybridSettings)
    p.add_argument("--ann", action="store_true", help="dense search through the approximate index")


def _hybrid(args: argparse.Namespace) -> dict:
    from ..search import HybridSettings

    return settings_kwargs(HybridSettings, args)


def cmd_index(args: argparse.Namespace) -> int:
    from ..search import ConceptSettings
    from ..search.milvus import MilvusSettings

    settings = ConceptSettings(**settings_kwargs(ConceptSettings, args))
    milvus = MilvusSettings(**settings_kwargs(MilvusSettings, args, prefix="milvus"))
    if args.backend != "milvus" and settings_kwargs(MilvusSettings, args, prefix="milvus"):
        raise InputError("the --milvus-* options apply to the Milvus backend only: add --backend milvus")
    project = embedsae.Project(args.workspace, None if args.sae_from else args.sae)
    summary = project.index(sae_from=args.sae_from, name=args.sae, settings=settings, lexical=not args.no_bm25,
                            dense=not args.no_dense, ann=args.ann, backend=args.backend, milvus=milvus,
                            progress=progress_callback(args.quiet))
    info = {**summary.details, "sae": summary.sae, "documents": summary.documents, "parts": summary.parts,
            "seconds": summary.seconds, "backend": summary.backend}
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"indexed {info['documents']} documents of {project.path} with SAE '{info['sae']}' in {info['seconds']}s")
    if info.get("backend") == "milvus":
        c = info["concept"]
        print(f"  milvus   collection '{c['collection']}' at {c['uri']}: {c['documents']:,} documents, concept terms"
              + (" and dense vectors" if c["dense"] else ""))
    elif "dense" in info:
        print(f"  dense    exact cosine over the workspace's vectors: {info['dense']['bytes']:,} bytes (float32)")
        if "ann" in info["dense"]:
            print(f"  ann      {info['dense']['ann']['bytes']:,} bytes (usearch)")
    if "concept" in info and info.get("backend") != "milvus":
        c = info["concept"]
        first = ", one-bit codes for a first pass" if c.get("first_pass") else ""
        print(f"  concept  {c['entries']:,} latent entries{first}, {c['stored_bytes']:,} bytes stored "
              f"({c['stored_vs_dense']:.1%} of dense), {c['memory_bytes']:,} in memory ({c['memory_vs_dense']:.1%})")
    if "bm25" in info:
        print(f"  bm25     {info['bm25']['bytes']:,} bytes")
    for name in info["parts"]:
        if name not in ("dense", "concept", "bm25") and isinstance(info.get(name), dict):
            print(f"  {name:<8} {json.dumps(info[name])}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.query_vector is None):
        raise InputError("give a query text or --query-vector FILE.npy (one of the two)")
    project = embedsae.open(args.workspace, args.sae)
    query = args.query if args.query is not None else _query_vector(args.query_vector, project.info().model["dim"])
    res = project.search(query, args.mode, args.top, steer=args.steer or None, steer_form=args.steer_form,
                         ann=args.ann, hybrid=_hybrid(args))
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
        print(f"{h.rank:>3}. [{h.score:.4f}] {h.id}  {h.title}")
        if h.concepts:
            print("       " + "; ".join(f"{c.label} {c.share:.0%}" for c in h.concepts))
    if not res.hits:
        print("no hits", file=sys.stderr)
    return 0


def _query_vector(path: str, dim: int):
    """The vector in a .npy file: shape (dim,) or (1, dim)."""
    import numpy as np

    try:
        vec = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"could not read a query vector from {path}: {exc}; save it with numpy.save") from exc
    if vec.size != dim or vec.ndim > 2 or not np.issubdtype(vec.dtype, np.number):
        raise InputError(f"--query-vector must hold one {dim}-d vector (the workspace's dimension); {path} holds "
                         f"shape {tuple(vec.shape)} of {vec.dtype}")
    return vec.astype(np.float32).reshape(-1)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..pipeline import markdown_table

    rows = embedsae.open(args.workspace, args.sae).evaluate_retrieval(
        args.beir, split=args.split, modes="all" if args.mode == "all" else [args.mode], ann=args.ann,
        hybrid=_hybrid(args), progress=progress_callback(args.quiet))
    if args.json:
        out = [r.to_dict() for r in rows]
        print(json.dumps(out[0] if len(out) == 1 else out))
        return 0
    import pandas as pd

    table = pd.DataFrame([{
        "mode": r.mode, "nDCG@10": r.ndcg_at_10, "MRR@10": r.mrr_at_10, "Recall@100": r.recall_at_100,
        "latency ms (median)": r.latency_ms["median"], "latency ms (p95)": r.latency_ms["p95"],
        "index bytes": f"{r.index_bytes:,}", "queries": r.queries,
    } for r in rows])
    print(markdown_table(table))
    for line in _eval_settings(rows, args):
        print(line)
    return 0


def _eval_settings(rows: list, args: argparse.Namespace) -> list[str]:
    """What the modes ran with, and the commands that compare the alternatives on this collection."""
    out = []
    for r in rows:
        h, c = r.details.get("hybrid"), r.details.get("concept")
        if r.mode == "hybrid" and h:
            weights = ",".join(f"{p}={w:g}" for p, w in h["parts"].items())
            how = f"RRF (k {h['rrf_k']:g})" if h["fusion"] == "rrf" else f"{h['fusion']}-normalised scores"
            out.append(f"hybrid: {weights}, weighted sum of {how} over each part's top {h['depth']}")
        if r.mode == "concept" and c:
            residual = c["scoring"] == "projection" and c.get("residual")
            out.append(f"concept: SAE '{c['sae']}', {c['doc_k']} latents per document, {c['scoring']} scoring"
                       + (" with residual sketches" if residual else "")
                       + (f", query expansion by {c['feedback_docs']} documents" if c["feedback_docs"] else "")
                       + (f", the best {c['candidates']:,} of a one-bit first pass scored" if c["first_pass"]
                          else ", every document scored"))
    if out and len(rows) > 1:
        ws, beir = args.workspace, args.beir
        out += ["", "To compare the alternatives on this collection:",
                f"  embedsae eval-retrieval {ws} --beir {beir} --mode hybrid --weights concept=1,bm25=1   (or "
                "dense=1,bm25=0.75; dense=1,concept=1,bm25=1)",
                f"  embedsae eval-retrieval {ws} --beir {beir} --mode hybrid --fusion rrf   (or minmax, dbsf, zscore)",
                f"  embedsae eval-retrieval {ws} --beir {beir} --mode hybrid --depth 100   (each part's top N fused)",
                f"  embedsae index {ws} --feedback-docs 5   (or --no-residual, --doc-k N), then eval-retrieval again"]
    return out
