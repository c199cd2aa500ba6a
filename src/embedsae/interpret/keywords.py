"""The offline labeller: short readable phrases from contrastive keyword statistics, ranked by embedding similarity.

1. A phrase vocabulary of 1–3-word n-grams that neither start nor end with a stop word and do not cross
   punctuation ("state of the art", "graph neural networks"), counted once per document.
2. Per feature, phrases are scored by how much more often they occur in its (shown) activating documents,
   weighted by activation, than in all documents: r · log(r / p) with r the weighted share of activating
   documents containing the phrase and p its share of all documents.
3. The best candidates, and pairs of them ("A and B"), are embedded with the workspace's model; the label is
   the 2–6-word option whose embedding best separates the shown activating documents from the shown negatives.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .scorers import auc_matrix

_SPLIT = re.compile(r"[.,;:!?()\[\]{}\"“”‘’<>|=+*/\\]+|\s-\s|\$[^$]*\$")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")

# Words that say nothing about a document's topic in scientific abstracts, on top of English stop words.
ACADEMIC_STOP_WORDS = frozenset("""
paper papers propose proposed proposes present presented presents show shows shown showed study studies studied
approach approaches method methods result results novel new based using use used uses work works also however
well can may might could would one two three first second via thus therefore furthermore moreover additionally
existing different various several many much within without among across respectively often significantly
demonstrate demonstrates demonstrated experiments experimental extensive state-of-the-art outperforms outperform
performance compared comparison effective effectively efficient efficiently problem problems task tasks
investigate investigated introduce introduced introduces provide provides provided obtain obtained achieve
achieves achieved including include includes given make makes made way ways use able recent recently
important key main large small high low good better best specific particular general specifically
approach-based previous prior et al i e etc eg ie whose whether either neither wide widely
""".split())

# Verbs and function words that make a phrase unreadable when they start or end it ("flow past", "occurs").
BOUNDARY_WORDS = frozenset("""
past occur occurs occurred simulate simulated compute computed computing yield yields lead leads allow allows
enable enables require requires required remain remains consider considered considers describe described describes
discuss discussed derive derived predict predicts predicted find finds found observe observed observes evaluate
evaluated evaluates improve improves improved apply applied applies exhibit exhibits reveal reveals indicate indicates
suggest suggests increase increases increased decrease decreases reduce reduces reduced perform performs performed
generate generates generated capture captures captured rest due like able aim aims aimed focus focuses focused
called known termed named defined define defines take takes taken give gives giving help helps need needs
needed try tries seek seeks explore explores explored analyze analyzes analyzed analyse analysed assess assessed
examine examined employ employs employed exploit exploits exploited leverage leverages leveraged utilize utilizes
utilized introduce develop develops developed design designed designs build builds built train trained trains
""".split())


def stop_words() -> frozenset[str]:
    """English stop words plus common words of scientific abstracts."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | ACADEMIC_STOP_WORDS


@dataclass
class PhraseVocabulary:
    """Documents x phrases (binary CSR), the phrases, their document frequencies and display forms."""

    matrix: object
    phrases: list[str]
    df: np.ndarray
    display: list[str]

    @property
    def n_docs(self) -> int:
        return self.matrix.shape[0]


def _phrases_of(text: str, stops: frozenset[str], case_counts: Counter, max_n: int) -> set[str]:
    found: set[str] = set()
    for chunk in _SPLIT.split(text):
        toks = _TOKEN.findall(chunk)
        if not toks:
            continue
        case_counts.update(toks)
        low = [t.lower() for t in toks]
        stop = [w in stops or len(w) < 2 or w in BOUNDARY_WORDS or w.endswith("ly") for w in low]
        weak_end = [s_ or w.endswith("ed") for s_, w in zip(stop, low)]
        n_tok = len(low)
        for i in range(n_tok):
            if stop[i]:
                continue
            for n in range(1, max_n + 1):
                j = i + n - 1
                if j >= n_tok:
                    break
                if not (weak_end[j] if n > 1 else stop[j]):
                    found.add(" ".join(low[i : j + 1]))
    return found


def build_vocabulary(
    texts: Sequence[str], *, max_n: int = 3, min_df: int = 3, max_df: float = 0.25, progress: bool = False
) -> PhraseVocabulary:
    """The phrase vocabulary of a corpus (see the module docstring)."""
    import scipy.sparse as sp
    from tqdm.auto import tqdm

    stops = stop_words()
    case_counts: Counter = Counter()
    doc_phrases = [_phrases_of(str(t), stops, case_counts, max_n) for t in tqdm(texts, disable=not progress,
                                                                             desc="phrases", unit="doc")]
    df_counter: Counter = Counter()
    for s in doc_phrases:
        df_counter.update(s)
    n_docs = len(texts)
    keep = sorted(p for p, c in df_counter.items() if c >= min_df and c <= max_df * n_docs)
    index = {p: i for i, p in enumerate(keep)}
    rows, cols = [], []
    for d, s in enumerate(doc_phrases):
        ids = [index[p] for p in s if p in index]
        rows.extend([d] * len(ids))
        cols.extend(ids)
    mat = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_docs, len(keep)))
    df = np.asarray([df_counter[p] for p in keep], dtype=np.float64)
    display = [_display(p, case_counts) for p in keep]
    return PhraseVocabulary(mat, keep, df, display)


