"""The phrase vocabulary of a corpus, the raw material of the offline labeller (`keywords`).

Phrases are 1–3-word n-grams that neither start nor end with a stop word and do not cross punctuation
("state of the art", "graph neural networks"), counted once per document. Each phrase carries its display form
(acronyms and proper names restored: "LSTM", "Bayesian") and whether it can stand alone as a label part: not
mostly a modifier of the next word ("theoretical", "Markov chain Monte") or the tail of a longer name
("answering" of "question answering"), not mostly a verb or a predicate adjective ("penalize", "is flexible").

The vocabulary is counted on a bounded sample of the corpus (`VOCABULARY_SAMPLE` documents, seeded; all of a
smaller corpus), so its memory does not grow with the corpus; the phrases of a document outside the sample are
found when a labeller asks for them (`PhraseVocabulary.rows`), and kept.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..progress import ProgressCallback, track
from .stopwords import ENGLISH_STOP_WORDS

VOCABULARY_SAMPLE = 20_000
"""Documents the phrase vocabulary is counted on (a seeded sample of a larger corpus): its memory is bounded by
this many documents' phrases, whatever the corpus size."""

_SPLIT = re.compile(r"[.,;:!?()\[\]{}\"“”‘’<>|=+*/\\]+|\s-\s|\$[^$]*\$")
_TOKEN = re.compile(r"[^\W\d_][^\W_]*(?:[-'][^\W_]+)*")  # words of letters (any script) and digits

# Words that say nothing about a document's topic in scientific abstracts, on top of English stop words.
ACADEMIC_STOP_WORDS = frozenset("""
paper papers propose proposed proposes present presented presents show shows shown showed study studies studied
approach approaches method methods result results novel new based using use used uses work works also however
well can may might could would one two three first second via thus therefore furthermore moreover additionally
existing different various several many much within without among across respectively often significantly
demonstrate demonstrates demonstrated experiments experimental extensive state-of-the-art outperforms outperform
performance compared comparison effective effectively efficient efficiently problem problems task tasks
crucial certain superior improving closing spent equips produces provides enables achieving
investigate investigated introduce introduced introduces provide provides provided obtain obtained achieve
achieves achieved including include includes given make makes made way ways use able recent recently
important key main large small high low good better best specific particular general specifically
approach-based previous prior et al i e etc eg ie whose whether either neither wide widely
http https www com org html github url
emph textit textbf mathrm mathcal mathbb mathbf infty cite ref eq eqs fig figs sec ii iii iv vi vii viii
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
near continue continues continued
examine examined employ employs employed exploit exploits exploited leverage leverages leveraged utilize utilizes
utilized introduce develop develops developed design designed designs build builds built train trained trains
""".split())


@functools.cache
def stop_words() -> frozenset[str]:
    """English stop words plus common words of scientific abstracts."""
    return ENGLISH_STOP_WORDS | ACADEMIC_STOP_WORDS


