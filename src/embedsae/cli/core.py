"""Foundation commands: embed, train, evaluate, sweep, info, run."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

import embedsae

from ..data.embedding import EmbedSettings
from ..errors import InputError
from ..registry import EMBEDDING_BACKENDS
from .bars import progress_callback
from .options import add_settings_args, settings_kwargs

if TYPE_CHECKING:
    from ..project import Metrics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="read a corpus and embed it into a workspace")
    _corpus_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("train", help="train a sparse autoencoder on a workspace's vectors")
    p.add_argument("workspace", help="workspace directory")
    _train_args(p)
    p.add_argument("--name", help="SAE name (default: ARCH-kK-nN)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same name")
    p.add_argument("--train-on", metavar="WS", help="train on another workspace's vectors (same embedding model)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="quality figures of a trained SAE")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--recompute", action="store_true",
                   help="evaluate again even when stored figures exist (writes metrics.json and density.png)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="train and evaluate a grid of k x latents")
    p.add_argument("workspace")
    p.add_argument("--k", default="16,32,64", help="comma-separated k values")
    p.add_argument("--latents", default="3072,6144", help="comma-separated latent counts")
    _train_args(p, grid=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("info", help="what a workspace holds")
    p.add_argument("workspace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("check", help="read every file of a workspace and verify its vectors' checksums",
                       description="Reads every file of a workspace whole (corpus, vectors with their recorded sha256, "
                                   "each SAE's files, the indexes) and names each damaged one with how to make it "
                                   "again. Exit code 2 when a file is damaged. Writes nothing.")
    p.add_argument("workspace")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="the whole pipeline on a corpus: embed, train, evaluate (and later stages)")
    _corpus_args(p, demo=True)
    _train_args(p)
    p.set_defaults(func=cmd_run)


def _corpus_args(p: argparse.ArgumentParser, demo: bool = False) -> None:
    p.add_argument("corpus", nargs="?" if demo else None, help="JSONL/JSON/CSV/Parquet file or BEIR folder")
    if demo:
        p.add_argument("--demo", action="store_true", help="use the Wikipedia demo corpus (pip install 'embedsae[demo]')")
    p.add_argument("-o", "--output", required=True, metavar="WS", help="workspace directory to write")
    p.add_argument("--text-field", help="field holding the text (default: text/abstract/body/...)")
    p.add_argument("--title-field", help="field holding a title, joined before the text (default: title if present)")
    p.add_argument("--id-field", help="field holding unique ids (default: id/_id/..., else row numbers)")
    p.add_argument("--model", help="sentence-transformers model name or path (default: packaged all-MiniLM-L6-v2), "
                                   "or openai:NAME for an OpenAI-compatible /v1/embeddings endpoint")
    p.add_argument("--embed-base-url", metavar="URL", help="API root of the openai: endpoint, e.g. http://localhost:8000/v1 "
                                                           "(default $OPENAI_BASE_URL, else OpenAI's)")
    p.add_argument("--embed-api-key-env", metavar="VAR", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key (default OPENAI_API_KEY; never stored)")
    p.add_argument("--vectors", metavar="FILE.npy", help="precomputed vectors, one row per corpus record in order")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise vectors (default: on for models, off for --vectors)")
    p.add_argument("--embed-batch-size", type=int, default=64, help="texts per embedding batch")
    p.add_argument("--backend", choices=["auto", *EMBEDDING_BACKENDS], default="auto",
                   help="embedding engine (default auto: on CPU the fastest installed; onnx/openvino need "
                        "pip install 'embedsae[fast]')")
    p.add_argument("--limit", type=int, help="use only the first N records")
    p.add_argument("--overwrite", action="store_true", help="replace a workspace made with another model")
    add_settings_args(p.add_argument_group("storage and scale-out of the embedding"), EmbedSettings)


def _train_args(p: argparse.ArgumentParser, grid: bool = False) -> None:
    from ..sae.config import SAEConfig, TrainConfig

    if not grid:
        add_settings_args(p, SAEConfig, only=("k", "n_latents"), flags={"n_latents": "--latents"})
    add_settings_args(p, SAEConfig, only=("architecture", "pursuit"))
    add_settings_args(p, TrainConfig, only=("epochs", "batch_size", "budget_vectors", "lr", "seed", "noise", "init", "device",
                                            "checkpoint_every", "in_memory_bytes", "shuffle_buffer"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, as keyword arguments of Project.train."""
    from ..sae.config import SAEConfig, TrainConfig

    kwargs = {**settings_kwargs(TrainConfig, args), **settings_kwargs(SAEConfig, args)}
    if "n_latents" in kwargs:
        kwargs["latents"] = kwargs.pop("n_latents")
    return kwargs


