"""A local chat model run in-process with `transformers` (no server): a Hugging Face model folder, or a GGUF
file (loaded through `transformers` + `gguf`, dequantised to float32). Greedy decoding, answers bounded in
tokens, prompts of similar length generated together in batches. Needs the `local-llm` extra."""

from __future__ import annotations

import contextlib
import functools
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..progress import ProgressCallback
from .llm_client import Answer, CachingClient, LLMConfig, LLMEndpointError
from .llm_prompts import parse_small_rating

logger = logging.getLogger(__name__)

EXTRA = "pip install 'embedsae[local-llm]'"


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise InputError(f"running a local LLM needs the transformers package: {EXTRA}") from exc
    return transformers


def model_source(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Where `transformers` loads a local model from, and how: a Hugging Face folder (config.json) or a .gguf
    file; InputError naming what is wrong otherwise (checked without loading anything)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"the local LLM '{path}' does not exist: give the path of a Hugging Face model folder or "
                         "of a .gguf file")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(f"the local LLM '{path}' is a file but not a .gguf model: give a .gguf file or a "
                             "Hugging Face model folder")
        try:
            import gguf  # noqa: F401  (transformers reads GGUF files through it)
        except ImportError as exc:
            raise InputError(f"loading the GGUF model '{path}' needs the gguf package: {EXTRA}") from exc
        where, kwargs = path.parent, {"gguf_file": path.name}
    else:
        if not (path / "config.json").is_file():
            raise InputError(f"'{path}' is not a Hugging Face model folder (it has no config.json); give such a "
                             "folder or a .gguf file")
        where, kwargs = path, {"local_files_only": True}
    _import_transformers()
    return where, kwargs


def load_local_model(path: str | Path):
    """(tokenizer, model) of a local model (see `model_source`), ready for batched greedy generation. The last
    model loaded is kept, so that runs in one process load it once."""
    path = Path(path).expanduser().resolve()
    return _load(str(path), path.stat().st_mtime if path.exists() else 0.0)


@functools.lru_cache(maxsize=1)
def _load(path_text: str, mtime: float):
    path = Path(path_text)
    where, kwargs = model_source(path)
    transformers = _import_transformers()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(where, dtype="float32", **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError, struct.error) as exc:
        raise InputError(f"cannot load the local LLM '{path}' with transformers ({exc}); it must be a causal "
                         "language model (a chat model works best)") from exc
    model.eval()
    tok.padding_side = "left"  # generation continues the prompts' right ends
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, model


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalChatClient(CachingClient):
    """Answers chat conversations with a local model in this process (loaded on first use)."""

    def __init__(self, cfg: LLMConfig, store: object | None = None, progress: ProgressCallback | None = None) -> None:
        super().__init__(cfg, store, progress)
        self.path = cfg.local_path.resolve()
        self.model_id = f"local:{self.path}"
        self._loaded = None

    def check(self) -> None:
        """Fail at once on a path that is no model or missing packages (the model loads on first use)."""
        model_source(self.path)

    def _model(self):
        if self._loaded is None:
            logger.info(f"loading the local LLM {self.path}")
            self._loaded = load_local_model(self.path)
        return self._loaded

    def _prompt(self, tok, messages: list[dict]) -> str:
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"  # a base model without a template

    def rate_many(self, conversations: Sequence[list[dict]]) -> list[float | Exception]:
        """Ratings 0–10 of yes/no questions: 10 x the probability that the answer starts with "yes" rather than
        "no" (one forward pass per prompt, no generation; a graded score even when a small model would answer
        "no" to everything)."""
        answers = self._cached(conversations, parse_small_rating, {"rating": "p(yes)"}, self._rate_all)
        return [a if isinstance(a, Exception) else parse_small_rating(a) for a in answers]

    def _batches(self, conversations: list[list[dict]]) -> Iterator[tuple[list[int], list[int], Any]]:
        """(conversation indices, their prompt lengths, tokenised batch) in batches of similar length."""
        tok, _ = self._model()
        texts = [self._prompt(tok, m) for m in conversations]
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda j: lengths[j])  # similar lengths pad little
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            chunk = order[start : start + bs]
            enc = tok([texts[j] for j in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
            yield chunk, [lengths[j] for j in chunk], enc

    def _yes_no_ids(self, tok) -> tuple[list[int], list[int]]:
        """First tokens of the spellings of "yes" and of "no" that the tokenizer has as one token."""
        def ids(words: tuple[str, ...]) -> list[int]:
            out: set[int] = set()
            for w in words:
                got = tok(w, add_special_tokens=False)["input_ids"]
                if len(got) == 1:
                    out.add(got[0])
            return sorted(out)

        yes, no = ids(("Yes", " Yes", "yes", " yes", "YES")), ids(("No", " No", "no", " no", "NO"))
        if not yes or not no:
            raise LLMEndpointError(f"the local LLM {self.path.name}'s tokenizer has no one-token 'yes' and 'no'")
        return yes, no

    def _rate_all(self, conversations: list[list[dict]], done: Callable[[int, Answer | Exception], None]) -> None:
        import torch

        tok, model = self._model()
        yes, no = self._yes_no_ids(tok)
        with _torch_threads(self.cfg.threads), torch.inference_mode():
            for chunk, lengths, enc in self._batches(conversations):
                try:
                    logits = model(**enc).logits[:, -1, :]  # left padding: the last position is every prompt's end
                except (RuntimeError, ValueError) as exc:
                    err = LLMEndpointError(f"the local LLM {self.path.name} failed ({exc})")
                    for j in chunk:
                        done(j, err)
                    continue
                probs = torch.softmax(logits.float(), dim=-1)
                p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
                rating = (10 * p_yes / (p_yes + p_no).clamp_min(1e-12)).tolist()
                for row, j in enumerate(chunk):
                    done(j, (f"{rating[row]:.4f}", lengths[row], 0, 0))

    def _answer_all(self, conversations: list[list[dict]], max_tokens: int,
                    done: Callable[[int, Answer | Exception], None]) -> None:
        import torch

        tok, model = self._model()
        with _torch_threads(self.cfg.threads), torch.inference_mode():
            for chunk, lengths, enc in self._batches(conversations):
                try:
                    gen = model.generate(**enc, do_sample=False, max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id,
                                         temperature=None, top_p=None, top_k=None)
                except (RuntimeError, ValueError) as exc:
                    err = LLMEndpointError(f"the local LLM {self.path.name} failed to generate ({exc})")
                    for j in chunk:
                        done(j, err)
                    continue
                new = gen[:, enc["input_ids"].shape[1]:]
                for row, j in enumerate(chunk):
                    ids = new[row].tolist()
                    n = len(ids)
                    for stop in (tok.eos_token_id, tok.pad_token_id):
                        if stop is not None and stop in ids:
                            n = min(n, ids.index(stop) + 1)
                    done(j, (tok.decode(ids[:n], skip_special_tokens=True).strip(), lengths[row], n, 0))
