"""The LLM labeller and detection scorer, over an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM,
Ollama, llama.cpp server) or a local model run in-process with `transformers` (`llm_local`).

Both backends are chat clients with one interface (`complete_many` for answers, `rate_many` for yes/no
ratings): the labeller and the scorer do not know which one answers. Endpoint requests run concurrently in threads; transient failures
(connection errors, timeouts, HTTP 429/5xx, unreadable bodies) are retried with exponential backoff. Answers
are cached by a hash of the request in the feature store, so a repeated run asks nothing twice; tokens are
counted. Prompts and parsers come in two profiles (`llm_prompts`): "full" for capable models, "small" for
small local ones.
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import EmbedSAEError, InputError
from ..progress import ProgressCallback, Tracker
from ..settings import Settings, check
from .llm_prompts import (
    MalformedAnswer,
    detection_prompt,
    label_prompt,
    parse_label,
    parse_name_description,
    parse_ratings,
    parse_small_description,
    parse_small_label,
    parse_small_rating,
    small_description_prompt,
    small_detection_prompt,
    small_label_prompt,
)
from .scorers import f1_score, pearson

__all__ = ["LLMConfig", "ChatClient", "LLMEndpointError", "MalformedAnswer", "LLMLabeller", "make_chat_client",
           "llm_detection", "label_prompt", "parse_label", "parse_name_description", "detection_prompt",
           "parse_ratings", "parse_small_label", "parse_small_description", "parse_small_rating"]

DEFAULT_KEY_ENV = "EMBEDSAE_LLM_API_KEY"


class LLMEndpointError(EmbedSAEError):
    """The chat model cannot be used (an endpoint down, refusing the key, unknown model, or failing after
    retries; a local model failing to generate)."""


@dataclass(frozen=True)
class Profile:
    """What a profile shows the model and how long it may answer."""

    small: bool
    n_examples: int
    n_negatives: int
    n_detect: int
    chars: int
    label_tokens: int
    detect_tokens: int
    description_tokens: int


@dataclass
class LLMConfig(Settings):
    """Which chat model labels and scores features: an endpoint (base_url and model) or a local model."""

    base_url: str | None = None
    """Base URL of an OpenAI-compatible API, e.g. http://localhost:11434/v1 (Ollama) or https://api.openai.com/v1; unset: a local model runs in-process."""
    model: str | None = None
    """Model name the endpoint knows; without base_url, the path of a local model (as local_model)."""
    local_model: str | None = None
    """Path of a local model run in-process with transformers, no server: a Hugging Face model folder or a .gguf file (needs embedsae[local-llm])."""
    profile: Literal["auto", "full", "small"] = "auto"
    """Prompts and parsing: full (reasoning, a FINAL: line, one detection prompt per feature), small (short prompts, one-line answers read leniently, a yes/no question per detection document), auto (small for local models, full for endpoints)."""
    api_key_env: str = DEFAULT_KEY_ENV
    """Environment variable holding the API key (OPENAI_API_KEY is used when this one is unset)."""
    concurrency: int = 4
    """Requests in flight at once (endpoint)."""
    timeout: float = 60.0
    """Seconds to wait for one response (endpoint)."""
    retries: int = 3
    """Further attempts after a transient failure (endpoint)."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time, with jitter (endpoint)."""
    temperature: float = 0.0
    """Sampling temperature of an endpoint (0: the most likely answer, repeatable and cacheable); local models always decode greedily."""
    max_tokens: int | None = None
    """Longest answer, in tokens (default 512; small profile: 24 for a name, 6 for a rating, 60 for a description)."""
    batch_size: int = 8
    """Prompts a local model answers together."""
    threads: int | None = None
    """CPU threads of a local model (default: torch's setting)."""
    n_examples: int | None = None
    """Top activating documents shown in the labelling prompt (default 10; small profile 5)."""
    n_negatives: int | None = None
    """Nearest non-activating documents of the top ones shown in the labelling prompt (default 5; small profile 0)."""
    n_detect: int | None = None
    """Held-out activating (and as many non-activating) documents rated per feature by the detection scorer (default 10; small profile 5)."""
    chars: int | None = None
    """Characters of each document shown (default 500; small profile 200)."""

    @property
    def local(self) -> bool:
        """Whether a local model runs in-process (no endpoint)."""
        return not self.base_url

    @property
    def local_path(self) -> Path:
        """The local model's path (a folder or a .gguf file)."""
        return Path(str(self.local_model or self.model)).expanduser()

    @property
    def name(self) -> str:
        """The model's name as stored with its labels: the endpoint's model name, or the local file or folder name."""
        return str(self.model) if not self.local else self.local_path.name

    def settings(self) -> Profile:
        """The profile in force, with the settings left unset filled from its defaults."""
        small = self.profile == "small" or (self.profile == "auto" and self.local)
        d = (5, 0, 5, 200, 24, 6) if small else (10, 5, 10, 500, 512, 512)

        def pick(value: int | None, default: int) -> int:
            return default if value is None else value

        return Profile(small, pick(self.n_examples, d[0]), pick(self.n_negatives, d[1]), pick(self.n_detect, d[2]),
                       pick(self.chars, d[3]), pick(self.max_tokens, d[4]), pick(self.max_tokens, d[5]),
                       pick(self.max_tokens, 60 if small else 512))

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or os.environ.get("OPENAI_API_KEY")

    def validate(self) -> None:
        super().validate()
        if self.base_url:
            check(not self.local_model,
                  f"give either an endpoint (base_url '{self.base_url}') or a local model (local_model "
                  f"'{self.local_model}'), not both")
            check(bool(re.match(r"^https?://", self.base_url)),
                  f"the LLM endpoint's base_url must start with http:// or https://, got '{self.base_url}' "
                  "(for example http://localhost:11434/v1)")
            check(bool(self.model), "the LLM endpoint needs a model name (setting 'model')")
        else:
            check(bool(self.local_model or self.model),
                  "the LLM needs either an endpoint (settings 'base_url' and 'model') or a local model (setting "
                  "'local_model': the path of a Hugging Face model folder or a .gguf file)")
        for name in ("concurrency", "max_tokens", "batch_size", "threads", "n_examples", "n_detect", "chars"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"LLM setting '{name}' must be at least 1, got {value}")
        for name in ("timeout", "retries", "backoff", "temperature", "n_negatives"):
            value = getattr(self, name)
            check(value is None or value >= 0, f"LLM setting '{name}' must not be negative, got {value}")


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