def _embed_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The embedding settings given on the command line, as keyword arguments of Project.embed."""
    demo = getattr(args, "demo", False)
    if not demo and args.corpus is None:
        raise InputError("give a corpus file or folder, or --demo for the Wikipedia demo corpus")
    return dict(
        demo=demo, model=args.model, vectors=args.vectors, text_field=args.text_field, title_field=args.title_field,
        id_field=args.id_field, normalize=args.normalize, batch_size=args.embed_batch_size, backend=args.backend,
        limit=args.limit, overwrite=args.overwrite, embedder_options=_endpoint_options(args),
        settings=EmbedSettings(**settings_kwargs(EmbedSettings, args)),
    )


def _endpoint_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """Endpoint settings for an openai: model (None for sentence-transformers models)."""
    if not (args.model or "").startswith("openai:"):
        if args.embed_base_url:
            raise InputError("--embed-base-url applies to --model openai:NAME only")
        return None
    return {"base_url": args.embed_base_url, "api_key_env": args.embed_api_key_env}


def cmd_embed(args: argparse.Namespace) -> int:
    p = embedsae.Project.embed(args.corpus, args.output, progress=progress_callback(args.quiet), **_embed_kwargs(args))
    info = p.info()
    print(f"workspace {p.path}: {info.documents} documents, {info.model['dim']}-d vectors of {info.model['id']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    trained = embedsae.Project(args.workspace).train(name=args.name, train_on=args.train_on, resume=args.resume,
                                            progress=progress_callback(args.quiet), **_train_kwargs(args))
    if trained is not None:  # data-parallel helpers (torchrun) train; rank 0 reports
        print_metrics(trained.metrics())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    m = embedsae.Project(args.workspace, args.sae).evaluate(recompute=args.recompute, progress=progress_callback(False))
    if args.json:
        print(json.dumps(m.to_dict()))
    else:
        print_metrics(m)
    return 0


def print_metrics(m: Metrics | None) -> None:
    if m is None:
        print("not evaluated yet: run embedsae evaluate")
        return
    print(f"SAE {m.sae}: k={m.k}, {m.n_latents} latents, evaluated on {m.n_vectors} vectors")
    print(f"  NMSE held-out   {m.nmse:.4f}   (train {m.nmse_train:.4f}, {m.n_heldout} held out)")
    print(f"  L0              {m.l0:.1f}")
    print(f"  dead latents    {m.dead_latents} ({m.dead_fraction:.2%})")
    print(f"  log10 density   {m.log_feature_density:.3f} (mean over alive latents)")
    print(f"  mean activation {m.act_mean:.4f}")
    if m.neighbour_overlap_at_10 is not None:
        print(f"  10-NN overlap   {m.neighbour_overlap_at_10:.3f} (original vs reconstructed)")


def cmd_sweep(args: argparse.Namespace) -> int:
    ks, latents = _int_list(args.k, "--k"), _int_list(args.latents, "--latents")
    kwargs = _train_kwargs(args)
    kwargs.pop("k", None)  # the grid's
    from ..pipeline import markdown_table

    table = embedsae.Project(args.workspace).sweep(ks, latents, progress=progress_callback(args.quiet), **kwargs)
    print(markdown_table(table))
    print(f"wrote {args.workspace}/sweep/sweep.md, sweep.csv and sweep.png")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InputError(f"{flag} takes comma-separated whole numbers, got '{text}'") from exc
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{flag} takes positive whole numbers, got '{text}'")
    return values


def cmd_info(args: argparse.Namespace) -> int:
    p = embedsae.Project(args.workspace)
    info = p.info()
    if args.json:
        print(json.dumps({"path": str(p.path), **info.to_dict()}))
        return 0
    model = info.model
    print(f"workspace  {p.path}")
    print(f"model      {model['id']} ({model['dim']}-d, normalised: {model['normalized']})")
    print(f"documents  {info.documents}  columns: {', '.join(info.columns)}")
    print(f"stages     {', '.join(info.stages)}")
    for s in info.saes:
        mark = "*" if s.name == info.latest_sae else " "
        nmse = f"{s.nmse:.4f}" if s.nmse is not None else "-"
        dead = f"{s.dead_fraction:.2%}" if s.dead_fraction is not None else "-"
        print(f"  {mark} {s.name:<28} {s.architecture:<9} k={s.k:<4} latents={s.latents:<6} NMSE={nmse} dead={dead}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    results = embedsae.Project.check(args.workspace)
    for r in results:
        if args.json:
            print(json.dumps(r.to_dict()))
        else:
            print(f"{'ok' if r.ok else 'DAMAGED':<8} {r.path}" + ("" if r.ok else f": {r.message}"))
    bad = [r for r in results if not r.ok]
    if not args.json:
        print(f"{len(results) - len(bad)} of {len(results)} files read well" + (f"; {len(bad)} damaged" if bad else ""))
    return 2 if bad else 0


def cmd_run(args: argparse.Namespace) -> int:
    p = embedsae.Project.run(args.corpus, args.output, progress=progress_callback(args.quiet), embed=_embed_kwargs(args),
                    **_train_kwargs(args))
    print_metrics(p.metrics())
    folder = p.workspace.sae_dir(p.sae_name)
    figures = [folder / f for f in ("train_log.png", "density.png", "families.html", "families.png")]
    print("\nlook at: " + ", ".join(str(f) for f in figures if f.exists()))
    print(f"next:    embedsae info {p.path}  |  embedsae features {p.path} --sort score  |  "
          f'embedsae search {p.path} "your query" --mode hybrid')
    print(f"explore: embedsae serve {p.path}   (the web app: search, features, families, map)")
    return 0
