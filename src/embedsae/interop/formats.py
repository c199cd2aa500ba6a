"""SAE files of other tools, read into (and written from) embedsae's top-k SAE.

Every format here describes the same encoder, a = W_enc (x - b_pre) + b_lat, keep the top k, ReLU, and
the decoder x_hat = W_dec z + b_pre; only names, layouts and transposes differ:

| format   | files                                              | encoder            | decoder              |
| -------- | -------------------------------------------------- | ------------------ | -------------------- |
| saerch   | `{domain}_{k}_{n}_{auxk}.pth` (torch state dict)   | `encoder.weight` [n, d], `latent_bias`, `pre_bias` | `decoder.weight` [d, n] |
| saelens  | `cfg.json`, `sae_weights.safetensors`, `sparsity.safetensors` | `W_enc` [d, n], `b_enc` | `W_dec` [n, d], `b_dec` |
| sparsify | `cfg.json`, `sae.safetensors`                      | `encoder.weight` [n, d], `encoder.bias` | `W_dec` [n, d], `b_dec` |
| embedsae | `cfg.json`, `sae.safetensors` (see sae/base.py)    | `W_enc` [n, d], `b_lat`, `b_pre` | `W_dec` [n, d] |

Imported SAEs encode with the plain top-k encoder (`pursuit = 0`), which is what the other tools compute.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import read_json, write_bytes, write_json
from ..errors import InputError
from ..registry import SAE_FORMATS
from ..sae import SAE, SAEConfig, TopKSAE, load_sae

logger = logging.getLogger(__name__)

FORMATS = SAE_FORMATS.names()
SAERCH_NAME = re.compile(r"^(?P<domain>.+?)_(?P<k>\d+)_(?P<n>\d+)_(?P<auxk>\d+)$")
SAERCH_MODEL = "openai:text-embedding-3-small"
"""The paper's SAEs were trained on raw text-embedding-3-small vectors (1536-d, title + abstract)."""
SAERCH_DIM = 1536
SAELENS_HOOK = "sentence_embedding"
"""The SAELens `hook_name` our exports carry: the vectors are whole-text embeddings, not a layer's activations."""


@dataclass
class ImportedSAE:
    """An SAE read from another tool's files, and what those files said about it."""

    sae: SAE
    format: str
    source: str
    model_id: str | None = None
    """The embedding model the files name (or, for the paper's files, the one they were trained on)."""
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- detection
def detect_format(path: str | os.PathLike) -> str:
    """The format of an SAE file or folder: saerch (.pth), saelens, sparsify or embedsae (folders)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no SAE file or folder at {path}")
    if path.is_file():
        if path.suffix in (".pth", ".pt"):
            return "saerch"
        raise InputError(f"{path} is not an SAE file embedsae can read: give a saerch .pth file or an SAE folder")
    if (path / "sae_weights.safetensors").is_file():
        return "saelens"
    cfg_path = path / "cfg.json"
    if cfg_path.is_file() and (path / "sae.safetensors").is_file():
        cfg = read_json(cfg_path)
        if "n_latents" in cfg and "architecture" in cfg:
            return "embedsae"
        if "num_latents" in cfg or "expansion_factor" in cfg:
            return "sparsify"
    raise InputError(
        f"{path} holds no SAE embedsae can read: a SAELens folder has cfg.json + sae_weights.safetensors, a "
        "sparsify folder cfg.json (with num_latents) + sae.safetensors, an embedsae folder cfg.json (with "
        "n_latents) + sae.safetensors"
    )


def read_sae(path: str | os.PathLike, *, fmt: str | None = None, k: int | None = None) -> ImportedSAE:
    """Read an SAE in any supported format (detected when `fmt` is None). `k` overrides the files' k."""
    fmt = fmt or detect_format(path)
    readers = {"saerch": read_saerch, "saelens": read_saelens, "sparsify": read_sparsify, "embedsae": read_embedsae}
    if fmt not in readers:
        raise InputError(f"unknown SAE format '{fmt}'; use one of {', '.join(FORMATS)}")
    got = readers[fmt](Path(path), k=k)
    bad = [n for n, t in got.sae.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(f"the SAE in {path} holds non-finite weights (NaN or infinity in {', '.join(bad)}): it cannot "
                         "encode or reconstruct anything; import a finished, working SAE")
    return got


# ---------------------------------------------------------------------------- shared
def _topk_sae(W_enc: Tensor, b_lat: Tensor, W_dec: Tensor, b_pre: Tensor, k: int, **cfg: Any) -> TopKSAE:
    """A plain top-k SAE (pursuit 0) holding these float32 weights; W_enc and W_dec are (n, d)."""
    n, d = W_enc.shape
    if W_dec.shape != (n, d) or b_lat.shape != (n,) or b_pre.shape != (d,):
        raise InputError(
            f"inconsistent SAE shapes: encoder {tuple(W_enc.shape)}, decoder {tuple(W_dec.shape)} (as latents x "
            f"dim), latent bias {tuple(b_lat.shape)}, input bias {tuple(b_pre.shape)}"
        )
    sae = TopKSAE(SAEConfig(d_in=d, n_latents=n, k=k, architecture="topk", pursuit=0, **cfg))
    with torch.no_grad():
        for name, value in (("W_enc", W_enc), ("b_lat", b_lat), ("W_dec", W_dec), ("b_pre", b_pre)):
            getattr(sae, name).copy_(value.detach().to(torch.float32))
    return sae.eval()


def _need(tensors: dict[str, Tensor], names: tuple[str, ...], source: Path, what: str) -> None:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise InputError(
            f"{source} is not a {what}: it lacks {', '.join(missing)} (it holds: {', '.join(sorted(tensors)) or 'nothing'})"
        )


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise InputError(f"could not read {path}: {exc}") from exc


def _plain(sae: SAE) -> dict[str, Tensor]:
    """The weights as contiguous float32 CPU tensors, refusing what other tools cannot represent."""
    if sae.cfg.architecture != "topk":
        raise InputError(
            f"only top-k SAEs export to other tools (this one is '{sae.cfg.architecture}'); export it as embedsae"
        )
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sae.state_dict().items()}


