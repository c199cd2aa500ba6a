"""The offline labeller: one phrase of 1–6 words that separates a feature's activating documents from the
documents nearest to them that it does not fire on (hard negatives) and from the rest of the corpus; "mixed: A / B"
only when the activating documents form two separate groups and two phrases do clearly better than one.

The scorer (`scorers.embedding_scores`) ranks documents by the cosine between their embedding x and the label's
embedding v and reports the AUC of held-out activating documents against held-out random and against held-out
hard negatives. The labeller chooses by the same criteria on the examples it is shown, never the held-out ones:

1. Candidates: phrases of the vocabulary (`phrases.build_vocabulary`) that stand alone as names and occur in at
   least one shown activating document. Two rankings pick the ones worth embedding: the best `n_candidates` by
   the d' of the phrase's cosine along the feature's direction (below), and the best `n_contrastive` by
   contrastive c-TF-IDF: (share of shown activating documents containing the phrase - share of shown hard
   negatives containing it) x idf. Each phrase is embedded once, whichever feature asks first.
2. Each candidate is scored on the shown examples: AUC against the shown random negatives and a sample of the
   corpus (the feature's held-out documents left out), plus `hard_weight` x its AUC against the shown hard
   negatives, plus `PRIOR_WEIGHT` x its d' relative to the best candidate's (the prior keeps the choice stable
   where a handful of shown examples cannot decide).
3. When the shown activating documents form two groups (`scorers.is_mixture`), the pairs "mixed: A / B" of the
   best candidates are scored the same way and one wins only by `MIXED_MARGIN`.

The d' of a phrase: the feature fires where its encoder row w has a large projection w·x. If document vectors
were Gaussian with covariance Σ (about the corpus mean μ), documents with a large w·x would sit at μ + c·Σw, and a
label vector v would separate them from the rest with a d' proportional to v·t / sqrt(vᵀΣv), with the target t the
unit Σw plus a quarter of the unit difference between the mean of the shown activating documents and μ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..data.vectors import UnitRows
from .phrases import PhraseVocabulary, build_vocabulary, stop_words
from .scorers import auc_matrix, is_mixture

__all__ = ["KeywordLabeller", "PhraseEmbeddings", "PhraseVocabulary", "build_vocabulary", "stop_words"]

TARGET_SHOWN_WEIGHT = 0.25
"""Weight of the shown documents' mean (as a unit vector) next to the unit Σw in the target direction."""
PRIOR_WEIGHT = 0.6
"""Weight of a candidate's relative d' next to its two AUCs on the shown examples."""
HARD_WEIGHT = 1.0
"""Weight of the AUC against the shown hard negatives next to the AUC against random and corpus documents."""
MIXED_MARGIN = 0.2
"""How much more (in the sum of the two shown AUCs) a "mixed: A / B" label must reach than the best phrase."""
MIXED_PREFIX = "mixed: "
CORPUS_SAMPLE = 400
"""Corpus documents the label must also separate the activating documents from (besides the shown negatives)."""


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
        n_candidates: int = 12,
        n_contrastive: int = 12,
        mixed: bool = True,
        prior_weight: float = PRIOR_WEIGHT,
        mixed_margin: float = MIXED_MARGIN,
        hard_weight: float = HARD_WEIGHT,
    ) -> None:
        self.name = "keywords"
        self.vocab = vocab
        self.docs = doc_vectors if isinstance(doc_vectors, UnitRows) else np.asarray(doc_vectors, dtype=np.float32)
        self.phrase_emb = phrase_emb
        self.n_candidates, self.n_contrastive, self.mixed = n_candidates, n_contrastive, mixed
        self.prior_weight, self.mixed_margin, self.hard_weight = prior_weight, mixed_margin, hard_weight
        if isinstance(self.docs, UnitRows):  # read block by block: the corpus need not fit in memory
            self.mean, self.cov = _mean_cov(self.docs)
        else:
            self.mean = self.docs.mean(0)
            centred = self.docs - self.mean
            self.cov = (centred.T @ centred / max(len(centred), 1)).astype(np.float32)
        self.cov_dirs = _unit(np.asarray(encoder, dtype=np.float32) @ self.cov)  # unit Σw per feature
        self._doc_phrases = vocab.matrix.tocsr()
        self._idf = np.log(vocab.n_docs / np.maximum(vocab.df, 1)).astype(np.float32)
        rng = np.random.default_rng(0)
        self._sample = np.sort(rng.choice(len(self.docs), min(len(self.docs), CORPUS_SAMPLE), replace=False))
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

    def _grounded(self, ex) -> np.ndarray:
        """Ids of standalone phrases occurring in at least one shown activating document."""
        if len(ex.shown_pos) == 0:
            return np.zeros(0, np.int64)
        ids = np.unique(self._doc_phrases[ex.shown_pos].indices)
        return ids[self.vocab.standalone[ids]]

    def contrastive(self, ex, ids: np.ndarray) -> np.ndarray:
        """Contrastive c-TF-IDF of phrases `ids`: (share of shown activating documents containing each - share of
        shown hard negatives containing it) x idf."""
        share = np.asarray(self._doc_phrases[ex.shown_pos][:, ids].mean(0)).ravel()
        if len(ex.hard_neg):
            share = share - np.asarray(self._doc_phrases[ex.hard_neg][:, ids].mean(0)).ravel()
        return share * self._idf[ids]

    def _pool(self, ex) -> tuple[np.ndarray, np.ndarray]:
        """The grounded phrases, ranked by contrastive c-TF-IDF: the best `n_contrastive`, and a wider pool
        whose d' is looked at (it needs their embeddings)."""
        ids = self._grounded(ex)
        if len(ids) == 0:
            return ids, ids
        order = ids[np.argsort(-self.contrastive(ex, ids), kind="stable")]
        return order[: self.n_contrastive], order[: max(4 * self.n_candidates, self.n_contrastive)]

    def _candidates(self, ex, by_ctf: np.ndarray, pool: np.ndarray) -> np.ndarray:
        """The best `n_contrastive` by c-TF-IDF and the best `n_candidates` of the pool by the d' prior."""
        if len(pool) == 0:
            return pool
        t = self.target(ex)
        by_prior = pool[np.argsort(-((self._vec[pool] @ t) / self._sd[pool]), kind="stable")[: self.n_candidates]]
        return np.unique(np.concatenate([by_prior, by_ctf]))

    def shown_criteria(self, vecs: np.ndarray, ex) -> np.ndarray:
        """Per row of `vecs` (unit label embeddings): AUC of the shown activating documents against the shown
        random negatives and a sample of the corpus (never the feature's held-out documents), plus AUC against
        the shown hard negatives (the first again when there are none)."""
        pos = vecs @ self.docs[ex.shown_pos].T
        held = np.concatenate([ex.shown_pos, ex.heldout_pos, ex.heldout_neg, ex.heldout_hard])
        neg = np.concatenate([ex.random_neg, self._sample[~np.isin(self._sample, held)]])
        a_rand = auc_matrix(pos, vecs @ self.docs[neg].T)
        a_hard = auc_matrix(pos, vecs @ self.docs[ex.hard_neg].T) if len(ex.hard_neg) else a_rand
        return a_rand + self.hard_weight * a_hard

    def label_batch(self, examples: Sequence, context=None) -> list[tuple[str | None, dict]]:
        """Labels for a batch of features (FeatureExamples), each with details (candidates, scores)."""
        disp = self.vocab.display
        pools = [self._pool(ex) for ex in examples]
        if pools:
            self._ensure(np.concatenate([p for _, p in pools]))  # one embedding call per batch
        plans = []
        for ex, (by_ctf, pool) in zip(examples, pools):
            ids = self._candidates(ex, by_ctf, pool)
            if len(ids) == 0:
                plans.append(None)
                continue
            vecs = self._vec[ids]
            prior = (vecs @ self.target(ex)) / self._sd[ids]
            aucs = self.shown_criteria(vecs, ex)
            crit = aucs + self.prior_weight * prior / max(float(prior.max()), 1e-6)
            order = np.argsort(-crit, kind="stable")
            cands = [(disp[ids[i]], float(crit[i])) for i in order]
            mixed = self.mixed and is_mixture(self.docs, ex.shown_pos)
            plans.append((ex, cands, self._mixed_options(cands) if mixed else [], float(aucs[order[0]])))
        self.phrase_emb.add([m for plan in plans if plan for m, _ in plan[2]])
        return [self._choose(plan) for plan in plans]

    @staticmethod
    def _mixed_options(cands: list[tuple[str, float]], n: int = 4) -> list[tuple[str, float]]:
        """ "mixed: A / B" labels of the best `n` candidates that share no word."""
        top = [c for c, _ in cands[:n]]
        return [(f"{MIXED_PREFIX}{a} / {b}", 0.0) for i, a in enumerate(top) for b in top[i + 1 :]
                if not (_words(a) & _words(b))]

    def _choose(self, plan) -> tuple[str | None, dict]:
        if plan is None:
            return None, {"reason": "no phrase of the vocabulary occurs in the shown activating documents"}
        ex, cands, mixed, best_aucs = plan  # best_aucs: the best candidate's shown AUCs, without the prior
        label, best = cands[0]
        detail: dict = {"candidates": {c: round(v, 4) for c, v in cands[:12]}}
        if mixed:
            names = [m for m, _ in mixed]
            crit = self.shown_criteria(self.phrase_emb.get(names), ex)
            detail["mixed"] = {m: round(float(v), 4) for m, v in zip(names, crit)}
            j = int(np.argmax(crit))
            if crit[j] > best_aucs + self.mixed_margin:  # AUCs against AUCs: the candidates' criteria add the prior
                label, best = names[j], float(crit[j])
        detail["rank_score"] = round(best, 4)
        return label, detail


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
