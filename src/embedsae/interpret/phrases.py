"""The phrase vocabulary of a corpus, the raw material of the offline labeller (`keywords`).

Phrases are 1–3-word n-grams that neither start nor end with a stop word and do not cross punctuation
("state of the art", "graph neural networks"), counted once per document. Each phrase carries its display form
(acronyms and proper names restored: "LSTM", "Bayesian") and whether it can stand alone as a label part: not
mostly a modifier of the next word ("theoretical", "Markov chain Monte") or the tail of a longer name
("answering" of "question answering"), not mostly a verb or a predicate adjective ("penalize", "is flexible").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..progress import ProgressCallback, track

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
crucial certain superior improving closing spent equips produces provides enables achieving
investigate investigated introduce introduced introduces provide provides provided obtain obtained achieve
achieves achieved including include includes given make makes made way ways use able recent recently
important key main large small high low good better best specific particular general specifically
approach-based previous prior et al i e etc eg ie whose whether either neither wide widely
http https www com org html github url
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
    standalone: np.ndarray
    """Per phrase, whether it can stand alone as (part of) a label (see `_standalone`)."""

    @property
    def n_docs(self) -> int:
        return self.matrix.shape[0]


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
    progress: ProgressCallback | None = None,
) -> PhraseVocabulary:
    """The phrase vocabulary of a corpus (see the module docstring): at most `max_phrases`, the most frequent."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stops = stop_words()
    function_words = frozenset(ENGLISH_STOP_WORDS)
    case_counts: Counter = Counter()
    ctx = _Context(Counter(), Counter(), Counter(), Counter())
    doc_phrases = [_phrases_of(str(t), stops, function_words, case_counts, max_n, ctx)
                   for t in track(texts, progress, "phrases", unit="doc")]
    df_counter: Counter = Counter()
    for s in doc_phrases:
        df_counter.update(s)
    n_docs = len(texts)
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
    df = np.asarray([df_counter[p] for p in keep], dtype=np.float64)
    mixed = _mixed_case_forms(case_counts)
    display = [_display(p, case_counts, mixed) for p in keep]
    standalone = np.asarray([_standalone(p, shown, ctx) for p, shown in zip(keep, display)], dtype=bool)
    return PhraseVocabulary(mat, keep, df, display, standalone)


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