def _pursuit_note(sae: SAE) -> None:
    if sae.cfg.pursuit:
        logger.warning(
            "this SAE encodes by matching pursuit (pursuit=%d); SAELens and sparsify compute the plain top-k "
            "encoder, so their codes will differ from embedsae's", sae.cfg.pursuit,
        )


def _save_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically (a full disk is an OSError, as for every file embedsae writes)."""
    from safetensors.torch import save

    write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


# ---------------------------------------------------------------------------- saerch (.pth)
def parse_saerch_name(path: str | os.PathLike) -> dict[str, Any] | None:
    """domain, k, n and aux-k from a file named `{domain}_{k}_{n}_{auxk}.pth`, or None."""
    m = SAERCH_NAME.match(Path(path).stem)
    if not m:
        return None
    return {"domain": m["domain"], "k": int(m["k"]), "n": int(m["n"]), "auxk": int(m["auxk"])}


def read_saerch(path: Path, *, k: int | None = None) -> ImportedSAE:
    """A `FastAutoencoder` state dict of the saerch code (O'Neill et al. 2024)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"could not read {path} as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    state = {str(key).removeprefix("module."): v for key, v in state.items()}
    _need(state, ("encoder.weight", "decoder.weight", "latent_bias", "pre_bias"), path, "saerch FastAutoencoder state dict")
    enc, dec = state["encoder.weight"], state["decoder.weight"]
    n, d = enc.shape
    if dec.shape != (d, n):
        raise InputError(f"{path}: decoder.weight has shape {tuple(dec.shape)}, expected (dim, latents) = ({d}, {n})")
    named = parse_saerch_name(path)
    if named and named["n"] != n:
        raise InputError(f"{path}: the name says {named['n']} latents but the file holds {n}")
    if k is None:
        if not named:
            raise InputError(
                f"cannot tell k from the name {path.name} (expected {{domain}}_{{k}}_{{n}}_{{auxk}}.pth); set `k`"
            )
        k = named["k"]
    elif named and named["k"] != k:
        logger.info("encoding at k=%d instead of the k=%d in the file name", k, named["k"])
    aux_k = named["auxk"] if named else None
    sae = _topk_sae(enc, state["latent_bias"], dec.T, state["pre_bias"], k, aux_k=aux_k)
    model = SAERCH_MODEL if d == SAERCH_DIM else None
    details = {"file": path.name, **({"domain": named["domain"], "auxk": named["auxk"]} if named else {})}
    return ImportedSAE(sae, "saerch", str(path), model, details)


# ---------------------------------------------------------------------------- SAELens
def read_saelens(path: Path, *, k: int | None = None) -> ImportedSAE:
    """A SAELens folder with a top-k SAE (cfg.json, sae_weights.safetensors)."""
    cfg = read_json(path / "cfg.json") if (path / "cfg.json").is_file() else None
    if cfg is None:
        raise InputError(f"{path} has sae_weights.safetensors but no cfg.json")
    arch = cfg.get("architecture", "standard")
    act = cfg.get("activation_fn") or cfg.get("activation_fn_str")
    k_cfg = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if arch != "topk" and act != "topk":
        raise InputError(f"{path}: only top-k SAELens SAEs can be imported (this one is '{arch}')")
    norm = cfg.get("normalize_activations") or "none"
    if norm != "none":
        raise InputError(f"{path}: the SAE normalises its inputs ('{norm}'); only 'none' can be imported exactly")
    k = k or k_cfg
    if not k:
        raise InputError(f"{path}/cfg.json names no k; set `k`")
    t = _load_safetensors(path / "sae_weights.safetensors")
    _need(t, ("W_enc", "b_enc", "W_dec", "b_dec"), path / "sae_weights.safetensors", "SAELens weight file")
    W_enc, b_enc, b_dec = t["W_enc"].T, t["b_enc"], t["b_dec"]
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + W_enc @ b_dec  # W x + b_enc == W (x - b_dec) + (b_enc + W b_dec)
    sae = _topk_sae(W_enc, b_enc, t["W_dec"], b_dec, int(k), extra=_embedsae_extra(cfg.get("metadata")))
    meta = cfg.get("metadata") or {}
    model = meta.get("model_name") or cfg.get("model_name")
    return ImportedSAE(sae, "saelens", str(path), model, {"hook_name": meta.get("hook_name") or cfg.get("hook_name")})


def write_saelens(sae: SAE, out: Path, *, model_id: str | None, log10_density: np.ndarray | None = None) -> None:
    """Write a SAELens top-k folder: cfg.json, sae_weights.safetensors and (given densities) sparsity.safetensors."""
    w = _plain(sae)
    _pursuit_note(sae)
    out.mkdir(parents=True, exist_ok=True)
    _save_safetensors({"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_lat"], "W_dec": w["W_dec"], "b_dec": w["b_pre"]},
                      out / "sae_weights.safetensors")
    if log10_density is not None:
        _save_safetensors({"sparsity": torch.from_numpy(np.asarray(log10_density, np.float32))}, out / "sparsity.safetensors")
    write_json(out / "cfg.json", {
        "architecture": "topk",
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.n_latents,
        "k": sae.cfg.k,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "metadata": {
            "model_name": model_id,
            "hook_name": SAELENS_HOOK,
            "hook_head_index": None,
            "prepend_bos": False,
            "context_size": 1,
            "embedsae": sae.cfg.to_dict(),
        },
    })


