"""Interoperability commands: import-sae (saerch .pth, SAELens, sparsify, embedsae) and export."""

from __future__ import annotations

import argparse
import json

import embedsae

from ..errors import InputError
from ..registry import EXPORT_FORMATS, SAE_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-sae", help="add an SAE of another tool (saerch .pth, SAELens, sparsify) to a workspace",
                       description="Add an SAE file or folder as a trained SAE of a workspace, then evaluate it. "
                                   "Formats: the saerch .pth files of O'Neill et al. ({domain}_{k}_{n}_{auxk}.pth), "
                                   "SAELens and sparsify folders, embedsae SAE folders (detected).")
    p.add_argument("source", nargs="?", help="SAE file (.pth) or folder")
    p.add_argument("--from-hub", metavar="REPO[/FILE]", help="download from the Hugging Face hub instead, e.g. "
                                                             "charlieoneill/embedding-saes/csLG_64_9216_128.pth")
    p.add_argument("--into", required=True, metavar="WS", help="workspace to add the SAE to")
    p.add_argument("--name", help="SAE name in the workspace (default: the file or folder name)")
    p.add_argument("--k", type=int, help="active latents per vector (default: from the file name or cfg.json)")
    p.add_argument("--format", choices=SAE_FORMATS.names(), help="skip format detection")
    p.add_argument("--trained-on", metavar="MODEL",
                   help="the embedding model the SAE was trained on, when its files name none or another name for "
                        "the workspace's model (saerch files: openai:text-embedding-3-small)")
    p.add_argument("--overwrite", action="store_true", help="replace an SAE of the same name")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write a workspace's SAE for SAELens, sparsify, sentence-transformers or embedsae",
                       description="Write an SAE as a Hugging Face hub-ready folder (files + README.md model card with "
                                   "its metrics). sentence-transformers: the embedding model and the SAE as one "
                                   "SparseEncoder (text in, sparse codes out).")
    p.add_argument("workspace")
    p.add_argument("--sae", help="SAE name (default: the latest)")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS.names())
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--no-card", action="store_true", help="leave out the README.md model card")
    p.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from .core import print_metrics

    if bool(args.source) == bool(args.from_hub):
        raise InputError("give either an SAE file or folder, or --from-hub REPO[/FILE]")
    m = embedsae.Project(args.into).import_sae(args.source, hub=args.from_hub, name=args.name, k=args.k,
                                                fmt=args.format, trained_on=args.trained_on, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(m.to_dict()))
    else:
        print_metrics(m)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = embedsae.open(args.workspace, args.sae).export(args.output, args.format, card=not args.no_card,
                                                          overwrite=args.overwrite)
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    print(f"wrote {out}: {', '.join(files)}")
    return 0
