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
- ``arxiv-keywords`` (built by `build_keywords`): short keyword queries, as people type into a search box.
  Over the same corpus as arxiv-titles (and its workspace), 1,000 other papers (not among arxiv-titles'
  queries) whose title has at least 4 content words (lower-cased words of 3+ letters, not English stopwords)
  are drawn with seed 2028; the query is 3 of those words drawn with the same generator, in title order; the
  paper's abstract is the one relevant document. Three words of a title are ambiguous across 6,276 abstracts
  (and may not occur in the abstract at all), so the set is harder than arxiv-titles.
- ``cranfield-titles`` (built by `build_cranfield_titles`), a check held out of the choice of the defaults
  (built after they were fixed): known-item search in another domain. Cranfield's documents repeat their
  title at the start of their text; here the title is cut from every text (and the title field emptied), and
  each document whose title is unique and has at least 4 words becomes a query, judged against its own text.

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
KEYWORDS_SEED = 2028
KEYWORDS_QUERIES = 1000
KEYWORDS_WORDS = 3
WORKSPACES = {"arxiv-keywords": "arxiv-titles"}
"""Collections whose corpus is another's share its workspace (same embedded corpus, SAE and indexes)."""
HELD_OUT = ("cranfield-titles",)
"""Collections held out of the choice of the defaults (checked, never chosen on)."""
_WORD = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[$])")


def collections() -> dict[str, Path]:
    """Name -> BEIR folder of every development collection (building arxiv-sentences when missing)."""
    out = {"cranfield": SHARED / "cranfield", "arxiv-titles": SHARED / "arxiv-titles"}
    for name, path in out.items():
        if not (path / "corpus.jsonl").is_file():
            raise SystemExit(f"{name}: no BEIR folder at {path} (the shared data folder must sit beside the project)")
    out["arxiv-sentences"] = build_sentences(SHARED / "arxiv-titles", CACHE / "collections" / "arxiv-sentences")
    out["arxiv-keywords"] = build_keywords(SHARED, CACHE / "collections" / "arxiv-keywords")
    out["cranfield-titles"] = build_cranfield_titles(SHARED / "cranfield", CACHE / "collections" / "cranfield-titles")
    return out


def sentences(text: str) -> list[str]:
    """The sentences of an abstract (split after . ! ? before a capital, a bracket or a formula)."""
    return [s.strip() for s in _SPLIT.split(" ".join(text.split())) if s.strip()]


def _built(out: Path, stamp: str) -> bool:
    """Whether `out` holds a BEIR folder written with this stamp (its seed and sizes)."""
    seed = out / "seed.txt"
    return (out / "qrels" / "test.tsv").is_file() and seed.is_file() and seed.read_text().strip() == stamp


def _write_beir(out: Path, corpus: str, queries: list[dict], qrels: list[tuple[str, str]], stamp: str) -> Path:
    """Write a BEIR folder (corpus.jsonl text, queries, qrels of relevance 1, the stamp) beside `out`, then move
    each file into place."""
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp / "corpus.jsonl").write_text(corpus)
    (tmp / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (tmp / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    (tmp / "seed.txt").write_text(stamp + "\n")
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "seed.txt"):
        os.replace(tmp / f, out / f)
    return out


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(d) + "\n" for d in rows)


def build_sentences(source: Path, out: Path, *, seed: int = SENTENCES_SEED, n: int = SENTENCES_QUERIES) -> Path:
    """Write the arxiv-sentences BEIR folder from arxiv-titles' corpus (deterministic for a seed); return it."""
    if _built(out, f"{seed} {n}"):
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
    return _write_beir(out, _jsonl(docs), queries, qrels, f"{seed} {n}")


def content_words(title: str) -> list[str]:
    """The distinct content words of a title in order: lower case, 3+ letters, not an English stopword."""
    from bm25s.stopwords import STOPWORDS_EN

    stop = set(STOPWORDS_EN)
    return list(dict.fromkeys(w for w in _WORD.findall(title.lower()) if len(w) >= 3 and w not in stop))


def build_keywords(shared: Path, out: Path, *, seed: int = KEYWORDS_SEED, n: int = KEYWORDS_QUERIES,
                   words: int = KEYWORDS_WORDS) -> Path:
    """Write the arxiv-keywords BEIR folder (queries and qrels over arxiv-titles' corpus) for a seed; return it."""
    stamp = f"{seed} {n} {words}"
    if _built(out, stamp):
        return out
    source = shared / "arxiv-titles"
    corpus = [json.loads(line)["_id"] for line in (source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    titles = {r["id"]: r["title"] for r in map(json.loads, (shared / "arxiv" / "abstracts.jsonl").read_text().splitlines())}
    taken = {line.split("\t")[1] for line in (source / "qrels" / "test.tsv").read_text().splitlines()[1:] if line}
    eligible = [d for d in corpus if d not in taken and len(content_words(titles.get(d, ""))) > words]
    rng = np.random.default_rng(seed)
    queries, qrels = [], []
    for j in sorted(rng.choice(len(eligible), size=n, replace=False).tolist()):
        doc = eligible[j]
        cw = content_words(titles[doc])
        keep = sorted(rng.choice(len(cw), size=words, replace=False).tolist())
        queries.append({"_id": f"k{doc}", "text": " ".join(cw[i] for i in keep)})
        qrels.append((f"k{doc}", doc))
    return _write_beir(out, (source / "corpus.jsonl").read_text(), queries, qrels, stamp)


def build_cranfield_titles(source: Path, out: Path) -> Path:
    """Write the cranfield-titles BEIR folder (titles cut from the texts; unique titles of 4+ words as queries)."""
    if _built(out, "all"):
        return out
    docs = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    count: dict[str, int] = {}
    for d in docs:
        count[d["title"].strip()] = count.get(d["title"].strip(), 0) + 1
    queries, qrels = [], []
    for d in docs:
        title = d["title"].strip()
        if d["text"].startswith(title):
            d["text"] = d["text"][len(title):].strip()
        d["title"] = ""
        if count[title] == 1 and len(title.rstrip(" .").split()) >= 4 and len(d["text"].split()) >= 20:
            queries.append({"_id": f"t{d['_id']}", "text": title.rstrip(" .")})
            qrels.append((f"t{d['_id']}", d["_id"]))
    return _write_beir(out, _jsonl(docs), queries, qrels, "all")


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
