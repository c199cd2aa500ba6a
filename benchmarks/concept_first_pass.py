"""The concept index's first pass on a real workspace: how often the one-bit candidates hold the exhaustive top 10,
and what each costs, for several candidate counts.

Loads the workspace's concept index (any size), builds the first pass's codes from it (as `index` does above
`exact_docs` documents), embeds the queries of a BEIR folder with the workspace's model, and for each query
compares the top 10 of the first pass (candidates 256 ... 4,096) with the exhaustive top 10 (every document
scored by the same compiled loop), in order. Also prints, per query, how many candidates the exhaustive top 10
needed (the rank of its worst document among the first pass's estimates) and the median milliseconds of each
search on one BLAS thread, with the exhaustive search as the baseline of the same run.

    python benchmarks/concept_first_pass.py run-1004160/ws --beir ../shared/data/arxiv-titles --queries 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from embedsae.data.readers import read_beir
from embedsae.search.concept import ConceptIndex, encode_query, sae_arrays
from embedsae.search.index import concept_path
from embedsae.threads import blas_single_thread
from embedsae.workspace import Workspace

COUNTS = (256, 512, 1024, 2048, 4096)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--beir", required=True, help="a BEIR folder whose queries.jsonl gives the queries")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--sae", default=None)
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    sae = ws.load_sae(name)
    arrays = sae_arrays(sae)
    stored = ConceptIndex.load(concept_path(ws, name))
    every = ConceptIndex(stored.fwd_indices, None, stored.n_latents, stored.doc_norms,
                         replace(stored.settings, exact_docs=stored.n_docs), name,
                         quantized=(stored.fwd_codes, stored.doc_scale), residual=stored.residual)
    t = time.perf_counter()
    first = ConceptIndex.from_codes(stored.fwd_indices, every.fwd_values, stored.n_latents, stored.doc_norms,
                                    replace(stored.settings, exact_docs=0), name, decoder=arrays,
                                    residual=stored.residual)
    build = time.perf_counter() - t
    texts = read_beir(args.beir).queries["text"].astype(str).tolist()[: args.queries]
    vectors = ws.embedder().embed(texts)
    print(f"{every.n_docs:,} documents, {len(texts)} queries of {args.beir}; first-pass codes built in {build:.1f} s "
          f"({first.prefilter.nbytes / every.n_docs:.0f} B/doc)")
    with blas_single_thread():
        queries = [encode_query(sae, q, every.settings, arrays) for q in vectors]
        base_ms, truth = timed(every, queries)
        need = []
        for q, top in zip(vectors, truth):
            est = first.prefilter.estimates(q)
            need.append(int((est >= est[top].min()).sum()))
        print(f"{'candidates':>10} {'ms':>7} {'vs exhaustive':>13} {'same top-10':>11}")
        print(f"{'all':>10} {base_ms:>7.2f} {1.0:>13.3f} {1.0:>11.1%}")
        for n in COUNTS:
            ix = ConceptIndex(first.fwd_indices, None, first.n_latents, first.doc_norms,
                              replace(first.settings, candidates=n), name, first.prefilter,
                              quantized=(first.fwd_codes, first.doc_scale), residual=first.residual)
            ms, got = timed(ix, queries)
            same = np.mean([np.array_equal(a, b) for a, b in zip(got, truth)])
            print(f"{n:>10,} {ms:>7.2f} {ms / base_ms:>13.3f} {same:>11.1%}")
    print(f"candidates the exhaustive top 10 needed: median {np.median(need):.0f}, 90th percentile "
          f"{np.percentile(need, 90):.0f}, 99th {np.percentile(need, 99):.0f}, max {max(need)}")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[:3]}")


def timed(index: ConceptIndex, queries: list) -> tuple[float, list[np.ndarray]]:
    """Median milliseconds per search and the top 10 of each query."""
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(index.search(q, 10)[0])
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), out


if __name__ == "__main__":
    main()
