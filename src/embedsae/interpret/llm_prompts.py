"""Prompts and answer parsers of the LLM labeller and detection scorer, in two profiles.

- "full": for capable models behind an endpoint: top documents and, for contrast, documents it does not fire
  on (each the nearest non-firing document of a firing one), step-by-step reasoning, then a `NAME:` line (one
  phrase of at most six words) and a `DESCRIPTION:` line (one sentence of at most 30 words: what the firing
  documents share and what sets them apart). The parser (`parse_name_description`) also reads what larger models
  return instead: JSON (bare or in a code fence), "**Name:**" / "Label:" / "FINAL:" lines, extra prose around
  them. Detection rates all held-out documents in one prompt (`<number>: <rating>` lines).
- "small": for small local models (a few hundred million parameters), which neither reason reliably nor keep
  a format over many lines: a short prompt with a few short documents and a short answer, read by a lenient
  parser (`parse_small_answer`: a "Name:" or `FINAL:` line if there is one, else the first line, with quotes,
  "Label:" prefixes and "The topic they share is" lead-ins removed; a "Description:" line or the next
  sentence of the answer as the description); detection asks one yes/no question per document (a local
  model's rating is 10 x its probability of answering "yes").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np


class MalformedAnswer(Exception):
    """The model answered, but not in the format asked for."""


SYSTEM = ("You are a meticulous researcher interpreting one feature of a sparse autoencoder trained on text "
          "embeddings. A feature fires on documents that share a concept.")
SMALL_SYSTEM = "You are a helpful assistant. Answer briefly."
MAX_LABEL_WORDS = 6
"""Longest name kept from a full-profile answer, in words."""
SMALL_LABEL_WORDS = 6
"""Longest name kept from a small-profile answer, in words."""
MAX_DESCRIPTION_WORDS = 30
"""Longest description kept, in words."""


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------- full profile
def label_prompt(texts_pos: Sequence[str], acts: Sequence[float], texts_neg: Sequence[str], chars: int) -> list[dict]:
    """The labelling prompt: top examples with activations, the nearest documents it does not fire on,
    step-by-step reasoning, then a `NAME:` and a `DESCRIPTION:` line."""
    lines = ["Documents on which the feature fires, strongest first (activation in brackets):"]
    lines += [f"{i + 1}. [{a:.3f}] {_clip(t, chars)}" for i, (t, a) in enumerate(zip(texts_pos, acts))]
    if texts_neg:
        lines.append("\nDocuments on which it does NOT fire, though each is close to one that it fires on:")
        lines += [f"- {_clip(t, chars)}" for t in texts_neg]
    lines.append(
        "\nThink step by step about what the firing documents share that the others lack. Then end your answer "
        "with two lines of the form\nNAME: <name>\nDESCRIPTION: <description>\nwhere <name> is one phrase of 2 "
        "to 6 words naming the concept (not a list, no quotes) and <description> is one sentence of at most 30 "
        "words saying what the firing documents share and what sets them apart from the others.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


_FINAL = re.compile(r"^\s*\**\s*FINAL\s*\**\s*:\s*\**\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_KEY_LINE = re.compile(r"^[\s>*_#-]*(?:\d+[.)]\s*)?\**\s*(final(?:\s+answer)?|name|label|title|feature name|"
                       r"description|explanation|summary)\s*\**\s*[:：]\s*\**(.*?)$", re.IGNORECASE)
_NAME_KEYS = ("final", "final answer", "name", "label", "title", "feature name")
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```|(\{[^{}]*\})", re.DOTALL | re.IGNORECASE)


def _clean(label: str, max_words: int) -> str:
    words = label.strip().strip("*\"'`“”‘’").rstrip(".").strip().strip("*\"'`“”‘’").split()
    return " ".join(words[:max_words])


def _name(text: str) -> str:
    """A name from a model's text: markdown and quotes removed, a list cut to its first item, at most
    MAX_LABEL_WORDS words."""
    text = text.replace("**", "").replace("__", "").strip()
    text = re.split(r"\s*[,;]\s*|\s+[-–—]\s+|\s*\(", text, maxsplit=1)[0]
    return _clean(text, MAX_LABEL_WORDS)


def _description(text: str | None) -> str | None:
    """A description from a model's text: one line, markdown and quotes removed, at most MAX_DESCRIPTION_WORDS words
    (None when nothing is left)."""
    if not text:
        return None
    words = text.replace("**", "").replace("__", "").strip().strip("\"'`“”").split()
    if not words:
        return None
    out = " ".join(words[:MAX_DESCRIPTION_WORDS])
    return out if re.search(r"[A-Za-z]", out) else None


def _from_json(answer: str) -> tuple[str, str | None] | None:
    for m in _JSON_BLOCK.finditer(answer):
        try:
            obj = json.loads(m.group(1) or m.group(2))
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        low = {str(k).lower(): v for k, v in obj.items()}
        name = next((low[k] for k in ("name", "label", "title", "feature_name") if isinstance(low.get(k), str)), None)
        if name and _name(name):
            desc = next((low[k] for k in ("description", "explanation", "summary") if isinstance(low.get(k), str)),
                        None)
            return _name(name), _description(desc)
    return None


def parse_name_description(answer: str) -> tuple[str, str | None]:
    """(name, description) from a full-profile answer: from a JSON object with "name" (or "label") and
    "description" keys, bare or in a code fence; else from the last `NAME:` (or "FINAL:", "Label:", "**Name:**")
    line and the last `DESCRIPTION:` line, a description running on over the lines below it up to an empty
    line. The description is None when there is none; MalformedAnswer when there is no name."""
    answer = answer or ""
    got = _from_json(answer)
    if got is not None:
        return got
    name = desc = None
    lines = answer.splitlines()
    for i, line in enumerate(lines):
        m = _KEY_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key in _NAME_KEYS:
            name = value or name
        else:
            more = []
            for nxt in lines[i + 1:]:
                if not nxt.strip() or _KEY_LINE.match(nxt):
                    break
                more.append(nxt.strip())
            desc = " ".join([value, *more]).strip() or desc
    if not name or not _name(name):
        raise MalformedAnswer("no 'NAME: <name>' line in the answer")
    return _name(name), _description(desc)


def parse_label(answer: str) -> str:
    """The name of a full-profile answer (see `parse_name_description`)."""
    return parse_name_description(answer)[0]


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


def small_description_prompt(name: str, texts_pos: Sequence[str], chars: int) -> list[dict]:
    """The small profile's second prompt: given the name it gave, one sentence on what the texts share."""
    lines = [f'These texts share the topic "{name}":']
    lines += [f"- {_clip(t, chars)}" for t in texts_pos]
    lines.append("\nIn one sentence, what do these texts have in common?")
    return [{"role": "system", "content": SMALL_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def parse_small_description(answer: str) -> str | None:
    """A description from a small model's answer: the first sentence of its `DESCRIPTION:` line, or else of its
    first non-empty line (the first item of a list), markdown and bullets removed, at most MAX_DESCRIPTION_WORDS
    words; None when no words are left."""
    text = answer or ""
    lines = [ln for ln in text.splitlines() if ln.strip(" \t*#-•\"'`")]
    m = next((m for m in map(_KEY_LINE.match, lines) if m and m.group(1).lower() not in _NAME_KEYS), None)
    text = m.group(2) if m is not None else (lines[0] if lines else "")
    text = _BULLET.sub("", text.replace("**", "")).strip()
    text = re.split(r"(?<=[a-z0-9)\"”])[.!?](?:\s|$)", text, maxsplit=1)[0].strip()
    desc = _description(text)
    if desc is None:
        return None
    return desc if desc.endswith(("…", ".", "!", "?")) else desc + "."


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