@dataclass
class PhraseVocabulary:
    """The phrases of a corpus: sampled documents x phrases (binary CSR), the phrases, their document frequencies
    (estimated on the sample, scaled to the corpus) and display forms."""

    matrix: object
    phrases: list[str]
    df: np.ndarray
    display: list[str]
    standalone: np.ndarray
    """Per phrase, whether it can stand alone as (part of) a label (see `_standalone`)."""
    can_start: np.ndarray | None = None
    """Per phrase, whether a name may start with it (not mostly the tail of a longer name, not mostly a verb)."""
    can_end: np.ndarray | None = None
    """Per phrase, whether a name may end with it (not mostly a modifier of the next word, not mostly a verb)."""
    sample: np.ndarray | None = None
    """Corpus rows of the matrix's rows (None: every document, in order)."""
    texts: Sequence[str] | None = None
    """The corpus texts (read for documents outside the sample)."""
    n_corpus: int | None = None
    """Documents in the corpus (default: the matrix's rows)."""

    def __post_init__(self) -> None:
        self._index = {p: i for i, p in enumerate(self.phrases)}
        self._extra: dict[int, np.ndarray] = {}
        if self.sample is not None:
            self._pos = {int(r): i for i, r in enumerate(self.sample)}

    @property
    def n_docs(self) -> int:
        return self.n_corpus if self.n_corpus is not None else self.matrix.shape[0]

    def rows(self, docs: Sequence[int]) -> object:
        """The documents x phrases matrix (binary CSR) of corpus rows `docs`: from the sample, or found in the
        documents' texts (and kept) for rows outside it."""
        import scipy.sparse as sp

        docs = np.asarray(docs, dtype=np.int64)
        if self.sample is None:
            return self.matrix[docs]
        mat = self.matrix.tocsr() if not sp.isspmatrix_csr(self.matrix) else self.matrix
        cols, indptr = [], [0]
        for d in docs.tolist():
            i = self._pos.get(d)
            if i is not None:
                ids = mat.indices[mat.indptr[i] : mat.indptr[i + 1]]
            else:
                ids = self._extra.get(d)
                if ids is None:
                    ids = self._extra[d] = self.phrase_ids(str(self.texts[d]) if self.texts is not None else "")
            cols.append(ids)
            indptr.append(indptr[-1] + len(ids))
        data = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return sp.csr_matrix((np.ones(len(data), np.float32), data, np.asarray(indptr)),
                             shape=(len(docs), len(self.phrases)))

    def index(self, phrase: str) -> int | None:
        """The id of a phrase (lower case), or None when it is not in the vocabulary."""
        return self._index.get(phrase)

    def cover(self, words: Sequence[str]) -> list[int]:
        """Ids of vocabulary phrases covering a run of words (lower case), longest phrases first from the left;
        words that no phrase covers are skipped."""
        out, i = [], 0
        while i < len(words):
            for n in (3, 2, 1):
                j = self._index.get(" ".join(words[i : i + n])) if i + n <= len(words) else None
                if j is not None:
                    out.append(j)
                    i += n
                    break
            else:
                i += 1
        return out

    def phrase_ids(self, text: str) -> np.ndarray:
        """Ids of the vocabulary's phrases that occur in `text` (sorted)."""
        found = _phrases_of(text, stop_words(), ENGLISH_STOP_WORDS, Counter(), 3, _Context(Counter(), Counter(),
                            Counter(), Counter()))
        return np.asarray(sorted(self._index[p] for p in found if p in self._index), dtype=np.int32)


_LATEX_ACCENT = re.compile(r"""\\[\"'`^~=.uvHc]\{?([A-Za-z])\}?""")

# Words that precede a verb far more often than a noun: a phrase mostly found after them is a verb ("we penalize").
VERB_CUES = frozenset("""
to we can could may might will would shall should must cannot also which that they it not does do did often
then thus first further
""".split())

# Words after which a word is mostly an adjective ("is flexible", "more robust") ...
PREDICATE_CUES = frozenset("is are be been being was were more most less least very highly fairly quite too so".split())
# ... and after which an -ing word is mostly a verb ("by carrying", "while emphasizing").
GERUND_CUES = frozenset("by while when without thereby upon after before".split())
# A word ending in -s that is mostly followed by one of these is a verb with its object ("settles the").
OBJECT_CUES = frozenset("the a an its their our these this his her".split())


@dataclass
class _Context:
    """Per-phrase occurrence counts used to judge whether a phrase can stand alone as a label part."""

    occurrences: Counter
    modifier: Counter
    """Occurrences followed, in the same clause, by another content word ('theoretical analysis', 'Monte Carlo')."""
    after_verb_cue: Counter
    """Occurrences right after a word that usually precedes a verb or an adjective ('to ensure', 'we penalize',
    'is flexible', 'by carrying'), or, for a word ending in -s, right before an object ('settles the')."""
    tail: Counter
    """Occurrences right after another content word ('question answering' for 'answering')."""


def _clean_text(text: str) -> str:
    """Undo LaTeX accents (Schr\\"odinger -> Schrodinger) so words are not cut in two."""
    return _LATEX_ACCENT.sub(r"\1", text)


