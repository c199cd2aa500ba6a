"""ONNX Runtime / OpenVINO backends of the sentence-transformers embedder: same vectors as torch, clear fallbacks."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from embedsae.data import backends
from embedsae.data.embedders import SentenceTransformerEmbedder
from embedsae.data.readers import read_corpus
from embedsae.errors import InputError

from .conftest import shared_path


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    table = read_corpus(shared_path("arxiv", "abstracts.jsonl"))
    texts = table["text"].tolist()
    step = max(1, len(texts) // 96)
    return texts[::step][:96]  # spread over the file: short and long abstracts


@pytest.fixture
def export_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EMBEDSAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "embedsae-cache"))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backend_gives_torchs_vectors_on_abstracts(backend, abstracts, minilm, embedder, export_cache):
    if not backends.backend_available(backend):
        pytest.skip(f"the {backend} backend's package is not installed")
    fast = SentenceTransformerEmbedder(backend=backend)
    assert fast.backend == backend and fast.model_id == minilm.model_id and fast.dim == minilm.dim
    got, ref = fast.embed(abstracts), embedder.embed(abstracts)  # torch's vectors (cached between tests)
    assert got.dtype == np.float32 and got.shape == ref.shape
    cosine = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cosine.min() >= 0.99999, cosine.min()  # fp32 (OpenVINO's bf16 on AMX CPUs reached only 0.99997)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (backends.cache_dir() / "onnx").is_dir(), "exported once into the cache folder"


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backend_serves_many_threads_at_once(backend, abstracts, export_cache):
    """A server embeds queries from many threads: each gets its own vectors (OpenVINO's shared infer request
    once answered "Infer Request is busy" to all but one)."""
    if not backends.backend_available(backend):
        pytest.skip(f"the {backend} backend's package is not installed")
    fast = SentenceTransformerEmbedder(backend=backend)
    texts = abstracts[:16]
    want = fast.embed(texts)
    got: list = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def one(i: int) -> None:
        start.wait()
        try:
            got[i] = fast.embed([texts[i]])[0]
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            got[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [g for g in got if not isinstance(g, np.ndarray)]
    assert not errors, errors[:2]
    cosine = (np.stack(got) * want).sum(1)
    assert cosine.min() >= 0.9999, cosine.min()


def test_auto_picks_an_installed_fast_backend_on_cpu(export_cache):
    expected = next((b for b in backends.FAST_ORDER if backends.backend_available(b)), "torch")
    assert backends.auto_backend("cpu") == expected
    assert backends.auto_backend("cuda") == "torch"


def test_missing_backend_package_falls_back_or_errors_clearly(monkeypatch, export_cache):
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a))
    assert backends.auto_backend("cpu") == "torch"
    assert SentenceTransformerEmbedder(backend="auto").backend == "torch"
    with pytest.raises(InputError, match=r"onnxruntime.*pip install 'embedsae\[fast\]'"):
        SentenceTransformerEmbedder(backend="onnx")
    with pytest.raises(InputError, match="unknown embedding backend 'tensorrt'"):
        SentenceTransformerEmbedder(backend="tensorrt")


def test_bf16_phrase_vectors_stay_close_to_f32_and_bad_precision_is_refused(abstracts, export_cache):
    """The interpret stage embeds label phrases in bf16 (faster on AMX / AVX512_BF16 CPUs): their vectors must stay
    at cosine >= 0.9995 of f32's, so label choices and scores hold; documents stay f32 (the test above)."""
    if not backends.backend_available("openvino"):
        pytest.skip("the openvino backend's package is not installed")
    phrases = [" ".join(t.split()[i : i + n]) for t in abstracts[:40] for i, n in ((0, 2), (5, 4), (12, 7))]
    f32 = SentenceTransformerEmbedder(backend="openvino").embed(phrases)
    bf16 = SentenceTransformerEmbedder(backend="openvino", precision="bf16")
    assert bf16.precision == "bf16"
    cosine = (bf16.embed(phrases) * f32).sum(1)
    assert cosine.min() >= 0.9995, cosine.min()
    with pytest.raises(InputError, match="unknown embedding precision 'fp8'; use one of f32, bf16"):
        SentenceTransformerEmbedder(backend="openvino", precision="fp8")


def test_lightweight_embedder_gives_the_full_loaders_vectors_once_the_export_is_cached(abstracts, tmp_path,
                                                                                       monkeypatch):
    """The interpret stage's phrase embedder skips importing sentence-transformers: same tokens, same vectors."""
    from embedsae.data.embedders import ExportedEmbedder, load_embedder

    if not backends.backend_available("openvino"):
        pytest.skip("the openvino backend's package is not installed")
    monkeypatch.setenv("EMBEDSAE_CACHE_DIR", str(tmp_path))  # an empty cache
    first = load_embedder(None, lightweight=True, backend="openvino", batch_size=8)  # nothing exported yet: full loader
    assert isinstance(first, SentenceTransformerEmbedder)
    light = load_embedder(None, lightweight=True, backend="openvino", batch_size=8)
    assert isinstance(light, ExportedEmbedder) and (light.dim, light.model_id) == (first.dim, first.model_id)
    texts = ["  graphene  ", "Dirac EQUATION", "x " * 5000, *abstracts[:20]]  # spaces, case, a text to cut
    assert np.array_equal(light.embed(texts), first.embed(texts))  # same batches: bit for bit
    assert light.embed([]).shape == (0, first.dim)
