"""Interpretation commands: interpret, features, feature."""

from __future__ import annotations

import argparse
import json
import sys

import embedsae

from ..errors import InputError
from ..project import FEATURE_SORTS, FeatureScores
from .bars import progress_callback
from .format import fmt, render_card


def register(sub: argparse._SubParsersAction) -> None:
    from ..interpret.examples import ExampleConfig
    from ..interpret.llm import LLMConfig
    from ..interpret.stage import CleanConfig, InterpretSettings
    from .options import add_settings_args

    p = sub.add_parser("interpret", help="label and score every alive feature of an SAE (resumable)")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    add_settings_args(p, InterpretSettings, flags={"max_features": "--features"})
    add_settings_args(p.add_argument_group("LLM: an endpoint or a local model (for --labeller llm and the LLM detection scorer)"),
                      LLMConfig, prefix="llm", flags={"api_key_env": "--llm-key-env"})
    add_settings_args(p.add_argument_group("examples shown to the labeller and held out for scoring"),
                      ExampleConfig, prefix="examples")
    add_settings_args(p.add_argument_group("clean-feature filter"), CleanConfig, prefix="clean")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_interpret)

    p = sub.add_parser("features", help="list the interpreted features of an SAE")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--search", metavar="TEXT", help="only features whose label contains TEXT")
    p.add_argument("--sort", choices=FEATURE_SORTS, default="id",
                   help="order (score: embedding AUC, combined over random and hard negatives where stored; ties by how many documents the feature fires on)")
    p.add_argument("--clean", action="store_true", help="only features passing the clean-feature filter")
    p.add_argument("--limit", type=int, help="show at most N features")
    p.add_argument("--export", metavar="FILE", help="write the table to FILE (.csv, .json or .parquet)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("feature", help="a feature card: label, scores, activation histogram, top documents")
    p.add_argument("workspace")
    p.add_argument("id", type=int)
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--top", type=int, default=8, help="top documents to show (default 8)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_feature)


def cmd_interpret(args: argparse.Namespace) -> int:
    from ..interpret.examples import ExampleConfig
    from ..interpret.llm import LLMConfig
    from ..interpret.stage import CleanConfig, InterpretSettings
    from .options import settings_kwargs

    settings = InterpretSettings(**settings_kwargs(InterpretSettings, args))
    llm_kw = settings_kwargs(LLMConfig, args, prefix="llm")
    llm = None
    if settings.labeller == "llm" or llm_kw:
        if not llm_kw.get("model") and not llm_kw.get("local_model"):
            raise InputError("the LLM labeller and scorer need --llm-base-url URL and --llm-model NAME (an endpoint), "
                             "or --llm-model PATH alone (a local model: a Hugging Face folder or a .gguf file)")
        llm = LLMConfig(**llm_kw)
    s = embedsae.open(args.workspace, args.sae).interpret(
        settings=settings, llm=llm, examples=ExampleConfig(**settings_kwargs(ExampleConfig, args, prefix="examples")),
        clean=CleanConfig(**settings_kwargs(CleanConfig, args, prefix="clean")), progress=progress_callback(args.quiet))
    if args.json:
        print(json.dumps(s.to_dict()))
        return 0
    print(f"SAE {s.sae}: {s.interpreted} features interpreted by {s.labeller} "
          f"({s.skipped} from earlier runs, {s.failed} failed), {s.alive} alive of {s.features}")
    print(f"  name AUC            {fmt(s.mean_embedding_auc)}   (median {fmt(s.median_embedding_auc)}); "
          f"against hard negatives {fmt(s.mean_embedding_auc_hard)}")
    if s.mean_description_auc is not None:
        print(f"  description AUC     {fmt(s.mean_description_auc)}; against hard negatives "
              f"{fmt(s.mean_description_auc_hard)}")
    if s.single_phrase is not None:
        print(f"  single phrases      {s.single_phrase:.1%} of names   ({s.mixtures} features are mixtures)")
    if s.distinct_names is not None:
        print(f"  distinct names      {s.distinct_names:.1%} of features have a name no other feature has")
    if s.mean_llm_f1 is not None:
        print(f"  mean LLM F1         {fmt(s.mean_llm_f1)}")
    if s.mean_category_f1 is not None:
        print(f"  mean category F1    {fmt(s.mean_category_f1)}")
    print(f"  clean features      {s.clean}")
    if s.llm_usage:
        u = s.llm_usage
        print(f"  LLM                 {u['requests']} requests, {u['cache_hits']} cached, "
              f"{u['prompt_tokens']} prompt + {u['completion_tokens']} completion tokens")
    print(f"  time                {s.seconds:.1f}s")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise InputError(f"--limit takes 0 or a positive number, got {args.limit}")
    p = embedsae.open(args.workspace, args.sae)
    query = dict(search=args.search, sort=args.sort, clean=args.clean, limit=args.limit)
    if args.export:
        path, n = p.export_features(args.export, **query)
        print(f"wrote {n} features to {path}", file=sys.stderr)
        if not args.json:
            return 0
    page = p.features(**query)
    if args.json:
        print(json.dumps([r.to_dict() for r in page.items]))
        return 0
    columns = FeatureScores.columns(FeatureScores.LISTED)
    print(f"{'id':>5}  {'density':>8}  {'act_mean':>8}  " + "  ".join(f"{t:>10}" for _, t, _ in columns)
          + f"  {'mix':>3}  {'clean':>5}  name  (description)")
    for r in page.items:
        scores = "  ".join(f"{fmt(getattr(r.scores, k), 2):>10}" for k, _, _ in columns)
        described = f"  ({r.description})" if r.description else ""
        print(f"{r.id:>5}  {fmt(r.density, 4):>8}  {fmt(r.act_mean, 4):>8}  {scores}  "
              f"{'yes' if r.scores.mixture else '':>3}  {'yes' if r.clean else '':>5}  {r.label or ''}{described}")
    print(f"{len(page.items)} features", file=sys.stderr)
    return 0


def cmd_feature(args: argparse.Namespace) -> int:
    card = embedsae.open(args.workspace, args.sae).feature(args.id, top=args.top)
    if args.json:
        print(json.dumps(card.to_dict()))
    else:
        print(render_card(card))
    return 0
