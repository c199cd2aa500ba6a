"""Chat clients of the LLM labeller: the settings of a chat model (`LLMConfig`), an answer cache keyed by a hash
of the request (`CachingClient`), and the OpenAI-compatible endpoint client (`ChatClient`).

Endpoint requests run concurrently in threads; transient failures (connection errors, timeouts, HTTP 429/5xx,
unreadable bodies) are retried with exponential backoff; tokens are counted. The in-process local model
(`llm_local`) is another `CachingClient`.
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

from ..errors import EmbedSAEError
from ..progress import ProgressCallback, Tracker
from ..settings import Settings, check
from .llm_prompts import MalformedAnswer, parse_small_rating

__all__ = ["Answer", "CachingClient", "ChatClient", "LLMConfig", "LLMEndpointError", "Profile", "Usage"]


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


def _unreachable(reason: object) -> bool:
    """A failure no retry will mend soon: nothing listens there, or the host name does not resolve."""
    import socket

    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))
