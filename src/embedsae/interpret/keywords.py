"""The offline labeller: for each feature a name (one phrase of 1–6 words) and a description (one sentence of
at most 30 words), chosen by the criteria the scorer uses, on the examples the labeller is shown.

The scorer (`scorers.embedding_scores`) ranks documents by the cosine between their embedding x and the embedding
v of the name (or of the description) and reports the AUC of held-out activating documents against held-out
random documents and against their per-document hard negatives (each one's nearest non-activating document).
The labeller chooses by the same criteria on the documents it is shown, never the held-out ones:

1. Candidates. (a) Phrases of the corpus vocabulary (`phrases.build_vocabulary`) that stand alone as names and
   occur in a shown activating document: the best `n_contrastive` by contrastive c-TF-IDF ((share of shown
   activating documents containing the phrase - share of their hard negatives containing it) x idf) and the best
   `n_candidates` of a wider pool by the d' priors below; and the best `n_global` by the priors of all the
   phrases found in the shown activating documents whose embedding is known (embedded for any feature).
   Phrases found in none of them are no candidates: picked by the criterion, such phrases raised the AUCs a
   little but named 26 % of the demo corpus's features with a word none of their documents holds, mostly a
   wrong one ("Punjab" for Bactrian camel · Kalahari Desert · Alpaca). (b) Runs of up to six words of the titles of the
   `n_titles` strongest shown documents that read as names (`phrases.title_chunks`: "Dirac equation in curved
   spacetime"); each is first scored by the priors on an approximate embedding (the normalised sum of the
   embeddings of the vocabulary phrases that make it up), and only the best `n_chunks` are embedded. Each phrase
   is embedded once, whichever feature asks first.
2. Criterion of a candidate: its AUC on the shown activating documents against the shown random negatives and a
   corpus sample, plus `hard_weight` x its AUC against their shown hard negatives, plus three d' priors, each
   relative to the best candidate's: `prior_weight` x the d' along the target t below, `encoder_weight` x the
   d' along the SAE's encoder row w, and `pair_weight` x the d' along the mean difference between the shown
   activating documents and their hard negatives (what sets them apart from their nearest neighbours). The
   priors keep the choice stable where a few dozen shown examples cannot decide.
3. The name is the best candidate. The description joins it with `description_parts` more candidates, picked
   greedily (sharing no word with those already picked) by the same criterion applied to the normalised sum of
   the parts' embeddings: "<Name>: <what they share>, <...>; set apart by <the part that best separates them from
   their hard negatives>." A reader must be able to trust each part, which the embedding AUC does not check (it
   rewards a word close to the documents in the embedding space whether or not they hold it: "Irregular galaxy:
   Alexander Fleming; set apart by feature."). So a part (a candidate, or another phrase of several words of the
   c-TF-IDF pool) occurs in several of the shown activating documents, far more often than in the corpus, and
   holds no word glued by text extraction ("usingDeep") (`KeywordLabeller.part_tests`); the last part says what
   sets the documents apart only when it occurs clearly more often in them than in their hard negatives
   ("<Name>: <a>, <b> and <c>." otherwise).

The d' of a label vector v along a direction u is v·u / sqrt(vᵀΣv), Σ the corpus covariance: the spread of the
label's cosine over the corpus. The feature fires where its encoder row w has a large projection w·x; if document
vectors were Gaussian about the corpus mean μ, documents with a large w·x would sit at μ + c·Σw: the target t is
the unit Σw plus a quarter of the unit difference between the mean of the shown activating documents and μ.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from ..data.vectors import UnitRows
from .labellers import MAX_DESCRIPTION_WORDS, Label
from .phrases import PhraseVocabulary, build_vocabulary, stop_words, title_chunks
from .scorers import auc_matrix

__all__ = ["KeywordLabeller", "PhraseEmbeddings", "PhraseVocabulary", "build_vocabulary", "stop_words"]

KEYWORDS_VERSION = "2"
"""Stamped on every label: 2, a name and a grounded description; features labelled before (one name, no
description) are labelled again by the next interpret run."""
TARGET_SHOWN_WEIGHT = 0.25
"""Weight of the shown documents' mean (as a unit vector) next to the unit Σw in the target direction."""
PRIOR_WEIGHT = 0.6
"""Weight of a candidate's d' along the target, relative to the best candidate's."""
ENCODER_WEIGHT = 0.6
"""Weight of a candidate's d' along the encoder row, relative to the best candidate's."""
PAIR_WEIGHT = 0.3
"""Weight of a candidate's d' along the mean difference of the shown activating documents and their hard
negatives, relative to the best candidate's."""
HARD_WEIGHT = 1.0
"""Weight of the AUC against the shown hard negatives next to the AUC against random and corpus documents."""
CORPUS_SAMPLE = 400
"""Corpus documents the label must also separate the activating documents from (besides the shown negatives)."""
SET_APART = "; set apart by "
PART_MIN_DOCS = 2
"""A description part occurs in at least this many of the feature's shown activating documents (not one odd one)
..."""
PART_MIN_LIFT = 4.0
"""... and is at least this many times more frequent there than in the corpus (no generic word)."""
PART_MAX_DF = 0.02
"""A one-word name or description part occurs in at most this share of the corpus's documents."""
CONTRAST_MIN_GAP = 0.2
"""The "set apart by" part occurs in a share of the shown activating documents at least this much larger than
the share of their hard negatives (their nearest non-activating documents) holding it; without such a part the
description says only what the documents share."""
_GLUED = re.compile(r"\b([a-z]{2,})([A-Z][a-z]{2,})\b")


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


