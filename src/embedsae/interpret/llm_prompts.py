"""Prompts and answer parsers of the LLM labeller and detection scorer, in two profiles.

- "full": the seed's prompts, for capable models behind an endpoint: top and non-activating documents,
  step-by-step reasoning and the label on a final `FINAL:` line; detection rates all held-out documents in
  one prompt (`<number>: <rating>` lines).
- "small": for small local models (a few hundred million parameters), which neither reason reliably nor keep
  a format over many lines: a short prompt with a few short documents and a one-line answer, read by a
  lenient parser (a `FINAL:` line if there is one, else the first line, with quotes, "Label:" prefixes and
  trailing chatter removed); detection asks one yes/no question per document (a local model's rating is
  10 x its probability of answering "yes").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


class MalformedAnswer(Exception):
    """The model answered, but not in the format asked for."""


SYSTEM = ("You are a meticulous researcher interpreting one feature of a sparse autoencoder trained on text "
          "embeddings. A feature fires on documents that share a concept.")
SMALL_SYSTEM = "You are a helpful assistant. Answer briefly."
MAX_LABEL_WORDS = 8
"""Longest label kept from a full-profile answer, in words."""
SMALL_LABEL_WORDS = 6
"""Longest label kept from a small-profile answer, in words."""


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------- full profile
def label_prompt(texts_pos: Sequence[str], acts: Sequence[float], texts_neg: Sequence[str], chars: int) -> list[dict]:
    """The seed's labelling prompt: top examples with activations, some non-activating ones, step-by-step
    reasoning, and the label on a final `FINAL:` line."""
    lines = ["Documents on which the feature fires, strongest first (activation in brackets):"]
    lines += [f"{i + 1}. [{a:.3f}] {_clip(t, chars)}" for i, (t, a) in enumerate(zip(texts_pos, acts))]
    if texts_neg:
        lines.append("\nDocuments on which it does NOT fire:")
        lines += [f"- {_clip(t, chars)}" for t in texts_neg]
    lines.append(
        "\nThink step by step about what the firing documents share that the others lack. Then end your answer "
        "with one line of the form\nFINAL: <label>\nwhere <label> is a short phrase of 2 to 6 words naming the "
        "concept (no quotes).")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


_FINAL = re.compile(r"^\s*\**\s*FINAL\s*\**\s*:\s*\**\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _clean(label: str, max_words: int) -> str:
    words = label.strip().strip("*\"'`“”‘’").rstrip(".").strip().strip("*\"'`“”‘’").split()
    return " ".join(words[:max_words])


def parse_label(answer: str) -> str:
    """The label on the answer's last `FINAL:` line, cleaned; MalformedAnswer when there is none."""
    found = _FINAL.findall(answer or "")
    if not found:
        raise MalformedAnswer("no 'FINAL: <label>' line in the answer")
    label = _clean(found[-1], MAX_LABEL_WORDS)
    if not label:
        raise MalformedAnswer("empty label after 'FINAL:'")
    return label


def detection_prompt(label: str, texts: Sequence[str], chars: int) -> list[dict]:
    """The seed's detection prompt: rate, for each document, how well it matches the label (0–10)."""
    lines = [f"Feature label: {label}", "", "Rate each document from 0 (unrelated) to 10 (clearly about this "
             "concept). Answer with exactly one line per document in the form `<number>: <rating>`.", ""]
    lines += [f"{i + 1}. {_clip(t, chars)}" for i, t in enumerate(texts)]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


_RATING = re.compile(r"^\s*(?:document\s*)?(\d+)\s*[:.)\-]\s*(\d+(?:\.\d+)?)", re.IGNORECASE | re.MULTILINE)


def parse_ratings(answer: str, n: int) -> np.ndarray:
    """Ratings 0–10 for documents 1..n; MalformedAnswer unless every document got one."""
    got: dict[int, float] = {}
    for num, rating in _RATING.findall(answer or ""):
        got.setdefault(int(num), float(rating))
    missing = [i for i in range(1, n + 1) if i not in got]
    if missing:
        raise MalformedAnswer(f"no rating for documents {missing[:5]}")
    return np.clip(np.asarray([got[i] for i in range(1, n + 1)]), 0, 10)


