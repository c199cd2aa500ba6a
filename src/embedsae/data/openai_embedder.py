"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, text-embeddings-inference).

`OpenAIEmbedder("openai:text-embedding-3-small", base_url=...)` batches texts by count and by (estimated)
tokens, sends batches concurrently, retries 429 / 5xx / broken answers with exponential backoff (honouring
Retry-After), keeps every vector in an on-disk cache keyed by model and text (a resumed or repeated run
pays once), and counts requests and tokens in `usage`. The API key is read from an environment variable
at request time and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbedSAEError, InputError, ModelMismatchError

logger = logging.getLogger(__name__)

PREFIX = "openai:"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(EmbedSAEError):
    """The embedding endpoint failed, refused the request, or answered something that is not an embedding list."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate of a text's tokens (UTF-8 bytes / 3, at least 1)."""
    return max(1, len(text.encode("utf-8")) // 3)


def default_cache_dir() -> Path:
    """$EMBEDSAE_CACHE_DIR, else $XDG_CACHE_HOME/embedsae, else ~/.cache/embedsae."""
    if os.environ.get("EMBEDSAE_CACHE_DIR"):
        return Path(os.environ["EMBEDSAE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedsae"


class VectorCache:
    """Vectors on disk (SQLite), keyed by a hash of model, dimensions and text; each batch commits atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, dimensions: int | None, text: str) -> str:
        return hashlib.sha256(f"{model}\x00{dimensions or ''}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                out.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        return out

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                 [(k, np.asarray(v, np.float32).tobytes()) for k, v in items])
            self._db.commit()

    def close(self) -> None:
        self._db.close()


class OpenAIEmbedder:
    """An embedder over an OpenAI-compatible `/embeddings` endpoint (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = DEFAULT_KEY_ENV,
        dimensions: int | None = None,
        batch_size: int = 64,
        max_batch_tokens: int = 100_000,
        concurrency: int = 4,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 120.0,
        normalize: bool = True,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        name = model.removeprefix(PREFIX)
        if not name:
            raise InputError("give the endpoint's model name after 'openai:', e.g. openai:text-embedding-3-small")
        if batch_size < 1 or max_batch_tokens < 1 or concurrency < 1 or max_retries < 0:
            raise InputError("batch_size, max_batch_tokens and concurrency must be positive and max_retries >= 0")
        self.name = name
        self.model_id = PREFIX + name
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.base_url = self.base_url.removesuffix("/embeddings")
        if not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"the embedding endpoint's base URL must start with http:// or https://; got '{self.base_url}'")
        self.api_key_env = api_key_env
        self.dimensions = dimensions
        self.batch_size, self.max_batch_tokens, self.concurrency = batch_size, max_batch_tokens, concurrency
        self.max_retries, self.backoff, self.max_backoff, self.timeout = max_retries, backoff, max_backoff, timeout
        self.normalize = normalize
        self.cache = VectorCache(Path(cache_dir or default_cache_dir()) / "openai-embeddings.sqlite") if cache else None
        self.usage: dict[str, int] = {"requests": 0, "retries": 0, "prompt_tokens": 0, "texts_embedded": 0,
                                      "texts_from_cache": 0}
        self._usage_lock = threading.Lock()
        self._dim: int | None = dimensions
        if self.base_url == DEFAULT_BASE_URL and not os.environ.get(api_key_env):
            raise InputError(f"the OpenAI API needs a key: set the environment variable {api_key_env}")

    @property
    def reopen(self) -> dict[str, Any]:
        """What a workspace records to make this embedder again (no secrets: the key's variable name only)."""
        return {"base_url": self.base_url, "api_key_env": self.api_key_env, "dimensions": self.dimensions}

    @property
    def dim(self) -> int:
        """The vectors' dimension (asked of the endpoint with one short text when not known yet)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        return int(self._dim)

    # ------------------------------------------------------------------ embedding
    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Vectors of `texts` (float32, in order): from the cache where present, else from the endpoint."""
        texts = [str(t) for t in texts]
        keys = [VectorCache.key(self.name, self.dimensions, t) for t in texts]
        found = self.cache.get_many(sorted(set(keys))) if self.cache else {}
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in found:
                todo.setdefault(k, t)
        for v in found.values():
            self._check_dim(len(v), "the cache")
        with self._usage_lock:
            self.usage["texts_from_cache"] += len(texts) - sum(1 for k in keys if k in todo)
        if todo:
            found.update(self._fetch(list(todo.items()), progress=progress))
        if not texts:
            return np.zeros((0, self._dim or 0), np.float32)
        out = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
        if self.normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out, dtype=np.float32)

    def batches(self, items: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        """Consecutive batches of at most `batch_size` texts and `max_batch_tokens` estimated tokens."""
        out: list[list[tuple[str, str]]] = []
        cur: list[tuple[str, str]] = []
        tokens = 0
        for item in items:
            t = estimate_tokens(item[1])
            if cur and (len(cur) >= self.batch_size or tokens + t > self.max_batch_tokens):
                out.append(cur)
                cur, tokens = [], 0
            cur.append(item)
            tokens += t
        if cur:
            out.append(cur)
        return out

    def _fetch(self, items: list[tuple[str, str]], *, progress: bool) -> dict[str, np.ndarray]:
        batches = self.batches(items)
        got: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        done = shown = 0
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
            pending = {pool.submit(self._request_batch, [t for _, t in b]): b for b in batches}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in sorted(finished, key=lambda f: f.exception() is not None):  # cache successes first
                        batch = pending.pop(fut)
                        vectors = fut.result()  # raises the batch's error; finished batches are already cached
                        pairs = [(k, v) for (k, _), v in zip(batch, vectors)]
                        if self.cache:
                            self.cache.put_many(pairs)
                        got.update(pairs)
                        done += len(batch)
                    if progress and done * 10 // len(items) > shown:  # a line per tenth of the work
                        shown = done * 10 // len(items)
                        logger.info("embedded %d / %d texts through %s", done, len(items), self.base_url)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
        logger.info("embedded %d texts with %s in %.1fs: %d requests, %d retries, %d tokens so far",
                    len(items), self.model_id, time.perf_counter() - t0, self.usage["requests"], self.usage["retries"],
                    self.usage["prompt_tokens"])
        return got

    def _request_batch(self, texts: list[str]) -> list[np.ndarray]:
        """One batch, retried on rate limits, server errors, dropped connections and broken answers."""
        attempt = 0
        while True:
            try:
                return self._post(texts)
            except _Retryable as exc:
                if attempt >= self.max_retries:
                    raise EndpointError(
                        f"the embedding endpoint {self.base_url}/embeddings failed {attempt + 1} times for a batch of "
                        f"{len(texts)} texts; last: {exc}. Vectors already received are cached: run again to resume"
                    ) from None
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
                if exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                logger.info("embedding request failed (%s); retrying in %.2fs", exc, delay)
                with self._usage_lock:
                    self.usage["retries"] += 1
                time.sleep(delay)
                attempt += 1

    def _post(self, texts: list[str]) -> list[np.ndarray]:
        body: dict[str, Any] = {"model": self.name, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/embeddings", data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        with self._usage_lock:
            self.usage["requests"] += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in RETRY_STATUS:
                after = exc.headers.get("Retry-After")
                raise _Retryable(f"HTTP {exc.code}", _seconds(after)) from None
            hint = {401: f" (check the key in the environment variable {self.api_key_env})",
                    404: f" (is {self.base_url} the API root, e.g. http://host:port/v1, and '{self.name}' served there?)"}
            raise EndpointError(
                f"the embedding endpoint {self.base_url}/embeddings refused the request: HTTP {exc.code} {detail}"
                f"{hint.get(exc.code, '')}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"connection failed: {getattr(exc, 'reason', exc)}") from None
        return self._parse(raw, len(texts))

    def _parse(self, raw: bytes, n: int) -> list[np.ndarray]:
        try:
            payload = json.loads(raw)
            data = sorted(payload["data"], key=lambda d: d["index"])
            vectors = [np.asarray(d["embedding"], dtype=np.float32) for d in data]
            indices = [int(d["index"]) for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise _Retryable(f"malformed answer ({type(exc).__name__}: {str(exc)[:80]})") from None
        if indices != list(range(n)):
            raise _Retryable(f"the answer holds {len(indices)} embeddings for {n} inputs")
        if any(v.ndim != 1 for v in vectors):
            raise _Retryable("an embedding is not a flat list of numbers")
        for v in vectors:
            self._check_dim(len(v), "the endpoint")
        usage = payload.get("usage") or {}
        with self._usage_lock:
            self.usage["prompt_tokens"] += int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
            self.usage["texts_embedded"] += n
        return vectors

    def _check_dim(self, d: int, source: str) -> None:
        with self._usage_lock:
            if self._dim is None:
                self._dim = d
                return
        if d != self._dim:
            raise ModelMismatchError(
                f"{source} gave a {d}-d vector for '{self.model_id}' where {self._dim}-d vectors were expected; "
                "check the model name and `dimensions`"
            )


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