Answer = tuple[str, int, int, int]
"""A model's answer: (content, prompt tokens, completion tokens, retries used)."""


class CachingClient:
    """The chat-client interface: answers to conversations, cached in a FeatureStore when one is given.
    Backends implement `_answer_all`; `complete_many` and `rate_many` are what the labeller and scorer call."""

    model_id: str = ""
    """Identifies the model in cache keys."""

    def __init__(self, cfg: LLMConfig, store: object | None = None, progress: ProgressCallback | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.progress = progress
        self.usage = Usage()

    def check(self) -> None:
        """Fail at once when the model cannot be used (before a batch of many requests)."""

    def _answer_all(self, conversations: list[list[dict]], max_tokens: int,
                    done: Callable[[int, Answer | Exception], None]) -> None:
        """Answer every conversation, calling `done(i, answer or exception)` as each one finishes."""
        raise NotImplementedError

    def _key(self, messages: list[dict], extra: dict) -> str:
        body = json.dumps({"model": self.model_id, "messages": messages, "temperature": self.cfg.temperature, **extra},
                          sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def complete_many(
        self, conversations: Sequence[list[dict]], validate: Callable[[str], object] | None = None,
        max_tokens: int | None = None,
    ) -> list[str | Exception]:
        """Answers to many conversations (cached ones first); failures as exceptions, in order.

        Only answers that pass `validate` (which raises MalformedAnswer otherwise) are cached. `max_tokens`
        bounds each answer (default: the profile's bound for a label).
        """
        n = max_tokens or self.cfg.settings().label_tokens
        return self._cached(conversations, validate, {"max_tokens": n},
                            lambda convs, done: self._answer_all(convs, n, done))

    def rate_many(self, conversations: Sequence[list[dict]]) -> list[float | Exception]:
        """Ratings 0–10 of yes/no questions (10: yes), read from the answers (a number, or yes/no); failures as
        exceptions. A local model overrides this with the probability of "yes" (see `LocalChatClient`)."""
        answers = self.complete_many(conversations, validate=parse_small_rating,
                                     max_tokens=self.cfg.settings().detect_tokens)
        return [a if isinstance(a, Exception) else parse_small_rating(a) for a in answers]

    def _cached(self, conversations: Sequence[list[dict]], validate: Callable[[str], object] | None, extra: dict,
                answer_all: Callable[[list[list[dict]], Callable[[int, Answer | Exception], None]], None],
                ) -> list[str | Exception]:
        """Cached answers, and `answer_all` for the rest; valid new answers are cached and counted."""
        out: list[str | Exception | None] = [None] * len(conversations)
        keys = [self._key(m, extra) for m in conversations]
        todo = []
        for i, key in enumerate(keys):
            hit = self.store.cache_get(key) if self.store is not None else None
            if hit is not None:
                out[i] = hit[0]
                self.usage.cache_hits += 1
            else:
                todo.append(i)
        if not todo:
            return out  # type: ignore[return-value]
        tracker = Tracker(self.progress, "llm", len(todo), unit="prompt")

        def done(j: int, result: Answer | Exception) -> None:
            i = todo[j]
            tracker.update(1)
            if isinstance(result, Exception):  # kept per request; the caller decides
                out[i] = result
                return
            content, pt, ct, retries = result
            self.usage.requests += 1
            self.usage.prompt_tokens += pt
            self.usage.completion_tokens += ct
            self.usage.retries += retries
            if validate is not None:
                try:
                    validate(content)
                except MalformedAnswer as exc:
                    out[i] = exc
                    return
            out[i] = content
            if self.store is not None:
                self.store.cache_put(keys[i], content, pt, ct)

        try:
            answer_all([conversations[i] for i in todo], done)
        finally:
            tracker.close()
        return out  # type: ignore[return-value]


class ChatClient(CachingClient):
    """Sends chat requests to an OpenAI-compatible endpoint, concurrently, with retries."""

    def __init__(self, cfg: LLMConfig, store: object | None = None, progress: ProgressCallback | None = None) -> None:
        super().__init__(cfg, store, progress)
        self.model_id = str(cfg.model)

    def _answer_all(self, conversations: list[list[dict]], max_tokens: int,
                    done: Callable[[int, Answer | Exception], None]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            futures = {pool.submit(self._post, m, max_tokens): j for j, m in enumerate(conversations)}
            for fut in as_completed(futures):
                try:
                    result: Answer | Exception = fut.result()
                except Exception as exc:
                    result = exc
                done(futures[fut], result)

    def _post(self, messages: list[dict], max_tokens: int) -> tuple[str, int, int, int]:
        """One request with retries; returns (content, prompt tokens, completion tokens, retries used)."""
        cfg = self.cfg
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        payload = json.dumps({"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                              "max_tokens": max_tokens}).encode()
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



def make_chat_client(cfg: LLMConfig, store: object | None = None,
                     progress: ProgressCallback | None = None) -> CachingClient:
    """The chat client of a config: an endpoint's, or a local model's (loaded on `check()` or first use)."""
    if cfg.local:
        from .llm_local import LocalChatClient

        return LocalChatClient(cfg, store, progress)
    return ChatClient(cfg, store, progress)


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
    """The LLM labeller: a name and a description per feature. The full profile asks for both in one prompt
    with the feature's top documents and, for contrast, the nearest documents it does not fire on; the small
    profile asks for the name, then for one sentence about the texts given that name."""

    def __init__(self, client: CachingClient) -> None:
        self.client = client
        self.name = f"llm:{client.cfg.name}"

    def label_batch(self, examples: Sequence, context) -> list:
        """Labels of a batch; failures of single features are recorded, a model failure stops the run
        (`LabellingStopped`) after the features that did get an answer."""
        from .labellers import Label, LabellingStopped

        p, texts = self.client.cfg.settings(), context.texts
        tops = [[texts[d] for d in ex.top[: p.n_examples]] for ex in examples]
        if p.small:
            prompts = [small_label_prompt(top, p.chars) for top in tops]
        else:
            prompts = [label_prompt(top, ex.top_act[: p.n_examples], [texts[d] for d in ex.hard_neg[: p.n_negatives]],
                                    p.chars) for ex, top in zip(examples, tops)]
        parse = parse_small_label if p.small else parse_name_description
        made: list = []
        error = None
        for ans in self.client.complete_many(prompts, validate=parse, max_tokens=p.label_tokens):
            if isinstance(ans, LLMEndpointError):
                error = error or ans
                made.append(None)  # not attempted to the end: left for the next run
            elif isinstance(ans, MalformedAnswer):
                made.append(Label(None, None, {"error": f"malformed answer: {ans}"}))
            elif isinstance(ans, Exception):
                made.append(Label(None, None, {"error": str(ans)}))
            elif p.small:
                made.append(Label(parse_small_label(ans), None, {"answer": ans[-2000:]}))
            else:
                name, desc = parse_name_description(ans)  # validated: parses
                made.append(Label(name, desc, {"answer": ans[-2000:]}))
        if p.small and error is None:
            error = self._describe_small(made, tops, p)
        if error is not None:
            raise LabellingStopped(made, error)
        return made

    def _describe_small(self, made: list, tops: list[list[str]], p: Profile) -> Exception | None:
        """The small profile's descriptions: one more prompt per named feature; returns a model failure."""
        todo = [i for i, lab in enumerate(made) if lab is not None and lab.name]
        prompts = [small_description_prompt(made[i].name, tops[i], p.chars) for i in todo]
        answers = self.client.complete_many(prompts, validate=_has_description, max_tokens=p.description_tokens)
        for i, ans in zip(todo, answers):
            if isinstance(ans, LLMEndpointError):
                made[i] = None  # the whole feature is asked again next run
                return ans
            if isinstance(ans, str):
                made[i].description = parse_small_description(ans)
                made[i].detail["description_answer"] = ans[-2000:]
        return None


def _has_description(answer: str) -> None:
    if parse_small_description(answer) is None:
        raise MalformedAnswer("no sentence in the answer")


def make_llm_labeller(context) -> LLMLabeller:
    """The registered factory of the "llm" labeller."""
    if context.chat is None:
        raise InputError("the LLM labeller needs a model: give an LLMConfig with the base_url and model of an "
                         "OpenAI-compatible chat API, or the path of a local model")
    return LLMLabeller(context.chat)


def llm_detection(client: CachingClient, cfg: LLMConfig, exs: Sequence, labels: dict, texts: Sequence[str]
                  ) -> tuple[dict[int, dict], Exception | None]:
    """LLM detection scores (Pearson, F1) for labelled features of a batch, and the model error that stopped
    it, if any. The full profile rates a feature's documents in one prompt, the small one each in its own."""
    p = cfg.settings()
    docs = [detection_documents(ex, p.n_detect) for ex in exs]
    if p.small:
        prompts = [small_detection_prompt(labels[ex.feature][0], texts[d], p.chars) for ex, (d_, _) in zip(exs, docs)
                   for d in d_]
        answers = client.rate_many(prompts)
        bounds = np.cumsum([0] + [len(d_) for d_, _ in docs])
        per_feature = [answers[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        prompts = [detection_prompt(labels[ex.feature][0], [texts[d] for d in d_], p.chars)
                   for ex, (d_, _) in zip(exs, docs)]
        per_feature = [[a] for a in client.complete_many(prompts, validate=lambda a: parse_ratings(a, 1),
                                                          max_tokens=p.detect_tokens)]
    out: dict[int, dict] = {}
    error = None
    for ex, (d_, acts), got in zip(exs, docs, per_feature):
        stop = next((a for a in got if isinstance(a, LLMEndpointError)), None)
        if stop is not None:
            error = error or stop
            continue
        if any(isinstance(a, Exception) for a in got):
            continue
        try:
            ratings = np.asarray(got, dtype=float) if p.small else parse_ratings(got[0], len(d_))
        except MalformedAnswer:
            continue
        out[ex.feature] = detection_scores(ratings, acts)
    return out, error


def _unreachable(reason: object) -> bool:
    """A failure no retry will mend soon: nothing listens there, or the host name does not resolve."""
    import socket

    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))