def _embedsae_extra(meta: dict[str, Any] | None) -> dict[str, Any]:
    inner = (meta or {}).get("embedsae") or {}
    return dict(inner.get("extra") or {})


# ---------------------------------------------------------------------------- sparsify
def read_sparsify(path: Path, *, k: int | None = None) -> ImportedSAE:
    """A sparsify (EleutherAI) folder with a top-k SAE (cfg.json, sae.safetensors)."""
    cfg = read_json(path / "cfg.json")
    if cfg.get("activation", "topk") != "topk":
        raise InputError(f"{path}: only top-k sparsify SAEs can be imported (activation '{cfg['activation']}')")
    if cfg.get("skip_connection") or cfg.get("transcode"):
        raise InputError(f"{path}: SAEs with a skip connection or transcoders cannot be imported")
    k = k or cfg.get("k")
    if not k:
        raise InputError(f"{path}/cfg.json names no k; set `k`")
    t = _load_safetensors(path / "sae.safetensors")
    _need(t, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), path / "sae.safetensors", "sparsify weight file")
    sae = _topk_sae(t["encoder.weight"], t["encoder.bias"], t["W_dec"], t["b_dec"], int(k),
                    extra=dict((cfg.get("embedsae") or {}).get("extra") or {}))
    return ImportedSAE(sae, "sparsify", str(path), cfg.get("model_id") or (cfg.get("embedsae") or {}).get("model_id"))


def write_sparsify(sae: SAE, out: Path, *, model_id: str | None) -> None:
    """Write a sparsify folder (the layout of one hookpoint): cfg.json and sae.safetensors."""
    w = _plain(sae)
    _pursuit_note(sae)
    out.mkdir(parents=True, exist_ok=True)
    _save_safetensors({"encoder.weight": w["W_enc"], "encoder.bias": w["b_lat"], "W_dec": w["W_dec"], "b_dec": w["b_pre"]},
                      out / "sae.safetensors")
    d, n = sae.cfg.d_in, sae.cfg.n_latents
    write_json(out / "cfg.json", {
        "activation": "topk",
        "expansion_factor": max(1, n // d),
        "normalize_decoder": True,
        "num_latents": n,
        "k": sae.cfg.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d,
        "model_id": model_id,
        "embedsae": sae.cfg.to_dict(),
    })


# ---------------------------------------------------------------------------- embedsae
def read_embedsae(path: Path, *, k: int | None = None) -> ImportedSAE:
    """An embedsae SAE folder (cfg.json + sae.safetensors), as `SAE.save` writes it."""
    sae = load_sae(path)
    if k is not None:
        if not 0 < k <= sae.cfg.n_latents:
            raise InputError(f"k must be between 1 and the number of latents ({sae.cfg.n_latents}); got {k}")
        sae.cfg.k = k
    return ImportedSAE(sae, "embedsae", str(path), sae.cfg.model_id)


def write_embedsae(sae: SAE, out: Path, *, model_id: str | None) -> None:
    """Write the SAE with `SAE.save` (keeps its encoder, pursuit included)."""
    if model_id and not sae.cfg.model_id:
        sae.cfg.model_id = model_id
    sae.save(out)