def _display(phrase: str, case_counts: Counter) -> str:
    """Restore acronyms (LSTM, BERT) and names that are almost never written in lower case (Bayesian, Markov)."""
    words = []
    for w in phrase.split(" "):
        n_low, n_up, n_cap = case_counts.get(w, 0), case_counts.get(w.upper(), 0), case_counts.get(w.capitalize(), 0)
        if w.upper() != w and n_up > n_low + n_cap:
            words.append(w.upper())
        elif w.capitalize() != w and n_cap >= 3 and n_low <= 0.05 * n_cap:
            words.append(w.capitalize())
        else:
            words.append(w)
    return " ".join(words)


def contrastive_candidates(
    vocab: PhraseVocabulary,
    pos_docs: Sequence[np.ndarray],
    pos_weights: Sequence[np.ndarray],
    n_candidates: int = 8,
) -> list[list[int]]:
    """Per feature, the phrase ids with the highest contrastive score r·log(r/p) (see the module docstring)."""
    import scipy.sparse as sp

    n_f = len(pos_docs)
    rows = np.concatenate([np.full(len(d), i) for i, d in enumerate(pos_docs)]) if n_f else np.zeros(0, int)
    cols = np.concatenate(pos_docs) if n_f else np.zeros(0, int)
    w = np.concatenate([np.asarray(x, np.float64) / max(float(np.sum(x)), 1e-12) for x in pos_weights]) if n_f else []
    A = sp.csr_matrix((w, (rows, cols)), shape=(n_f, vocab.n_docs))
    Abin = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_f, vocab.n_docs))
    R = (A @ vocab.matrix).tocsr()  # weighted share of activating documents containing each phrase
    C = (Abin @ vocab.matrix).tocsr()  # count of activating documents containing each phrase
    p = vocab.df / vocab.n_docs
    out: list[list[int]] = []
    for i in range(n_f):
        lo, hi = R.indptr[i], R.indptr[i + 1]
        ids, r = R.indices[lo:hi], R.data[lo:hi]
        counts = C.data[C.indptr[i] : C.indptr[i + 1]]  # same sparsity pattern as R
        if len(ids) == 0:
            out.append([])
            continue
        n_pos = len(pos_docs[i])
        min_count = 2 if n_pos >= 4 else 1
        score = r * np.log(np.maximum(r, 1e-12) / p[ids])
        score[counts < min_count] = -np.inf
        score[score <= 0] = -np.inf
        k = min(n_candidates, int(np.isfinite(score).sum()))
        if k == 0:
            out.append([])
            continue
        top = np.argpartition(-score, k - 1)[:k]
        top = top[np.argsort(-score[top])]
        out.append([int(ids[t]) for t in top])
    return out


def _words(s: str) -> set[str]:
    """Crude stems of a phrase's words (so 'body' and 'bodies' count as the same word)."""
    return {w[:5] for w in s.lower().split()}


def phrase_centroids(vocab: PhraseVocabulary, doc_vectors: np.ndarray) -> np.ndarray:
    """Per phrase, the unit-norm mean of the vectors of the documents containing it (a cheap stand-in for the
    phrase's own embedding, used to rank candidates before embedding the few best)."""
    cent = np.asarray(vocab.matrix.T @ doc_vectors, dtype=np.float32)
    return cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)


def _options(cands: list[str], ranking: np.ndarray, n_pair: int = 4, n_single: int = 2, triples: bool = False) -> list[str]:
    """Label options of 2–6 words: the best multi-word candidates, pairs 'A and B' and a triple 'A, B and C'
    of the best candidates that share no word."""
    ranked = [cands[i] for i in np.argsort(-ranking, kind="stable")]
    opts = [c for c in ranked if 2 <= len(c.split()) <= 6][:n_single]
    chosen: list[str] = []
    for c in ranked[:n_pair + 2]:
        if all(not (_words(c) & _words(o)) for o in chosen):
            chosen.append(c)
    if len(chosen) >= 2 and len(" ".join(chosen[:2]).split()) <= 5:
        opts.append(f"{chosen[0]} and {chosen[1]}")
    if triples and len(chosen) >= 3 and len(" ".join(chosen[:3]).split()) <= 5:
        opts.append(f"{chosen[0]}, {chosen[1]} and {chosen[2]}")
    if len(chosen) >= 3 and len(f"{chosen[0]} {chosen[2]}".split()) <= 5:
        opts.append(f"{chosen[0]} and {chosen[2]}")
    if not opts and len(ranked) >= 2:
        opts.append(f"{ranked[0]} and {ranked[1]}")
    return list(dict.fromkeys(opts))


