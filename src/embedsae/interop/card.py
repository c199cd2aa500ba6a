"""A Hugging Face model card (README.md) for an exported SAE, with the paper's metrics table."""

from __future__ import annotations

from typing import Any

from ..sae import SAE

LOAD_SNIPPETS = {
    "embedsae": (
        "```python\nfrom embedsae.sae import load_sae\n\nsae = load_sae(\"{path}\")\n"
        "codes = sae.encode_sparse(vectors)  # torch float32 tensor (batch, {d})\n```\n"
        "or add it to a workspace of the same embedding model: `embedsae import-sae {path} --into WS`"
    ),
    "saelens": (
        "```python\nfrom sae_lens import SAE\n\nsae = SAE.load_from_disk(\"{path}\")\n"
        "codes = sae.encode(vectors)  # (batch, {n})\n```\n"
        "The SAE reads whole-text embeddings (`hook_name` = `sentence_embedding`), not a transformer layer."
    ),
    "sparsify": (
        "```python\nfrom sparsify import SparseCoder\n\nsae = SparseCoder.load_from_disk(\"{path}\")\n"
        "out = sae.encode(vectors)  # top_acts, top_indices\n```"
    ),
    "sentence-transformers": (
        "```python\nfrom sentence_transformers import SparseEncoder\n\nmodel = SparseEncoder(\"{path}\")\n"
        "codes = model.encode([\"a text\"])  # sparse (batch, {n})\n```"
    ),
}


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """The paper's table: k, n, NMSE, log10 feature density, mean activation, dead latents (%)."""
    lines = ["| k | n | NMSE | log density | mean activation | dead % |", "| --- | --- | --- | --- | --- | --- |"]
    for m in rows:
        lines.append(
            f"| {m['k']} | {m['n_latents']} | {m['nmse']:.4f} | {m['log_feature_density']:.3f} | "
            f"{m['act_mean']:.4f} | {100 * m['dead_fraction']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def model_card(sae: SAE, fmt: str, *, name: str, model_id: str | None, metrics: dict[str, Any] | None,
               documents: int | None, path: str = ".") -> str:
    """README.md text: hub front matter, what the SAE is, its metrics and how to load it."""
    cfg = sae.cfg
    library = {"saelens": "saelens", "sentence-transformers": "sentence-transformers"}.get(fmt, "embedsae")
    tags = ["sparse-autoencoder", "embeddings", "interpretability", "embedsae"]
    front = [f"library_name: {library}", "tags:"] + [f"- {t}" for t in tags]
    if model_id and not model_id.startswith(("precomputed", "openai:")) and "/" in model_id:
        front.append(f"base_model: {model_id}")
    encoder = (f"matching pursuit over the {cfg.pursuit * cfg.k} strongest encoder latents" if cfg.pursuit
               else "plain top-k (keep the k largest pre-activations, then ReLU)")
    out = ["---", *front, "---", "", f"# {name}", "",
           f"A {cfg.architecture} sparse autoencoder with {cfg.n_latents} latents (k = {cfg.k}) over "
           f"{cfg.d_in}-dimensional embeddings of `{model_id or 'an unnamed model'}`, exported by embedsae "
           f"in the {fmt} format.", "",
           f"- encoder: a = W_enc (x - b_pre) + b_lat, then {encoder}",
           "- decoder: x_hat = W_dec z + b_pre, unit-norm decoder rows", ""]
    if metrics:
        where = f" on {documents} documents" if documents else ""
        held = f" ({metrics['n_heldout']} held out for NMSE)" if metrics.get("n_heldout") else ""
        out += [f"## Quality{where}{held}", "", metrics_table([metrics]),
                "NMSE = ||x - x_hat||² / ||x - mean(x)||²; log density = mean log10 share of documents on which an "
                "alive latent fires; mean activation over firing latents; dead = latents that never fire.", ""]
    load = LOAD_SNIPPETS[fmt].format(path=path, d=cfg.d_in, n=cfg.n_latents)
    if fmt == "sentence-transformers" and (cfg.pursuit or cfg.architecture != "topk"):
        load = load.replace(f'SparseEncoder("{path}")', f'SparseEncoder("{path}", trust_remote_code=True)') + (
            "\nThis encoder is not plain top-k, so the last module is embedsae's `EmbedSAEModule`: install embedsae "
            "and pass `trust_remote_code=True`.")
    out += ["## Load", "", load, ""]
    return "\n".join(out)
