"""The development collections of the retrieval matrix, and an embedder that caches vectors per text.

Three BEIR folders, two read in place from ../shared/data and one built here from them:

- ``cranfield``: the Cranfield 1400 collection (225 natural-language questions, graded judgements, several
  relevant documents per query).
- ``arxiv-titles``: 1,000 arXiv titles, each judged against its own abstract among the 6,276 (known item).
- ``arxiv-sentences`` (built by `build_sentences`): claim-style queries. From the corpus of arxiv-titles, 1,000
  abstracts of at least 4 sentences are drawn with seed 2027; from each, one sentence of 8 to 40 words (never
  the first, which tends to restate the title) is drawn with the same generator, taken out of the abstract and
  made the query; the abstract without it is the one relevant document (an inverse cloze task). The other
  5,276 abstracts stay as they are. The query's words are not in its document by construction, so neither
  lexical nor dense search finds it by copying.

Vectors are cached per text under /work/cache/retrieval/texts (one .npz per batch of new texts), so a
collection that shares most of its texts with another (arxiv-sentences with arxiv-titles) embeds only the
texts that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("EMBEDSAE_RETRIEVAL_CACHE", "/work/cache/retrieval"))
SENTENCES_SEED = 2027
SENTENCES_QUERIES = 1000
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[$])")


def collections() -> dict[str, Path]:
    """Name -> BEIR folder of every development collection (building arxiv-sentences when missing)."""
    out = {"cranfield": SHARED / "cranfield", "arxiv-titles": SHARED / "arxiv-titles"}
    for name, path in out.items():
        if not (path / "corpus.jsonl").is_file():
            raise SystemExit(f"{name}: no BEIR folder at {path} (the shared data folder must sit beside the project)")
    out["arxiv-sentences"] = build_sentences(SHARED / "arxiv-titles", CACHE / "collections" / "arxiv-sentences")
    return out


def sentences(text: str) -> list[str]:
    """The sentences of an abstract (split after . ! ? before a capital, a bracket or a formula)."""
    return [s.strip() for s in _SPLIT.split(" ".join(text.split())) if s.strip()]


def build_sentences(source: Path, out: Path, *, seed: int = SENTENCES_SEED, n: int = SENTENCES_QUERIES) -> Path:
    """Write the arxiv-sentences BEIR folder from arxiv-titles' corpus (deterministic for a seed); return it."""
    if (out / "qrels" / "test.tsv").is_file() and (out / "seed.txt").is_file() and \
            (out / "seed.txt").read_text().strip() == f"{seed} {n}":
        return out
    docs = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    eligible = [i for i, d in enumerate(docs) if len(sentences(d["text"])) >= 4]
    chosen = sorted(rng.choice(len(eligible), size=n, replace=False).tolist())
    queries, qrels = [], []
    for j in chosen:
        doc = docs[eligible[j]]
        sents = sentences(doc["text"])
        fit = [i for i in range(1, len(sents)) if 8 <= len(sents[i].split()) <= 40]
        if not fit:
            continue
        pick = fit[int(rng.integers(len(fit)))]
        queries.append({"_id": f"s{doc['_id']}", "text": sents[pick]})
        qrels.append((f"s{doc['_id']}", doc["_id"]))
        doc["text"] = " ".join(sents[:pick] + sents[pick + 1 :])
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (tmp / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    (tmp / "seed.txt").write_text(f"{seed} {n}\n")
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "seed.txt"):
        os.replace(tmp / f, out / f)
    return out


class TextCache:
    """Wraps an embedder; keeps every vector it made under `folder`, keyed by a hash of the model and the text."""

    def __init__(self, inner, folder: Path = CACHE / "texts") -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.folder = folder / hashlib.sha256(self.model_id.encode()).hexdigest()[:12]
        self.known: dict[str, np.ndarray] = {}
        for f in sorted(self.folder.glob("*.npz")):
            with np.load(f) as z:
                self.known.update(zip(z["keys"].tolist(), z["vectors"]))
        self.embedded = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def embed(self, texts: Sequence[str], *, progress=None) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.known))
        if missing:
            where = {k: t for k, t in zip(keys, texts)}
            vectors = np.asarray(self.inner.embed([where[k] for k in missing], progress=progress), np.float32)
            self.folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256("".join(missing).encode()).hexdigest()[:16]
            tmp = self.folder / f".{name}.npz"
            np.savez(tmp, keys=np.asarray(missing), vectors=vectors)
            os.replace(tmp, self.folder / f"{name}.npz")
            self.known.update(zip(missing, vectors))
            self.embedded += len(missing)
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.known[k] for k in keys]).astype(np.float32)


def embedder() -> TextCache:
    """The packaged all-MiniLM-L6-v2 (torch backend, as the tests' cached vectors) behind the text cache."""
    from embedsae.data.embedders import SentenceTransformerEmbedder

    return TextCache(SentenceTransformerEmbedder(backend="torch"))


if __name__ == "__main__":  # build the collections and embed every corpus and query set once
    import sys

    from embedsae.data.readers import read_beir

    emb = embedder()
    for name, path in collections().items():
        data = read_beir(path)
        for what, texts in (("queries", data.queries["text"].astype(str).tolist()),
                            ("corpus", data.corpus["text"].astype(str).tolist())):
            before = emb.embedded
            emb.embed(texts)
            print(f"{name} {what}: {len(texts)} texts, {emb.embedded - before} embedded now", file=sys.stderr)
