"""Faster CPU inference for sentence-transformers models: the same transformer exported to ONNX, run by
ONNX Runtime or OpenVINO.

The model's transformer is exported once (offline, from the local weights) into a cache folder:
`$EMBEDSAE_CACHE_DIR` or the user's cache (`$XDG_CACHE_HOME/embedsae`, else `~/.cache/embedsae`), under
`onnx/<model key>/model.onnx`. Tokenisation, length-sorted batching and mean pooling stay as in
sentence-transformers; only the transformer's forward pass changes engine. Models whose pooling is not a
plain mean (optionally followed by normalisation) keep the torch backend.

With all-MiniLM-L6-v2 both engines give torch's vectors to cosine 0.9999999 (256 arXiv abstracts); int8
dynamic quantisation was left out because it moved some abstracts to cosine 0.88. Speed: see
benchmarks/embed_speed.py (on a shared, heavily loaded 2-core machine OpenVINO ran at 1.05x torch and ONNX
Runtime at 0.90x; an idle-machine measurement is still to be made).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from ..errors import InputError
from ..progress import ProgressCallback, track
from ..registry import EMBEDDING_BACKENDS

logger = logging.getLogger(__name__)

FAST_ORDER = ("openvino", "onnx")
"""Preference of "auto" on CPU (OpenVINO measured fastest of the three, by a small margin, under load)."""


def cache_dir() -> Path:
    """Where exported models are kept: $EMBEDSAE_CACHE_DIR, else $XDG_CACHE_HOME/embedsae or ~/.cache/embedsae."""
    if os.environ.get("EMBEDSAE_CACHE_DIR"):
        return Path(os.environ["EMBEDSAE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "embedsae"


def backend_available(backend: str) -> bool:
    """Whether the packages a backend needs are installed (torch always is)."""
    return all(importlib.util.find_spec(p) is not None for p in EMBEDDING_BACKENDS.get(backend).packages)


def auto_backend(device: str | None) -> str:
    """The fastest installed backend for a device: on CPU OpenVINO, then ONNX Runtime, then torch; torch elsewhere."""
    if device not in (None, "cpu"):
        return "torch"
    if device is None:
        import torch

        if torch.cuda.is_available():
            return "torch"
    return next((b for b in FAST_ORDER if backend_available(b)), "torch")


def check_backend(backend: str) -> None:
    """Raise InputError for an unknown backend or one whose packages are missing."""
    if backend not in (*EMBEDDING_BACKENDS.names(), "auto"):
        raise InputError(f"unknown embedding backend '{backend}'; use one of auto, {', '.join(EMBEDDING_BACKENDS)}")
    if backend != "auto" and not backend_available(backend):
        spec = EMBEDDING_BACKENDS.get(backend)
        missing = ", ".join(p for p in spec.packages if importlib.util.find_spec(p) is None)
        raise InputError(
            f"the {backend} embedding backend needs {missing}, which is not installed: pip install "
            f"'embedsae[{spec.extra}]' (or set the backend to torch or auto)"
        )


def supports_export(model: Any) -> bool:
    """Whether a SentenceTransformer is a transformer, mean pooling and optionally normalisation (what the runner does)."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if len(modules) < 2 or names[0] != "Transformer" or names[1] != "Pooling" or set(names[2:]) - {"Normalize"}:
        return False
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None) or ("mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else None)
    return mode == "mean" and hasattr(modules[0], "auto_model")


def _model_key(location: str) -> str:
    """A cache key that changes when the model folder's weights change."""
    h = hashlib.sha256(str(Path(location).resolve()).encode())
    for f in sorted(Path(location).glob("*.safetensors")) + sorted(Path(location).glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return f"{Path(location).name}-{h.hexdigest()[:12]}"


def exported_onnx(model: Any, location: str) -> Path:
    """The ONNX file of a SentenceTransformer's transformer, exported into the cache on first use."""
    folder = cache_dir() / "onnx" / _model_key(location)
    path = folder / "model.onnx"
    if path.is_file():
        return path
    import warnings

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    transformer = model[0]
    bert = transformer.auto_model.eval()
    names = _input_names(transformer)
    sample = _tokenize(model, ["an example sentence for the export", "a second one"])

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    logger.info("exporting %s to ONNX in %s (once)", location, folder)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(bert), tuple(sample[n] for n in names), str(tmp), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def _input_names(transformer: Any) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if getattr(transformer.auto_model.config, "type_vocab_size", 0):
        names.append("token_type_ids")
    return names


def _tokenize(model: Any, texts: list[str]) -> dict[str, Any]:
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    return tokenize(texts)


PRECISIONS = ("f32", "bf16")
"""Inference precisions of the OpenVINO backend: f32 (vectors as torch's) or bf16 (on CPUs with native bf16, AMX or
AVX512_BF16, about 2.5x faster on short texts, vectors to cosine 0.9999 of f32's; elsewhere OpenVINO runs f32)."""


def check_precision(precision: str) -> None:
    """Raise InputError for a precision not in PRECISIONS."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown embedding precision '{precision}'; use one of {', '.join(PRECISIONS)}")


class ExportedRunner:
    """A SentenceTransformer's transformer on ONNX Runtime or OpenVINO, with its tokeniser and mean pooling.

    `precision` "bf16" applies to OpenVINO only (ONNX Runtime and torch stay f32): for texts whose vectors are
    compared with each other and with f32 document vectors by cosine (label phrases), never for vectors an SAE
    encodes."""

    def __init__(self, model: Any, location: str, backend: str, precision: str = "f32") -> None:
        names = _input_names(model[0])

        def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
            feat = _tokenize(model, texts)
            return {n: feat[n].numpy() for n in names}

        self._start(exported_onnx(model, location), backend, precision, tokenize)

    @classmethod
    def cached(cls, location: str, backend: str, precision: str = "f32") -> ExportedRunner | None:
        """The runner of a local model folder without loading sentence-transformers (seconds of imports): its
        export from the cache, its tokenizer.json read by `tokenizers` as sentence-transformers would use it.
        None where the export is not cached yet or the folder is not a plain model (`plain_folder`)."""
        plain = plain_folder(location)
        path = cache_dir() / "onnx" / _model_key(location) / "model.onnx"
        if plain is None or not path.is_file():
            return None
        from tokenizers import Tokenizer

        folder = Path(location)
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _json(folder / "tokenizer_config.json") or {}
        pad = config.get("pad_token", "[PAD]")
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        tok.no_padding()
        tok.enable_truncation(plain["max_seq_length"])
        tok.enable_padding(pad_id=tok.token_to_id(pad) or 0, pad_token=pad)
        lower = plain["do_lower_case"]

        def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
            enc = tok.encode_batch([t.strip().lower() if lower else t.strip() for t in texts])
            return {"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}

        runner = cls.__new__(cls)
        runner._start(path, backend, precision, tokenize)
        runner.dim, runner.max_seq_length, runner.normalised = plain["dim"], plain["max_seq_length"], plain["normalised"]
        return runner

    def _start(self, path: Path, backend: str, precision: str, tokenize) -> None:
        check_backend(backend)
        check_precision(precision)
        self.backend, self.path = backend, path
        if backend == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.names = [i.name for i in session.get_inputs()]
            self._forward = lambda feed: session.run(None, feed)[0]
        else:
            import openvino as ov

            # f32 unless asked: on CPUs with native bf16 (AVX512_BF16 / AMX) OpenVINO otherwise infers in bf16, whose
            # vectors differ from torch's by up to 1e-3 and change which latents an SAE picks
            compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
            self.names = [i.any_name for i in compiled.inputs]
            local = threading.local()

            def forward(feed):  # one infer request per thread: a shared one answers "Infer Request is busy"
                request = getattr(local, "request", None)
                if request is None:
                    request = local.request = compiled.create_infer_request()
                return request.infer(feed)[0]

            self._forward = forward
        self._tokenize = tokenize

    def embed(self, texts: list[str], dim: int, batch_size: int,
              progress: ProgressCallback | None = None) -> np.ndarray:
        """Mean-pooled float32 vectors of `texts` (not normalised), batched by length."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), dim), np.float32)
        for i in track(range(0, len(texts), batch_size), progress, "embed", unit="batch"):
            rows = order[i : i + batch_size]
            feat = self._tokenize([texts[j] for j in rows])
            feed = {n: feat[n] for n in self.names}
            hidden = np.asarray(self._forward(feed), dtype=np.float32)
            mask = feed["attention_mask"][..., None].astype(np.float32)
            out[rows] = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return out


def _json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def plain_folder(location: str) -> dict[str, Any] | None:
    """For a local sentence-transformers folder that is a transformer, mean pooling and optionally normalisation
    (read from its modules.json and configs) with a tokenizer.json: its dimension, max_seq_length, do_lower_case
    and whether vectors are normalised; None otherwise."""
    folder = Path(location)
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list) or not (folder / "tokenizer.json").is_file():
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} or modules[0].get("path"):
        return None
    pooling = _json(folder / modules[1].get("path", "") / "config.json") or {}
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    st = _json(folder / "sentence_bert_config.json") or {}
    if modes != ["pooling_mode_mean_tokens"] or not pooling.get("word_embedding_dimension") or not st.get("max_seq_length"):
        return None
    return {"dim": int(pooling["word_embedding_dimension"]), "max_seq_length": int(st["max_seq_length"]),
            "do_lower_case": bool(st.get("do_lower_case")), "normalised": "Normalize" in kinds}
