"""The offline labeller: the 2–6-word phrase, or list of two or three phrases ("A and B", "A, B and C"), whose
embedding best tells where the feature fires.

The scorer (`scorers.embedding_scores`) ranks documents by the cosine between their embedding x and the label's
embedding v, so a label is good when v·x is high on the feature's documents and low elsewhere. Everything common
to all documents, or to all phrases, does not help; what does is the direction in which the feature's documents
differ from the rest. The SAE gives that direction: the feature fires where its encoder row w has a large
projection w·x. If document vectors were Gaussian with covariance Σ (about the corpus mean μ), documents with a
large w·x would sit at μ + c·Σw, and a label vector v would separate them from the rest with a d' proportional
to v·Σw / sqrt(vᵀΣv): the correlation, over the corpus, between the label's score and the feature's pre-activation.
The labeller scores phrases by v·t / sqrt(vᵀΣv), with the target t the unit Σw plus a quarter of the unit
difference between the mean of the shown activating documents and μ (which adds what the Gaussian picture
misses). It uses only the SAE's weights, the corpus mean and covariance and the shown examples, never the
held-out ones.

1. Candidates: phrases of the vocabulary (`phrases.build_vocabulary`) that stand alone as names and occur in at
   least one shown activating document; each is embedded once, whichever feature asks first.
2. The best `n_candidates` by the score above; label options are those of 2–6 words, the pairs "A and B" and
   (with `triples`) the lists "A, B and C" of candidates that share no word, at most 6 words in all. Composites
   are ranked by the score of the normalised sum of their parts' embeddings, and the best `n_pairs` are
   embedded for real.
3. The label is the option with the best score on its real embedding; a composite counts only when it scores
   `COMPOSITE_MARGIN` above each of its parts (and a triple above each of its pairs that was embedded), so every
   part adds clear separation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..data.vectors import UnitRows
from .phrases import PhraseVocabulary, build_vocabulary, stop_words

__all__ = ["KeywordLabeller", "PhraseEmbeddings", "PhraseVocabulary", "build_vocabulary", "stop_words"]

TARGET_SHOWN_WEIGHT = 0.25
"""Weight of the shown documents' mean (as a unit vector) next to the unit Σw in the target direction."""
COMPOSITE_MARGIN = 0.05
"""A composite must beat the best of its parts (and sub-lists) by this share of that score: a list is longer and
harder to read than a phrase, so it has to earn its place (costs 0.001 AUC, turns a quarter of the triples into
pairs or phrases)."""


class PhraseEmbeddings:
    """Unit-norm embeddings of phrases, computed once per phrase (new phrases in one batched call)."""

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


def _words(s: str) -> set[str]:
    """Crude stems of a phrase's words (so 'body' and 'bodies' count as the same word)."""
    return {w[:5] for w in s.lower().split()}