def _rows(p: dict, rows: slice) -> dict:
    """Some rows of projections (`_Feature.project`)."""
    return {k: (v[rows] if v is not None else None) for k, v in p.items()}


def _d_prime(along: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """d' from projections: each row's projections along the directions over the spread sqrt(vᵀΣv) of its cosine."""
    return along / np.sqrt(np.maximum(quad, 1e-12))[:, None]


def _rel(x: np.ndarray, top: float) -> np.ndarray:
    """Values relative to a best value (0 where the best is not positive)."""
    return x / top if top > 1e-9 else np.zeros_like(x)


class _Feature:
    """What the criterion of one feature needs: its shown documents' vectors and its three prior directions."""

    def __init__(self, lab: KeywordLabeller, ex) -> None:
        docs = lab.docs
        self.ex = ex
        self.pos = np.asarray(docs[ex.shown_pos], np.float32)
        held = np.concatenate([ex.shown_pos, ex.heldout_pos, ex.heldout_neg, ex.heldout_hard])
        neg = np.concatenate([ex.random_neg, lab.sample[~np.isin(lab.sample, held)]])
        self.neg = np.asarray(docs[neg], np.float32)
        self.hard = np.asarray(docs[ex.hard_neg], np.float32) if len(ex.hard_neg) else None
        t = lab.cov_dirs[ex.feature].copy()
        if len(self.pos):
            t += TARGET_SHOWN_WEIGHT * _unit(self.pos.mean(0) - lab.mean)
        k = min(len(self.pos), len(ex.hard_neg))
        pair = (self.pos[:k] - self.hard[:k]).mean(0) if k else np.zeros_like(t)
        self.dirs = np.stack([t, lab.encoder[ex.feature], pair])  # target, encoder row, pair difference
        self.top: np.ndarray | None = None  # the best candidate's d' along each direction

    def priors(self, lab: KeywordLabeller, vecs: np.ndarray) -> np.ndarray:
        """d' of each label vector along the three directions (rows: vectors)."""
        return (vecs @ self.dirs.T) / lab.spread(vecs)[:, None]

    def project(self, lab: KeywordLabeller, vecs: np.ndarray) -> dict[str, np.ndarray | None]:
        """What the criterion needs of `vecs`, all linear in them but "quad" (vᵀΣv): their cosines with the shown
        documents, along the directions, and vΣ. The projections of a sum of vectors are sums of theirs."""
        return {"pos": vecs @ self.pos.T, "neg": vecs @ self.neg.T,
                "hard": vecs @ self.hard.T if self.hard is not None else None, "dirs": vecs @ self.dirs.T,
                "cov": vecs @ lab.cov, "vecs": vecs}

    @staticmethod
    def quad(p: dict) -> np.ndarray:
        return (p["cov"] * p["vecs"]).sum(1)

    def criterion(self, lab: KeywordLabeller, vecs: np.ndarray) -> np.ndarray:
        """The labeller's criterion of each row of `vecs` (see the module docstring); the first call fixes the
        best candidate's priors that later calls are relative to."""
        p = self.project(lab, vecs)
        return self.criterion_of(lab, p, self.quad(p))

    def criterion_of(self, lab: KeywordLabeller, p: dict, quad: np.ndarray) -> np.ndarray:
        """`criterion` from projections (`project`) and vᵀΣv. Every part of it is unchanged when a vector is
        scaled: sums of unit vectors need no normalising."""
        a_rand = auc_matrix(p["pos"], p["neg"])
        a_hard = auc_matrix(p["pos"], p["hard"]) if p["hard"] is not None else a_rand
        pri = _d_prime(p["dirs"], quad)
        if self.top is None:
            self.top = pri.max(0)
        w = (lab.prior_weight, lab.encoder_weight, lab.pair_weight)
        rel = sum(wi * _rel(pri[:, i], float(self.top[i])) for i, wi in enumerate(w))
        return a_rand + lab.hard_weight * a_hard + rel

    def contrast_of(self, p: dict, quad: np.ndarray) -> np.ndarray:
        """How well each vector separates the shown activating documents from their hard negatives: the AUC
        against them plus the relative d' along the pair difference (from projections, as `criterion_of`)."""
        a_hard = auc_matrix(p["pos"], p["hard"]) if p["hard"] is not None else np.zeros(len(quad))
        pair = _d_prime(p["dirs"][:, 2:], quad)[:, 0]
        return a_hard + _rel(pair, float(self.top[2]) if self.top is not None else 0.0)


class KeywordLabeller:
    """Names and describes features from the corpus's phrases and titles (see the module docstring).

    `doc_vectors` are the unit document embeddings, `encoder` the SAE's encoder rows (features x dim, in the
    embedding space), `phrase_emb` the shared phrase-embedding cache, `titles` the documents' titles (None: no
    title candidates).
    """

    def __init__(
        self,
        vocab: PhraseVocabulary,
        doc_vectors: np.ndarray,
        encoder: np.ndarray,
        phrase_emb: PhraseEmbeddings,
        *,
        titles: Sequence[str] | None = None,
        n_candidates: int = 12,
        n_contrastive: int = 12,
        n_global: int = 12,
        n_titles: int = 6,
        n_chunks: int = 8,
        description_parts: int = 3,
        prior_weight: float = PRIOR_WEIGHT,
        encoder_weight: float = ENCODER_WEIGHT,
        pair_weight: float = PAIR_WEIGHT,
        hard_weight: float = HARD_WEIGHT,
    ) -> None:
        self.name = "keywords"
        self.version = KEYWORDS_VERSION
        self.vocab = vocab
        self.docs = doc_vectors if isinstance(doc_vectors, UnitRows) else np.asarray(doc_vectors, dtype=np.float32)
        self.phrase_emb = phrase_emb
        self.titles = titles
        self.n_candidates, self.n_contrastive = n_candidates, n_contrastive
        self.n_titles, self.n_chunks, self.description_parts = n_titles, n_chunks, description_parts
        self.prior_weight, self.encoder_weight = prior_weight, encoder_weight
        self.pair_weight, self.hard_weight = pair_weight, hard_weight
        self.n_global = n_global
        if isinstance(self.docs, UnitRows):  # read block by block: the corpus need not fit in memory
            self.mean, self.cov = _mean_cov(self.docs)
        else:
            self.mean = self.docs.mean(0)
            centred = self.docs - self.mean
            self.cov = (centred.T @ centred / max(len(centred), 1)).astype(np.float32)
        self.encoder = np.asarray(encoder, dtype=np.float32)
        self.cov_dirs = _unit(self.encoder @ self.cov)  # unit Σw per feature
        self._idf = np.log(vocab.n_docs / np.maximum(vocab.df, 1)).astype(np.float32)
        # a name, or a description part, of one word must be a rare one ("graphene", not "parameters")
        one_word = np.char.count(np.asarray(vocab.phrases, dtype=str), " ") == 0 if vocab.phrases else np.zeros(0, bool)
        self._specific = ~one_word | (vocab.df <= PART_MAX_DF * vocab.n_docs)
        rng = np.random.default_rng(0)
        self.sample = np.sort(rng.choice(len(self.docs), min(len(self.docs), CORPUS_SAMPLE), replace=False))
        n, dim = len(vocab.phrases), self.docs.shape[1]
        self._vec = np.zeros((n, dim), np.float32)  # vocabulary phrase embeddings, filled as phrases are needed
        self._done = np.zeros(n, bool)
        self._spread_all = np.ones(n, np.float32)

    # ------------------------------------------------------------------ embeddings
    def _ensure(self, ids: np.ndarray) -> None:
        """Embed the vocabulary phrases `ids` not embedded yet (one batched call)."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        new = ids[~self._done[ids]]
        if len(new):
            self._vec[new] = self.phrase_emb.get([self.vocab.display[i] for i in new])
            self._spread_all[new] = self.spread(self._vec[new])
            self._done[new] = True

    def spread(self, vecs: np.ndarray) -> np.ndarray:
        """sqrt(vᵀΣv) per row: the spread of the label's cosine over the corpus."""
        return np.sqrt(np.maximum(((vecs @ self.cov) * vecs).sum(1), 1e-12))

    # ------------------------------------------------------------------ candidates
    def _grounded(self, ex) -> np.ndarray:
        """Ids of standalone phrases occurring in at least one shown activating document."""
        if len(ex.shown_pos) == 0:
            return np.zeros(0, np.int64)
        ids = np.unique(self.vocab.rows(ex.shown_pos).indices)
        return ids[self.vocab.standalone[ids]]

    def contrastive(self, ex, ids: np.ndarray) -> np.ndarray:
        """Contrastive c-TF-IDF of phrases `ids`: (share of shown activating documents containing each - share of
        their shown hard negatives containing it) x idf."""
        share = np.asarray(self.vocab.rows(ex.shown_pos)[:, ids].mean(0)).ravel()
        if len(ex.hard_neg):
            share = share - np.asarray(self.vocab.rows(ex.hard_neg)[:, ids].mean(0)).ravel()
        return share * self._idf[ids]

    def _pool(self, ex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The grounded phrases ranked by contrastive c-TF-IDF: the best `n_contrastive`, a wider pool whose
        priors are looked at (it needs their embeddings), and all of them (sorted ids)."""
        ids = self._grounded(ex)
        if len(ids) == 0:
            return ids, ids, ids
        order = ids[np.argsort(-self.contrastive(ex, ids), kind="stable")]
        return order[: self.n_contrastive], order[: max(4 * self.n_candidates, self.n_contrastive)], ids

    def _chunks(self, ex) -> list[tuple[str, list[int]]]:
        """Title runs of the strongest shown documents (`phrases.title_chunks`) with the vocabulary phrases that
        make them up; those that are a vocabulary phrase themselves are left to the vocabulary candidates."""
        if self.titles is None:
            return []
        out: dict[str, list[int]] = {}
        for d in ex.top[: self.n_titles]:
            for chunk in title_chunks(str(self.titles[d]), self.vocab):
                low = chunk.lower()
                if low in out or self.vocab.index(low) is not None:
                    continue
                parts = self.vocab.cover(low.split())
                if parts:
                    out[chunk] = parts
        return list(out.items())

    # ------------------------------------------------------------------ labelling
    def label_batch(self, examples: Sequence, context=None) -> list[Label]:
        """Names and descriptions of a batch of features (FeatureExamples), with details (candidates, scores)."""
        pools = [self._pool(ex) for ex in examples]
        chunks = [self._chunks(ex) for ex in examples]
        cover = [i for ch in chunks for _, parts in ch for i in parts]
        self._ensure(np.concatenate([p for _, p, _ in pools] + [np.asarray(cover, np.int64)]))  # one call per batch
        feats = [_Feature(self, ex) for ex in examples]
        plans = []
        for f, (by_ctf, pool, grounded), ch in zip(feats, pools, chunks):
            ids, vecs = self._vocab_candidates(f, by_ctf, pool, grounded[self._done[grounded]])
            names = [self.vocab.display[i] for i in ids]
            best_chunks = self._best_chunks(f, ch, vecs)
            # further description parts (never names): the rest of the c-TF-IDF pool's phrases of several words,
            # embedded already
            more = np.asarray([i for i in np.setdiff1d(pool, ids) if " " in self.vocab.phrases[i]], np.int64)
            texts = names + [c for c, _ in best_chunks] + [self.vocab.display[i] for i in more]
            covers = [[int(i)] for i in ids] + [parts for _, parts in best_chunks] + [[int(i)] for i in more]
            part, contrasting = self.part_tests(f.ex, texts, covers)
            n_name = len(names) + len(best_chunks)
            keep = np.concatenate([np.ones(n_name, bool), part[n_name:]])
            nameable = np.concatenate([self._specific[ids], np.ones(len(best_chunks), bool)])
            plans.append(([t for t, k in zip(texts, keep) if k], part[keep], contrasting[keep], nameable, len(names)))
        self.phrase_emb.add([c for texts, _, _, _, n in plans for c in texts[n:]])
        return [self._label(f, *plan[:4]) for f, plan in zip(feats, plans)]

    def part_tests(self, ex, texts: Sequence[str], covers: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Which candidates may be description parts, and which may say what sets the documents apart.

        A candidate (its text and the vocabulary phrases covering it) is a part when its covering phrases occur
        together in at least `PART_MIN_DOCS` of the feature's shown activating documents, `PART_MIN_LIFT` times
        more often there than in the corpus (the corpus share of its rarest covering phrase; where the feature
        shows fewer documents, in all of them and in at most `PART_MAX_DF` of the corpus), a single word is a
        rare one (`PART_MAX_DF`), and none of its words is two glued by text extraction ("usingDeep"). A part
        sets the documents apart when the share of the shown activating documents holding it exceeds the share of
        their hard negatives by `CONTRAST_MIN_GAP`."""
        n = len(texts)
        part, contrasting = np.zeros(n, bool), np.zeros(n, bool)
        if not n or not len(ex.shown_pos):
            return part, contrasting
        k = min(len(ex.shown_pos), len(ex.hard_neg))
        cols = np.unique(np.concatenate([np.asarray(c, np.int64) for c in covers] + [np.zeros(0, np.int64)]))
        where = {int(c): i for i, c in enumerate(cols)}
        held = [self.vocab.rows(d)[:, cols].toarray() > 0 for d in (ex.shown_pos, ex.shown_pos[:k], ex.hard_neg[:k])]
        for j, (text, cov) in enumerate(zip(texts, covers)):
            cov = list(dict.fromkeys(int(i) for i in cov))
            if not cov or self.glued(text):
                continue
            if len(cov) == 1 and len(text.split()) == 1 and self.vocab.df[cov[0]] > PART_MAX_DF * self.vocab.n_docs:
                continue
            at = [where[i] for i in cov]
            shown, pos, hard = (h[:, at].all(1) for h in held)
            corpus = float(self.vocab.df[cov].min()) / self.vocab.n_docs
            if len(shown) >= PART_MIN_DOCS:
                part[j] = shown.sum() >= PART_MIN_DOCS and shown.mean() >= PART_MIN_LIFT * corpus
            else:  # too few documents to see what they share: in all of them, and rare in the corpus
                part[j] = shown.all() and corpus <= PART_MAX_DF
            contrasting[j] = part[j] and k > 0 and pos.mean() - hard.mean() >= CONTRAST_MIN_GAP
        return part, contrasting

    def glued(self, text: str) -> bool:
        """Whether a word of `text` is two words of the corpus glued by text extraction ("usingDeep")."""
        stops = stop_words()
        return any((a in stops or self.vocab.index(a) is not None) and (b.lower() in stops
                   or self.vocab.index(b.lower()) is not None) for a, b in _GLUED.findall(text))

    def _vocab_candidates(self, f: _Feature, by_ctf: np.ndarray, pool: np.ndarray, known: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Ids and embeddings of the best `n_contrastive` phrases by c-TF-IDF, the best `n_candidates` of the
        pool by the priors and the best `n_global` by the priors of all the phrases of the feature's shown
        documents whose embedding is `known`."""
        if len(pool) == 0:
            return pool, np.zeros((0, self.docs.shape[1]), np.float32)
        w = (self.prior_weight, self.encoder_weight, self.pair_weight)
        pri = f.priors(self, self._vec[pool])
        top = pri.max(0)
        score = sum(wi * _rel(pri[:, i], float(top[i])) for i, wi in enumerate(w))
        parts = [by_ctf, pool[np.argsort(-score, kind="stable")[: self.n_candidates]]]
        if self.n_global and len(known):
            gp = (self._vec[known] @ f.dirs.T) / self._spread_all[known][:, None]
            gscore = sum(wi * _rel(gp[:, i], float(top[i])) for i, wi in enumerate(w))
            parts.append(known[np.argsort(-gscore, kind="stable")[: self.n_global]])
        ids = np.unique(np.concatenate(parts))
        return ids, self._vec[ids]

    def _best_chunks(self, f: _Feature, chunks: list[tuple[str, list[int]]], vocab_vecs: np.ndarray
                     ) -> list[tuple[str, list[int]]]:
        """The `n_chunks` title runs with the best priors on their approximate embeddings (relative to the
        vocabulary candidates' best priors), with their covering vocabulary phrases."""
        if not chunks or not self.n_chunks:
            return []
        approx = _unit(np.stack([self._vec[parts].sum(0) for _, parts in chunks]))
        pri = f.priors(self, approx)
        top = np.maximum(pri.max(0), f.priors(self, vocab_vecs).max(0)) if len(vocab_vecs) else pri.max(0)
        score = sum(w * _rel(pri[:, i], float(top[i]))
                    for i, w in enumerate((self.prior_weight, self.encoder_weight, self.pair_weight)))
        return [chunks[i] for i in np.argsort(-score, kind="stable")[: self.n_chunks]]

    def _label(self, f: _Feature, names: list[str], part: np.ndarray, contrasting: np.ndarray, nameable: np.ndarray
               ) -> Label:
        """The name (the best of the first len(nameable) candidates by the criterion) and the description (the
        name and parts from all of them)."""
        if not len(nameable):
            return Label(None, None, {"reason": "no phrase of the vocabulary occurs in the shown activating documents"})
        vecs = self.phrase_emb.get(names)
        proj = f.project(self, vecs)
        quad = f.quad(proj)
        n = len(nameable)
        # the first criterion call fixes the priors' scale: the name candidates' only
        crit = f.criterion_of(self, _rows(proj, slice(0, n)), quad[:n])
        if len(names) > n:
            crit = np.concatenate([crit, f.criterion_of(self, _rows(proj, slice(n, None)), quad[n:])])
        order = np.argsort(-crit[:n], kind="stable")
        if nameable.any():  # names: no common single word ("ability", "changes"); descriptions may use them
            order = order[nameable[order]]
        best = int(order[0])
        parts, set_apart = self._describe(f, names, proj, quad, best, part, contrasting)
        detail: dict = {"candidates": {names[i]: round(float(crit[i]), 4) for i in order[:12]},
                        "rank_score": round(float(crit[best]), 4), "description_parts": parts,
                        "description_set_apart": set_apart}
        return Label(names[best], describe(names[best], parts, set_apart=set_apart), detail)

    def _describe(self, f: _Feature, names: list[str], proj: dict, quads: np.ndarray, best: int, part: np.ndarray,
                  contrasting: np.ndarray) -> tuple[list[str], bool]:
        """`description_parts` candidates to describe the feature with besides its name (`part_tests`), picked
        greedily by the criterion of the sum of their and the name's embeddings; the last, where a contrasting
        part is left, by how well it separates the shown documents from their hard negatives; from the names'
        projections `proj` (`_Feature.project`) and their vᵀΣv `quads`. Returns the parts and whether the last one says what sets the
        documents apart."""
        vecs = proj["vecs"]
        chosen = [best]
        used = set(_words(names[best]))
        set_apart = False
        for step in range(self.description_parts):
            free = [j for j in range(len(names)) if part[j] and j not in chosen and not (_words(names[j]) & used)]
            if not free:
                break
            last = step == self.description_parts - 1
            if last and any(contrasting[j] for j in free):
                free = [j for j in free if contrasting[j]]
                set_apart = True
            sums = {k: (v[chosen].sum(0) + v[free] if v is not None else None) for k, v in proj.items()
                    if k not in ("cov", "vecs")}
            c, c_cov = vecs[chosen].sum(0), proj["cov"][chosen].sum(0)  # (c + v)ᵀΣ(c + v) = cᵀΣc + 2vᵀΣc + vᵀΣv
            quad = float(c @ c_cov) + 2 * (vecs[free] @ c_cov) + quads[free]
            score = f.contrast_of(sums, quad) if set_apart else f.criterion_of(self, sums, quad)
            j = free[int(np.argmax(score))]
            chosen.append(j)
            used |= _words(names[j])
        return [names[j] for j in chosen[1:]], set_apart


def describe(name: str, parts: Sequence[str], *, set_apart: bool = True, max_words: int = MAX_DESCRIPTION_WORDS
             ) -> str:
    """A description from a name and further phrases: "<Name>: <p1>, <p2>; set apart by <p3>." where the last
    part says what sets the documents apart (`set_apart`), else "<Name>: <p1>, <p2> and <p3>."; parts sharing a
    word with the name left out, cut to `max_words` words by dropping parts (the set-apart part last)."""
    if set_apart and parts and _words(parts[-1]) & _words(name):
        set_apart = False  # the part that set the documents apart is left out
    parts = [p for p in parts if not (_words(p) & _words(name))]
    while True:
        if not parts:
            text = name
        elif set_apart and len(parts) == 1:
            text = f"{name}{SET_APART}{parts[0]}"
        elif set_apart:
            text = f"{name}: {', '.join(parts[:-1])}{SET_APART}{parts[-1]}"
        else:
            text = f"{name}: {', '.join(parts[:-1])} and {parts[-1]}" if len(parts) > 1 else f"{name}: {parts[0]}"
        if len(text.split()) <= max_words or not parts:
            break
        parts.pop(len(parts) - 2 if set_apart and len(parts) > 1 else len(parts) - 1)
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def make_keyword_labeller(context) -> KeywordLabeller:
    """The registered factory of the "keywords" labeller: the corpus's phrase vocabulary and the SAE's encoder."""
    encoder = context.ws.load_sae(context.sae).W_enc.detach().float().cpu().numpy()
    texts = context.texts
    words = len(texts) > 0 and all(len(str(t).split()) <= 1 for t in texts[:2000])  # a word list: each word once
    vocab = build_vocabulary(texts, min_df=1 if words else 3, progress=context.progress)
    return KeywordLabeller(vocab, context.doc_vectors, encoder, context.phrase_emb, titles=context.ws.titles(),
                           **context.options)


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