def _phrases_of(
    text: str, stops: frozenset[str], function_words: frozenset[str], case_counts: Counter, max_n: int, ctx: _Context
) -> set[str]:
    found: set[str] = set()
    for chunk in _SPLIT.split(_clean_text(text)):
        toks = _TOKEN.findall(chunk)
        if not toks:
            continue
        case_counts.update(toks)
        low = [t.lower() for t in toks]
        stop = [w in stops or len(w) < 2 or w in BOUNDARY_WORDS or w.endswith("ly") for w in low]
        weak_end = [s_ or w.endswith("ed") for s_, w in zip(stop, low)]
        # after a single word, any following word but a function word counts as modified ('impressive results')
        content = [not (w in function_words or len(w) < 2) for w in low]
        n_tok = len(low)
        for i in range(n_tok):
            if stop[i]:
                continue
            cue = i > 0 and (low[i - 1] in VERB_CUES or low[i - 1] in PREDICATE_CUES
                             or (low[i - 1] in GERUND_CUES and low[i].endswith("ing")))
            tail = i > 0 and not stop[i - 1]
            for n in range(1, max_n + 1):
                j = i + n - 1
                if j >= n_tok:
                    break
                if not (weak_end[j] if n > 1 else stop[j]):
                    p = " ".join(low[i : j + 1])
                    found.add(p)
                    ctx.occurrences[p] += 1
                    if j + 1 < n_tok and (not stop[j + 1] if n > 1 else content[j + 1]):
                        ctx.modifier[p] += 1
                    if cue or (n == 1 and low[i].endswith("s") and j + 1 < n_tok and low[j + 1] in OBJECT_CUES):
                        ctx.after_verb_cue[p] += 1
                    if tail:
                        ctx.tail[p] += 1
    return found


def build_vocabulary(
    texts: Sequence[str], *, max_n: int = 3, min_df: int = 3, max_df: float = 0.25, max_phrases: int = 40000,
    sample: int | None = VOCABULARY_SAMPLE, seed: int = 0, progress: ProgressCallback | None = None,
) -> PhraseVocabulary:
    """The phrase vocabulary of a corpus (see the module docstring): at most `max_phrases`, the most frequent,
    counted on at most `sample` documents (None: all)."""
    import scipy.sparse as sp

    stops = stop_words()
    function_words = ENGLISH_STOP_WORDS
    case_counts: Counter = Counter()
    ctx = _Context(Counter(), Counter(), Counter(), Counter())
    n_corpus = len(texts)
    sampled = None
    if sample is not None and n_corpus > sample:
        sampled = np.sort(np.random.default_rng([seed, 3]).choice(n_corpus, sample, replace=False))
        min_df = max(1, int(round(min_df * sample / n_corpus))) if min_df > 1 else min_df
    picked = texts if sampled is None else [texts[int(r)] for r in sampled]
    doc_phrases = [_phrases_of(str(t), stops, function_words, case_counts, max_n, ctx)
                   for t in track(picked, progress, "phrases", unit="doc")]
    df_counter: Counter = Counter()
    for s in doc_phrases:
        df_counter.update(s)
    n_docs = len(picked)
    keep = [p for p, c in df_counter.items() if c >= min_df and c <= max_df * n_docs]
    if len(keep) > max_phrases:
        keep = sorted(keep, key=lambda p: (-df_counter[p], p))[:max_phrases]
    keep = sorted(keep)
    index = {p: i for i, p in enumerate(keep)}
    rows, cols = [], []
    for d, s in enumerate(doc_phrases):
        ids = [index[p] for p in s if p in index]
        rows.extend([d] * len(ids))
        cols.extend(ids)
    mat = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_docs, len(keep)))
    df = np.asarray([df_counter[p] for p in keep], dtype=np.float64) * (n_corpus / max(n_docs, 1))
    mixed = _mixed_case_forms(case_counts)
    display = [_display(p, case_counts, mixed) for p in keep]
    standalone = np.asarray([_standalone(p, shown, ctx) for p, shown in zip(keep, display)], dtype=bool)
    occ = np.asarray([max(ctx.occurrences[p], 1) for p in keep], dtype=np.float64)
    verb = np.asarray([ctx.after_verb_cue[p] for p in keep]) / occ <= 0.3
    can_start = verb & (np.asarray([ctx.tail[p] for p in keep]) / occ <= 0.8)
    can_end = verb & (np.asarray([ctx.modifier[p] for p in keep]) / occ <= 0.6)
    return PhraseVocabulary(mat, keep, df, display, standalone, can_start, can_end, sample=sampled,
                            texts=texts if sampled is not None else None,
                            n_corpus=n_corpus)