def _join(parts: Sequence[str]) -> str:
    """'A and B', 'A, B and C'."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _drop_one(parts: Sequence[str]) -> list[tuple[str, ...]]:
    """The sub-tuples with one part left out (for a triple: its three pairs)."""
    return [tuple(p for j, p in enumerate(parts) if j != i) for i in range(len(parts))] if len(parts) > 2 else []


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class KeywordLabeller:
    """Labels features from the phrase vocabulary (see the module docstring).

    `doc_vectors` are the unit document embeddings, `encoder` the SAE's encoder rows (features x dim, in the
    embedding space), `phrase_emb` the shared phrase-embedding cache.
    """

    def __init__(
        self,
        vocab: PhraseVocabulary,
        doc_vectors: np.ndarray,
        encoder: np.ndarray,
        phrase_emb: PhraseEmbeddings,
        *,
        n_candidates: int = 16,
        n_pairs: int = 6,
        pairs: bool = True,
        triples: bool = True,
    ) -> None:
        self.vocab = vocab
        self.docs = doc_vectors if isinstance(doc_vectors, UnitRows) else np.asarray(doc_vectors, dtype=np.float32)
        self.phrase_emb = phrase_emb
        self.name = "keywords"
        self.n_candidates, self.n_pairs, self.pairs, self.triples = n_candidates, n_pairs, pairs, triples
        if isinstance(self.docs, UnitRows):  # read block by block: the corpus need not fit in memory
            self.mean, self.cov = _mean_cov(self.docs)
        else:
            self.mean = self.docs.mean(0)
            centred = self.docs - self.mean
            self.cov = (centred.T @ centred / max(len(centred), 1)).astype(np.float32)
        self.cov_dirs = _unit(np.asarray(encoder, dtype=np.float32) @ self.cov)  # unit Σw per feature
        self._doc_phrases = vocab.matrix.tocsr()
        n, dim = len(vocab.phrases), self.docs.shape[1]
        self._vec = np.zeros((n, dim), np.float32)  # vocabulary phrase embeddings, filled as phrases are needed
        self._sd = np.full(n, np.nan, np.float32)  # and their sqrt(vᵀΣv)

    def _ensure(self, ids: np.ndarray) -> None:
        """Embed the vocabulary phrases `ids` not embedded yet (one batched call)."""
        new = np.unique(ids[np.isnan(self._sd[ids])])
        if len(new):
            vecs = self.phrase_emb.get([self.vocab.display[i] for i in new])
            self._vec[new] = vecs
            self._sd[new] = self._spread(vecs)

    def _spread(self, vecs: np.ndarray) -> np.ndarray:
        """sqrt(vᵀΣv) per row: the spread of the label's cosine over the corpus."""
        return np.sqrt(np.maximum(((vecs @ self.cov) * vecs).sum(1), 1e-12))

    def target(self, ex) -> np.ndarray:
        """The direction a label's embedding should point along for feature `ex.feature` (its FeatureExamples)."""
        t = self.cov_dirs[ex.feature].copy()
        if len(ex.shown_pos):
            t += TARGET_SHOWN_WEIGHT * _unit(self.docs[ex.shown_pos].mean(0) - self.mean)
        return t

    def score(self, vecs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """v·t / sqrt(vᵀΣv) for each row v of `vecs`: the d' of the label's cosine under the Gaussian picture."""
        return (vecs @ target) / self._spread(vecs)

    def _candidates(self, ex) -> np.ndarray:
        """Ids of standalone phrases occurring in at least one shown activating document."""
        if len(ex.shown_pos) == 0:
            return np.zeros(0, np.int64)
        ids = np.unique(self._doc_phrases[ex.shown_pos].indices)
        return ids[self.vocab.standalone[ids]]

    def label_batch(self, examples: Sequence, context=None) -> list[tuple[str | None, dict]]:
        """Labels for a batch of features (FeatureExamples), each with details (candidates, options, score)."""
        disp = self.vocab.display
        cand_ids = [self._candidates(ex) for ex in examples]
        if cand_ids:
            self._ensure(np.concatenate(cand_ids))
        plans = []
        for ex, ids in zip(examples, cand_ids):
            if len(ids) == 0:
                plans.append(None)
                continue
            t = self.target(ex)
            s = (self._vec[ids] @ t) / self._sd[ids]
            top = ids[np.argsort(-s, kind="stable")[: self.n_candidates]]
            plans.append((t, [disp[i] for i in top]))
        pair_opts = [self._pair_options(p[1], p[0]) if p is not None and self.pairs else [] for p in plans]
        self.phrase_emb.add([o for opts in pair_opts for o, _ in opts])
        return [self._choose(plan, pairs) for plan, pairs in zip(plans, pair_opts)]

    def _pair_options(self, cands: list[str], target: np.ndarray) -> list[tuple[str, tuple[str, str]]]:
        """The best `n_pairs` pairs "A and B" of candidates sharing no word, by the score of their summed
        embeddings (the real embedding of the pair is taken afterwards)."""
        pairs = []
        for a in range(len(cands)):
            for b in range(a + 1, len(cands)):
                A, B = cands[a], cands[b]
                if not (_words(A) & _words(B)) and len(A.split()) + len(B.split()) <= 5:
                    pairs.append((A, B))
                    if self.triples:
                        for c in range(b + 1, len(cands)):
                            C = cands[c]
                            if not (_words(C) & (_words(A) | _words(B))) and len(f"{A} {B} {C}".split()) <= 5:
                                pairs.append((A, B, C))
        if not pairs:
            return []
        vecs = np.stack([self.phrase_emb.get(list(ab)).sum(0) for ab in pairs])
        approx = self.score(_unit(vecs), target)
        best = np.argsort(-approx, kind="stable")[: self.n_pairs]
        return [(_join(pairs[i]), pairs[i]) for i in best]

    def _choose(self, plan, pairs: list[tuple[str, tuple[str, str]]]) -> tuple[str | None, dict]:
        if plan is None:
            return None, {"reason": "no phrase of the vocabulary occurs in the shown activating documents"}
        target, cands = plan
        cand_score = dict(zip(cands, self.score(self.phrase_emb.get(cands), target)))
        options = {c: float(v) for c, v in cand_score.items() if 2 <= len(c.split()) <= 6}
        if pairs:
            pairs = sorted(pairs, key=lambda p: len(p[1]))  # pairs before the triples that contain them
            pair_score = self.score(self.phrase_emb.get([p for p, _ in pairs]), target)
            for (p, parts), v in zip(pairs, pair_score):
                sub = [cand_score[x] for x in parts] + [options.get(_join(q), -np.inf) for q in _drop_one(parts)]
                best_sub = max(sub)
                if v > best_sub + COMPOSITE_MARGIN * abs(best_sub) or not options:
                    options[p] = float(v)
        if not options:  # only one-word candidates and no pair of them: join the two best anyway
            options[f"{cands[0]} and {cands[1]}" if len(cands) > 1 else f"{cands[0]} documents"] = 0.0
        label = max(options, key=options.get)
        return label, {"candidates": cands, "options": {k: round(v, 4) for k, v in options.items()},
                       "rank_score": round(options[label], 4)}


def make_keyword_labeller(context) -> KeywordLabeller:
    """The registered factory of the "keywords" labeller: the corpus's phrase vocabulary and the SAE's encoder."""
    encoder = context.ws.load_sae(context.sae).W_enc.detach().float().cpu().numpy()
    vocab = build_vocabulary(context.texts, progress=context.progress)
    return KeywordLabeller(vocab, context.doc_vectors, encoder, context.phrase_emb, **context.options)


def top_documents(codes_csc, features: np.ndarray, n: int) -> list[np.ndarray]:
    """Rows of each feature's `n` highest-activating documents, strongest first."""
    out = []
    for f in features:
        lo, hi = codes_csc.indptr[f], codes_csc.indptr[f + 1]
        order = np.argsort(-codes_csc.data[lo:hi], kind="stable")[:n]
        out.append(codes_csc.indices[lo:hi][order].astype(np.int64))
    return out


def title_keyword_labels(titles: Sequence[str], codes_csc, *, top_docs: int = 10) -> dict[int, str]:
    """Quick labels for an SAE that was never interpreted: per feature, the standalone phrase of the phrase
    vocabulary (built over the titles) most frequent in the titles of its `top_docs` strongest documents and
    rare in the corpus (share of those titles x idf; longer phrases win ties). No embeddings, a second or two."""
    vocab = build_vocabulary(titles, min_df=2, max_df=0.1)
    if not vocab.phrases:
        return {}
    mat = vocab.matrix.tocsr()
    idf = np.log(vocab.n_docs / np.maximum(vocab.df, 1)) * (1 + 0.1 * np.char.count(vocab.phrases, " "))
    idf = np.where(vocab.standalone, idf, 0.0)
    feats = np.flatnonzero(np.diff(codes_csc.indptr))
    labels: dict[int, str] = {}
    for f, docs in zip(feats, top_documents(codes_csc, feats, top_docs)):
        counts = np.asarray(mat[docs].sum(0)).ravel()
        score = counts * idf * (counts >= min(2, len(docs)))
        best = int(np.argmax(score))
        if score[best] > 0:
            labels[int(f)] = vocab.display[best]
    return labels


def _mean_cov(docs: UnitRows) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the rows, accumulated in float64 one block at a time."""
    n, dim = docs.shape
    total, outer = np.zeros(dim), np.zeros((dim, dim))
    for _, block in docs.chunks():
        b = block.astype(np.float64)
        total += b.sum(0)
        outer += b.T @ b
    mean = total / max(n, 1)
    return mean.astype(np.float32), (outer / max(n, 1) - np.outer(mean, mean)).astype(np.float32)
