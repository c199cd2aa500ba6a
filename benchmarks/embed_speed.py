"""Embedding speed per backend (torch, ONNX Runtime, OpenVINO) with all-MiniLM-L6-v2 on CPU, and agreement with torch.

    python benchmarks/embed_speed.py [--corpus ../shared/data/arxiv/abstracts.jsonl] [--rows 256] [--rounds 3]
                                     [--all] [--reference TORCH_VECTORS.npy] [--cranfield ../shared/data/cranfield]
                                     [--int8]

Speed: `--rows` documents of the corpus (spread over the file) embedded by each backend in turn, `--rounds`
times, alternated; medians and the ratio to torch. Agreement: the minimum cosine to torch's vectors over those
rows, or with `--all` over every document of the corpus (`--reference`: torch's vectors of the whole corpus,
e.g. a workspace's embeddings.npy, instead of embedding it again). `--cranfield`: dense retrieval nDCG@10
on that BEIR folder with each backend's document and query vectors. `--int8`: also ONNX Runtime on the exported
model with int8 dynamic quantisation of its MatMuls (per channel, 7-bit range, the variant that kept the most
accuracy on CPUs without VNNI), which embedsae does not offer: it shows what quantisation would buy and cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ndcg_at_10(emb, folder: str) -> float:
    from ranx import Qrels, Run, evaluate

    from embedsae.data.readers import read_beir, read_corpus

    corpus = read_corpus(folder)
    data = read_beir(folder)
    qrels = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in data.split("test").items()}
    queries = data.queries[data.queries["id"].astype(str).isin({q for q, d in qrels.items() if d})]
    docs = emb.embed(corpus["text"].tolist())
    qv = emb.embed(queries["text"].astype(str).tolist())
    scores = qv @ docs.T
    top = np.argsort(-scores, axis=1)[:, :10]
    ids = corpus["id"].astype(str).tolist()
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(queries["id"].astype(str))}
    return float(evaluate(Qrels({q: d for q, d in qrels.items() if d}), Run(run), "ndcg@10", make_comparable=True))


def int8_embedder(onnx_embedder):
    """A copy of an ONNX-backend embedder whose session runs the int8-quantised export."""
    import copy
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(tempfile.mkdtemp()) / "model-int8.onnx"
    quantize_dynamic(onnx_embedder._runner.path, out, op_types_to_quantize=["MatMul"], per_channel=True,
                     reduce_range=True, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    emb = copy.copy(onnx_embedder)
    emb._runner = copy.copy(onnx_embedder._runner)
    emb._runner._forward = lambda feed: session.run(None, feed)[0]
    return emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "arxiv" / "abstracts.jsonl"))
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "openvino"])
    ap.add_argument("--all", action="store_true", help="minimum cosine over every document of the corpus")
    ap.add_argument("--reference", help="torch's vectors of the whole corpus (.npy), for --all")
    ap.add_argument("--cranfield", help="BEIR folder for dense nDCG@10 per backend")
    ap.add_argument("--int8", action="store_true", help="add int8-quantised ONNX Runtime (needs the onnx backend)")
    args = ap.parse_args()

    from embedsae.data.backends import backend_available
    from embedsae.data.embedders import SentenceTransformerEmbedder
    from embedsae.data.readers import read_corpus

    texts = read_corpus(args.corpus)["text"].tolist()
    sample = texts[:: max(1, len(texts) // args.rows)][: args.rows]
    names = [b for b in args.backends if backend_available(b)]
    embedders = {}
    for b in names:
        t0 = time.perf_counter()
        embedders[b] = SentenceTransformerEmbedder(backend=b)
        print(f"{b}: loaded in {time.perf_counter() - t0:.1f} s (ONNX export included the first time)")
    if args.int8 and "onnx" in embedders:
        embedders["onnx-int8"] = int8_embedder(embedders["onnx"])
        names.append("onnx-int8")
    times: dict[str, list[float]] = {b: [] for b in names}
    vecs = {}
    for _ in range(args.rounds):
        for b in names:
            t0 = time.perf_counter()
            vecs[b] = embedders[b].embed(sample)
            times[b].append(time.perf_counter() - t0)
    rate = {b: len(sample) / statistics.median(t) for b, t in times.items()}
    print(f"{len(sample)} documents of {args.corpus}, medians of {args.rounds} alternated rounds:")
    for b in names:
        line = f"  {b:9s} {rate[b]:6.1f} documents/s ({rate[b] / rate['torch']:.2f}x torch)" if "torch" in rate else f"  {b} {rate[b]:.1f}/s"
        if b != "torch" and "torch" in vecs:
            line += f", min cosine to torch {float((vecs[b] * vecs['torch']).sum(1).min()):.6f} over these {len(sample)}"
        print(line)
    if args.all:
        ref = np.load(args.reference) if args.reference else embedders["torch"].embed(texts)
        for b in names:
            if b != "torch":
                got = embedders[b].embed(texts)
                print(f"  {b}: min cosine to torch over all {len(texts)} documents {float((got * ref).sum(1).min()):.6f}")
    if args.cranfield:
        for b in names:
            print(f"  {b}: Cranfield dense nDCG@10 {ndcg_at_10(embedders[b], args.cranfield):.4f}")


if __name__ == "__main__":
    main()