# ---------------------------------------------------------------------------- small profile
def small_label_prompt(texts_pos: Sequence[str], chars: int) -> list[dict]:
    """A short labelling prompt for small models: a few clipped firing documents, a one-line answer."""
    lines = ["These texts share one topic:"]
    lines += [f"- {_clip(t, chars)}" for t in texts_pos]
    lines.append("\nWhat topic do they share? Reply with only a short label of 2 to 5 words.")
    return [{"role": "system", "content": SMALL_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


_LEAD = [re.compile(p, re.IGNORECASE) for p in (
    r"^(?:answer|label|topic|title)\s*:\s*",  # "Label: X"
    # "The topic they share is X", "They share a topic called X", "The shared theme of these texts is: X"
    r"^.{0,50}?\b(?:topic|theme|concept|label|subject)s?\b.{0,40}?(?:\bis\b|\bare\b|\bcalled\b|\bnamed\b|:)\s*:?\s*",
    # "These texts discuss X", "This document is about X", "They all share X"
    r"^(?:this|these|the|all|they)\s+(?:(?:documents?|texts?|abstracts?|papers?)\s+)?(?:all\s+)?"
    r"(?:discuss(?:es)?|describes?|is about|are about|shares?|covers?|focus(?:es)? on|deals? with)\s+",
    r"^(?:focused on|about|on|(?:the\s+)?(?:topic|theme|subject)\s+of)\s+",
    r"^(?:the|an?)\s+(?=\S+\s+\S)",  # a leading article, unless the label is one word
)]
_QUOTED = re.compile(r"[\"“]([^\"“”]{3,80})[\"”]")
_BULLET = re.compile(r"^\s*(?:[-*•#>]+|\d+[.)])\s*")


def parse_small_label(answer: str) -> str:
    """A label from a small model's answer: the last `FINAL:` line if there is one, otherwise the first
    non-empty line; from it a quoted phrase if there is one, otherwise the line without bullets, "Label:" or
    "The topic they share is" lead-ins and anything after its first sentence; cut to `SMALL_LABEL_WORDS`
    words. MalformedAnswer when no word is left."""
    found = _FINAL.findall(answer or "")
    if found:
        line = found[-1]
    else:
        lines = [ln for ln in (answer or "").splitlines() if ln.strip(" \t*#-•\"'`")]
        if not lines:
            raise MalformedAnswer("empty answer")
        line = lines[0]
    line = _BULLET.sub("", line.replace("**", "")).strip()
    quoted = _QUOTED.search(line)
    if quoted:
        line = quoted.group(1)
    else:
        for lead in _LEAD:
            line = lead.sub("", line.strip().strip("\"'`“”‘’")).strip()
        line = re.split(r"(?<=[a-z0-9)])[.;!?](?:\s|$)", line, maxsplit=1)[0]  # the first sentence only
    label = _clean(line, SMALL_LABEL_WORDS)
    if not re.search(r"[A-Za-z]", label):
        raise MalformedAnswer(f"no label in the answer {answer[:80]!r}")
    return label


def small_detection_prompt(label: str, text: str, chars: int) -> list[dict]:
    """A one-document detection prompt for small models: is this text about the label? (yes or no)"""
    user = f"Topic: {label}\nText: {_clip(text, chars)}\n\nIs the text about the topic? Answer yes or no."
    return [{"role": "system", "content": SMALL_SYSTEM}, {"role": "user", "content": user}]


_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*/\s*10)?")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_small_rating(answer: str) -> float:
    """A rating 0–10 from a small model's answer: its first number (clipped), or 10 for a first word "yes" and
    0 for "no"; MalformedAnswer when there is neither."""
    m = _NUMBER.search(answer or "")
    if m is not None:
        return float(min(max(float(m.group(1)), 0.0), 10.0))
    m = _YES_NO.search(answer or "")
    if m is None:
        raise MalformedAnswer(f"no rating in the answer {answer[:80]!r}")
    return 10.0 if m.group(1).lower() == "yes" else 0.0