def _standalone(phrase: str, display: str, ctx: _Context) -> bool:
    """Whether a phrase reads as a name for something on its own: not mostly a modifier of a following word
    ('theoretical', 'Markov chain Monte') or the end of a longer one ('answering'), not mostly a verb ('penalize'), no one- or two-letter word
    fragments except acronyms ('VC', 'AI'), and no inner 'and'/'or' (labels join parts with 'and' themselves)."""
    n = max(ctx.occurrences[phrase], 1)
    if ctx.modifier[phrase] / n > 0.6 or ctx.tail[phrase] / n > 0.8 or ctx.after_verb_cue[phrase] / n > 0.3:
        return False
    words = phrase.split()
    if any(w in ("and", "or") for w in words) or (len(words) == 1 and words[0].endswith("ed")):
        return False
    return all(len(w) >= 3 or (s.isupper() and len(s) >= 2) for w, s in zip(words, display.split()))


def _display(phrase: str, case_counts: Counter, mixed: dict[str, tuple[str, int]]) -> str:
    """Restore acronyms (LSTM, BERT), names that are almost never written in lower case (Bayesian, Markov) and
    mixed-case names written that way more often than in lower case (ResNeXt, YOLOv3)."""
    words = []
    for w in phrase.split(" "):
        n_low, n_up, n_cap = case_counts.get(w, 0), case_counts.get(w.upper(), 0), case_counts.get(w.capitalize(), 0)
        form, n_mixed = mixed.get(w, (w, 0))
        if w.upper() != w and n_up > n_low + n_cap:
            words.append(w.upper())
        elif n_mixed >= 2 and n_mixed > n_low + n_up:
            words.append(form)
        elif w.capitalize() != w and n_cap >= 3 and n_low <= 0.05 * n_cap:
            words.append(w.capitalize())
        else:
            words.append(w)
    return " ".join(words)


def _mixed_case_forms(case_counts: Counter) -> dict[str, tuple[str, int]]:
    """Per lower-case word, its most frequent mixed-case spelling (neither lower, upper nor capitalised) and count."""
    best: dict[str, tuple[str, int]] = {}
    for form, n in case_counts.items():
        low = form.lower()
        if form in (low, form.upper(), low.capitalize()):
            continue
        if n > best.get(low, ("", 0))[1]:
            best[low] = (form, n)
    return best


# Words a title chunk may hold inside but neither start nor end with ("equilibria with flow in tokamaks").
_INNER = frozenset("of in for with on to from by under via over at as between a an the".split())


def title_chunks(title: str, vocab: PhraseVocabulary | None = None, *, max_words: int = 6, min_words: int = 2
                 ) -> list[str]:
    """Candidate names from a title: its runs of `min_words` to `max_words` words that do not cross punctuation,
    start and end with content words and hold inside only content words, articles and a few prepositions
    ("Dirac equation in curved spacetime", "graph neural networks"); with a `vocab`, no run starts with a word
    that is mostly the tail of a longer name or ends with one that mostly modifies the next ("Image" of "Image
    Recognition"), and words take the vocabulary's display form (lower case but for acronyms and names).
    Longest first."""
    stops = stop_words()
    out: dict[str, None] = {}
    for chunk in _SPLIT.split(_clean_text(title)):
        toks = _TOKEN.findall(chunk)
        low = [t.lower() for t in toks]
        ids = [vocab.index(w) if vocab is not None else None for w in low]
        edge = [w not in stops and w not in BOUNDARY_WORDS and len(w) >= 2 and not w.endswith("ly") for w in low]
        inner = [e or w in _INNER for e, w in zip(edge, low)]
        start = [e and (i is None or vocab.can_start is None or bool(vocab.can_start[i])) for e, i in zip(edge, ids)]
        end = [e and not w.endswith("ed") and (i is None or vocab.can_end is None or bool(vocab.can_end[i]))
               for e, w, i in zip(edge, low, ids)]
        shown = [vocab.display[i] if i is not None else t for t, i in zip(toks, ids)] if vocab is not None else toks
        for i in range(len(toks)):
            if not start[i]:
                continue
            for j in range(i + min_words - 1, min(len(toks), i + max_words)):
                if not all(inner[i : j + 1]):
                    break
                if end[j]:
                    out[" ".join(shown[i : j + 1])] = None
    return sorted(out, key=lambda c: (-len(c.split()), c))
