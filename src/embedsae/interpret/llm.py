"""The LLM labeller and detection scorer, over any OpenAI-compatible chat-completions endpoint
(OpenAI, vLLM, Ollama, llama.cpp server).

Requests run concurrently in threads; transient failures (connection errors, timeouts, HTTP 429/5xx,
unreadable bodies) are retried with exponential backoff; responses are cached by a hash of the request in
the feature store, so a repeated run sends nothing twice; tokens are counted from the `usage` field.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import EmbedSAEError, InputError
from ..settings import Settings, check
from .scorers import f1_score, pearson

DEFAULT_KEY_ENV = "EMBEDSAE_LLM_API_KEY"


class LLMEndpointError(EmbedSAEError):
    """The chat endpoint cannot be used (down, refusing the key, unknown model, or failing after retries)."""


class MalformedAnswer(Exception):
    """The model answered, but not in the format asked for."""


@dataclass
class LLMConfig(Settings):
    """Where and how to call the chat endpoint."""

    base_url: str
    """Base URL of the OpenAI-compatible API, e.g. http://localhost:11434/v1 (Ollama) or https://api.openai.com/v1."""
    model: str
    """Model name the endpoint knows."""
    api_key_env: str = DEFAULT_KEY_ENV
    """Environment variable holding the API key (OPENAI_API_KEY is used when this one is unset)."""
    concurrency: int = 4
    """Requests in flight at once."""
    timeout: float = 60.0
    """Seconds to wait for one response."""
    retries: int = 3
    """Further attempts after a transient failure."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time (with jitter)."""
    temperature: float = 0.0
    """Sampling temperature (0: the most likely answer, repeatable and cacheable)."""
    max_tokens: int = 512
    """Longest answer, in tokens."""
    n_examples: int = 10
    """Top activating documents shown in the labelling prompt."""
    n_negatives: int = 5
    """Non-activating documents shown in the labelling prompt."""
    n_detect: int = 10
    """Held-out activating (and as many non-activating) documents per detection prompt."""
    chars: int = 500
    """Characters of each document shown."""

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or os.environ.get("OPENAI_API_KEY")

    def validate(self) -> None:
        super().validate()
        check(bool(re.match(r"^https?://", self.base_url or "")),
              f"the LLM endpoint's base_url must start with http:// or https://, got '{self.base_url}' "
              "(for example http://localhost:11434/v1)")
        check(bool(self.model), "the LLM endpoint needs a model name (setting 'model')")
        for name in ("concurrency", "max_tokens", "n_examples", "n_detect", "chars"):
            check(getattr(self, name) >= 1, f"LLM setting '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("timeout", "retries", "backoff", "temperature", "n_negatives"):
            check(getattr(self, name) >= 0, f"LLM setting '{name}' must not be negative, got {getattr(self, name)}")


@dataclass
class Usage:
    """Token accounting of a run."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ChatClient:
    """Sends chat requests to the endpoint; caches responses in a FeatureStore when one is given."""

    cfg: LLMConfig
    store: object | None = None
    usage: Usage = field(default_factory=Usage)

    def _key(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                           "max_tokens": self.cfg.max_tokens}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def _post(self, messages: list[dict]) -> tuple[str, int, int, int]:
        """One request with retries; returns (content, prompt tokens, completion tokens, retries used)."""
        cfg = self.cfg
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        payload = json.dumps({"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                              "max_tokens": cfg.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if cfg.api_key():
            headers["Authorization"] = f"Bearer {cfg.api_key()}"
        last = ""
        for attempt in range(cfg.retries + 1):
            if attempt:
                time.sleep(cfg.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:
                    body = resp.read()
                data = json.loads(body)
                content = data["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise ValueError("message content is not text")
                usage = data.get("usage") or {}
                return content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), attempt
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code in (401, 403):
                    raise LLMEndpointError(
                        f"{url} refused the request (HTTP {exc.code}: {detail}); put a valid API key in "
                        f"${cfg.api_key_env}") from exc
                if exc.code in (400, 404):
                    raise LLMEndpointError(
                        f"{url} answered HTTP {exc.code} ({detail}); check the endpoint's base URL (it should end in /v1) "
                        f"and that model '{cfg.model}' exists there") from exc
                last = f"HTTP {exc.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if _unreachable(reason):
                    raise LLMEndpointError(f"cannot connect to the chat endpoint {url} ({reason}); check that it is "
                                           "running and reachable") from exc
                last = f"timed out after {cfg.timeout:g}s" if isinstance(reason, TimeoutError) else str(reason)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last = f"unreadable response ({exc})"
        raise LLMEndpointError(
            f"the chat endpoint {url} failed {cfg.retries + 1} times (last: {last}); check that it is running "
            "and reachable, then run the same command again: finished features are kept")

    def check(self) -> None:
        """Fail at once when the endpoint cannot be reached (one quick request before a batch of many)."""
        url = self.cfg.base_url.rstrip("/") + "/models"
        headers = {"Authorization": f"Bearer {self.cfg.api_key()}"} if self.cfg.api_key() else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=min(5.0, self.cfg.timeout)):
                pass
        except urllib.error.HTTPError:
            return  # it answered: some servers have no /models; the chat requests will tell
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LLMEndpointError(f"cannot reach the chat endpoint {self.cfg.base_url} ({reason}); check that it is "
                                   "running and reachable") from exc

    def complete_many(
        self, conversations: Sequence[list[dict]], validate: Callable[[str], object] | None = None
    ) -> list[str | Exception]:
        """Answers to many conversations (cached ones first, the rest concurrently); failures as exceptions.

        Only answers that pass `validate` (which raises MalformedAnswer otherwise) are cached.
        """
        out: list[str | Exception | None] = [None] * len(conversations)
        keys = [self._key(m) for m in conversations]
        todo = []
        for i, key in enumerate(keys):
            hit = self.store.cache_get(key) if self.store is not None else None
            if hit is not None:
                out[i] = hit[0]
                self.usage.cache_hits += 1
            else:
                todo.append(i)
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
                futures = {i: pool.submit(self._post, conversations[i]) for i in todo}
                for i, fut in futures.items():
                    try:
                        content, pt, ct, retries = fut.result()
                    except Exception as exc:  # kept per request; the caller decides
                        out[i] = exc
                        continue
                    self.usage.requests += 1
                    self.usage.prompt_tokens += pt
                    self.usage.completion_tokens += ct
                    self.usage.retries += retries
                    if validate is not None:
                        try:
                            validate(content)
                        except MalformedAnswer as exc:
                            out[i] = exc
                            continue
                    out[i] = content
                    if self.store is not None:
                        self.store.cache_put(keys[i], content, pt, ct)
        return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------- prompts
SYSTEM = ("You are a meticulous researcher interpreting one feature of a sparse autoencoder trained on text "
          "embeddings. A feature fires on documents that share a concept.")


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


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


def parse_label(answer: str) -> str:
    """The label on the answer's last `FINAL:` line, cleaned; MalformedAnswer when there is none."""
    found = _FINAL.findall(answer or "")
    if not found:
        raise MalformedAnswer("no 'FINAL: <label>' line in the answer")
    label = found[-1].strip().strip("*\"'`“”").rstrip(".").strip()
    words = label.split()
    if not words:
        raise MalformedAnswer("empty label after 'FINAL:'")
    return " ".join(words[:8])


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


def detection_documents(ex, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out documents for detection (up to n activating across quantiles, n random negatives), shuffled;
    returns (doc rows, true activations with 0 for negatives)."""
    pos = np.arange(len(ex.heldout_pos))
    if len(pos) > n:
        pos = np.unique(np.linspace(0, len(pos) - 1, n).round().astype(int))
    docs = np.concatenate([ex.heldout_pos[pos], ex.heldout_neg[:n]])
    acts = np.concatenate([ex.heldout_pos_act[pos], np.zeros(min(n, len(ex.heldout_neg)))])
    order = np.random.default_rng([seed, ex.feature, 2]).permutation(len(docs))
    return docs[order], acts[order]


def detection_scores(ratings: np.ndarray, acts: np.ndarray) -> dict[str, float | None]:
    """Pearson r between ratings and activations, and F1 of 'rating >= 5' as a detector of firing."""
    _, _, f1 = f1_score(ratings >= 5, acts > 0)
    return {"llm_pearson": pearson(ratings, acts), "llm_f1": f1}


# ---------------------------------------------------------------------------- labeller and scorer of a run
class LLMLabeller:
    """The LLM labeller: the seed's prompt with top and non-activating documents, one request per feature."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.name = f"llm:{client.cfg.model}"

    def label_batch(self, examples: Sequence, context) -> list:
        """Labels of a batch; failures of single features are recorded, an endpoint failure stops the run
        (`LabellingStopped`) after the features that did get an answer."""
        from .labellers import LabellingStopped

        cfg, texts = self.client.cfg, context.texts
        prompts = [label_prompt([texts[d] for d in ex.top[: cfg.n_examples]], ex.top_act[: cfg.n_examples],
                                [texts[d] for d in ex.shown_neg[: cfg.n_negatives]], cfg.chars) for ex in examples]
        made: list = []
        error = None
        for ans in self.client.complete_many(prompts, validate=parse_label):
            if isinstance(ans, LLMEndpointError):
                error = error or ans
                made.append(None)  # not attempted to the end: left for the next run
            elif isinstance(ans, MalformedAnswer):
                made.append((None, {"error": f"malformed answer: {ans}"}))
            elif isinstance(ans, Exception):
                made.append((None, {"error": str(ans)}))
            else:
                made.append((parse_label(ans), {"answer": ans[-2000:]}))  # validated: parses
        if error is not None:
            raise LabellingStopped(made, error)
        return made


def make_llm_labeller(context) -> LLMLabeller:
    """The registered factory of the "llm" labeller."""
    if context.chat is None:
        raise InputError("the LLM labeller needs an endpoint: give an LLMConfig with the base_url and model of an "
                         "OpenAI-compatible chat API")
    return LLMLabeller(context.chat)


def llm_detection(client: ChatClient, cfg: LLMConfig, exs: Sequence, labels: dict, texts: Sequence[str]
                  ) -> tuple[dict[int, dict], Exception | None]:
    """LLM detection scores (Pearson, F1) for labelled features of a batch, and the endpoint error that stopped
    it, if any."""
    docs = [detection_documents(ex, cfg.n_detect) for ex in exs]
    prompts = [detection_prompt(labels[ex.feature][0], [texts[d] for d in d_], cfg.chars)
               for ex, (d_, _) in zip(exs, docs)]
    answers = client.complete_many(prompts, validate=lambda a: parse_ratings(a, 1))
    out: dict[int, dict] = {}
    error = None
    for ex, (d_, acts), ans in zip(exs, docs, answers):
        if isinstance(ans, LLMEndpointError):
            error = error or ans
            continue
        if isinstance(ans, Exception):
            continue
        try:
            out[ex.feature] = detection_scores(parse_ratings(ans, len(d_)), acts)
        except MalformedAnswer:
            continue
    return out, error


def _unreachable(reason: object) -> bool:
    """A failure no retry will mend soon: nothing listens there, or the host name does not resolve."""
    import socket

    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))