class PhraseEmbeddings:
    """Unit-norm embeddings of phrases, computed once per phrase."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed
        self._cache: dict[str, np.ndarray] = {}

    def add(self, phrases: Sequence[str]) -> None:
        new = sorted({p for p in phrases if p not in self._cache})
        if new:
            vecs = np.asarray(self._embed(new), dtype=np.float32)
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            self._cache.update(zip(new, vecs))

    def get(self, phrases: Sequence[str]) -> np.ndarray:
        self.add(phrases)
        return np.stack([self._cache[p] for p in phrases]) if phrases else np.zeros((0, 1), np.float32)

    def __len__(self) -> int:
        return len(self._cache)


def direction_candidates(
    vocab: PhraseVocabulary, centroids: np.ndarray, examples: Sequence, directions: np.ndarray, n_candidates: int = 8
) -> list[list[int]]:
    """Per feature, the phrases (occurring in at least two shown activating documents) whose document centroid
    points furthest along the feature's direction."""
    out = []
    for ex, w in zip(examples, directions):
        cnt = np.asarray(vocab.matrix[ex.shown_pos].sum(0)).ravel()
        ok = np.flatnonzero(cnt >= (2 if len(ex.shown_pos) >= 4 else 1))
        s = centroids[ok] @ w
        out.append([int(i) for i in ok[np.argsort(-s)[:n_candidates]]])
    return out


def label_batch(
    vocab: PhraseVocabulary,
    centroids: np.ndarray,
    examples: Sequence,
    doc_vectors: np.ndarray,
    phrase_emb: PhraseEmbeddings,
    directions: np.ndarray | None = None,
    *,
    n_candidates: int = 8,
    embed_all: bool = False,
) -> list[tuple[str | None, dict]]:
    """Labels for a batch of features (FeatureExamples), each with details (candidates and their ranking).

    Candidates come from the contrastive statistics and, when the features' `directions` in embedding space
    are given (the SAE's encoder rows), from the phrases whose document centroid points along them. They are
    ranked by their centroid (or, with `embed_all`, their real embedding: slower, kept for comparison in
    benchmarks/interpret_speed.py); the few best options are embedded, and the option whose embedding points
    furthest along the feature's direction (without directions: separates the shown activating documents from
    the shown negatives best) becomes the label.
    """
    cand_ids = contrastive_candidates(
        vocab, [e.shown_pos for e in examples], [e.shown_pos_act for e in examples], n_candidates=n_candidates
    )
    if directions is not None:
        extra = direction_candidates(vocab, centroids, examples, directions, n_candidates)
        cand_ids = [list(dict.fromkeys(a + b)) for a, b in zip(cand_ids, extra)]
    if embed_all:
        phrase_emb.add([vocab.display[i] for ids in cand_ids for i in ids])
    options: list[list[str]] = []
    cand_text: list[list[str]] = []
    for j, (ex, ids) in enumerate(zip(examples, cand_ids)):
        cands = [vocab.display[i] for i in ids]
        cand_text.append(cands)
        if not cands:
            options.append([])
            continue
        vecs = phrase_emb.get(cands) if embed_all else centroids[ids]
        options.append(_options(cands, _rank(vecs, doc_vectors, ex, None if directions is None else directions[j])))
    phrase_emb.add([o for os_ in options for o in os_])
    out: list[tuple[str | None, dict]] = []
    for j, (ex, cands, opts) in enumerate(zip(examples, cand_text, options)):
        if not opts:
            out.append((None, {"reason": "no phrase occurs in the activating documents more than elsewhere"}))
            continue
        vecs = phrase_emb.get(opts)
        rank = _rank(vecs, doc_vectors, ex, None if directions is None else directions[j])
        best = int(np.argmax(rank))
        out.append((opts[best], {"candidates": cands, "options": opts, "rank_score": round(float(rank[best]), 4)}))
    return out


def _rank(vecs: np.ndarray, doc_vectors: np.ndarray, ex, direction: np.ndarray | None) -> np.ndarray:
    if direction is not None:
        return vecs @ direction
    return _train_auc(vecs, doc_vectors, ex) + 0.25 * _closeness(vecs, doc_vectors, ex)


def _closeness(vecs: np.ndarray, doc_vectors: np.ndarray, ex) -> np.ndarray:
    pos = doc_vectors[ex.shown_pos]
    return (vecs @ pos.T).mean(1) if len(pos) else np.zeros(len(vecs))


def _train_auc(vecs: np.ndarray, doc_vectors: np.ndarray, ex) -> np.ndarray:
    pos, neg = ex.shown_pos, ex.shown_neg
    if len(pos) == 0 or len(neg) == 0:
        return np.full(len(vecs), 0.5)
    return auc_matrix(vecs @ doc_vectors[pos].T, vecs @ doc_vectors[neg].T)
