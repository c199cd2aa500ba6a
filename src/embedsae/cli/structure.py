"""Structure commands: families, neighbours, match."""

from __future__ import annotations

import argparse
import json
from typing import Any

import embedsae

from .bars import progress_callback
from .options import add_settings_args, settings_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    from ..structure.settings import FamilySettings

    p = sub.add_parser("families", help="feature families of an SAE (co-occurrence trees), printed as a tree")
    p.add_argument("workspace", help="workspace directory")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--json", action="store_true", help="print one JSON object: families and stats")
    p.add_argument("--top", type=int, default=30, help="families to print (text output; default 30, 0 = all)")
    p.add_argument("--max-children", type=int, default=40,
                   help="children printed per family (text output; default 40, 0 = all)")
    add_settings_args(p, FamilySettings, exclude=("random_permutations", "seed"))
    p.add_argument("--no-figures", action="store_true", help="do not write families.html / families.png")
    p.add_argument("--rebuild", action="store_true",
                   help="find the families again even when stored ones with the same settings exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("neighbours", aliases=["neighbors"], help="features near one feature: decoder, co-occurrence, correlation")
    p.add_argument("workspace")
    p.add_argument("feature", help="feature id")
    p.add_argument("--sae", help="SAE name (default: the latest trained)")
    p.add_argument("--top", type=int, default=10, help="neighbours per list (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_neighbours)

    p = sub.add_parser("match", help="match the features of two SAEs by decoder cosine; how features split")
    p.add_argument("workspace")
    p.add_argument("--from", dest="from_sae", required=True, metavar="NAME_A", help="the smaller SAE")
    p.add_argument("--to", dest="to_sae", required=True, metavar="NAME_B", help="the larger SAE")
    p.add_argument("--min-cosine", type=float, default=0.35,
                   help="cosine a larger-SAE feature needs to hang under its closest feature (default 0.35; "
                        "chance level is about sqrt(2 ln N / d))")
    p.add_argument("--top", type=int, default=15, help="splitting trees to print (text output; default 15)")
    p.add_argument("--json", action="store_true", help="print one JSON object: summary and every feature's match")
    p.set_defaults(func=cmd_match)


def cmd_families(args: argparse.Namespace) -> int:
    from ..structure.settings import FamilySettings

    given = settings_kwargs(FamilySettings, args)
    project = embedsae.open(args.workspace, args.sae)
    data = None if args.rebuild else project.families()
    if data is not None and all(data["settings"].get(k) == v for k, v in given.items()):
        written, paths = False, project.family_files()  # viewing: the stored families, nothing written
    else:
        result = project.build_families(progress=progress_callback(args.quiet), settings=FamilySettings(**given),
                                        figures=not args.no_figures)
        written, paths, data = True, result.files, project.families()
    if args.json:
        print(json.dumps({**data, "files": paths}))
        return 0
    print(format_families(data, top=args.top, max_children=args.max_children))
    print(f"\n{'wrote' if written else 'stored in'} {', '.join(paths.values())}")
    return 0


def format_families(data: dict[str, Any], top: int = 30, max_children: int = 0) -> str:
    """The families as an indented tree: the family label, then each child with its label, by depth."""
    s = data["stats"]
    lines = [
        f"{s['families']} families of SAE {data['sae']} (labels: {data['label_source']})",
        f"  co-occurrence ratio {_f(s['cooccurrence_ratio'])}   block ratio {_f(s['block_ratio'])} "
        f"(random {_f(s['block_ratio_random'])})   coverage {s['coverage']:.1%} of {s['coverage_base']} features",
    ]
    fams = data["families"] if top <= 0 else data["families"][:top]
    for n, fam in enumerate(fams, 1):
        lines.append("")
        lines.append(f"{n}. {fam['label']}  [parent #{fam['parent']}, {fam['size']} children]")
        rows = list(zip(fam["children"], fam["child_labels"], fam["depth"]))
        for c, lab, depth in rows if max_children <= 0 else rows[:max_children]:
            lines.append(f"{'    ' * depth}#{c} {lab}")
        if 0 < max_children < len(rows):
            lines.append(f"    ... {len(rows) - max_children} more children (--max-children 0 shows all)")
    if top > 0 and len(data["families"]) > top:
        lines.append(f"\n... {len(data['families']) - top} more families (--top 0 shows all, --json gives every one)")
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def cmd_neighbours(args: argparse.Namespace) -> int:
    data = embedsae.open(args.workspace, args.sae).neighbours(args.feature, top=args.top)
    if args.json:
        print(json.dumps(data))
        return 0
    print(f"feature #{data['feature']} of {data['sae']}: {data['label'] or '(no label)'}  "
          f"(fires in {data['documents']} documents, density {data['density']:.4f})")
    sections = [
        ("most similar decoder directions", "decoder_similar", lambda r: f"cos {r['cosine']:+.3f}"),
        ("most opposite decoder directions", "decoder_opposite", lambda r: f"cos {r['cosine']:+.3f}"),
        ("most co-occurring (documents together)", "cooccurring", lambda r: f"{int(r['count']):>5}  PMI {r['pmi']:+.2f}"),
        ("highest PMI (at least 3 documents together)", "cooccurring_pmi",
         lambda r: f"PMI {r['pmi']:+.2f}  n={int(r['count'])}"),
        ("most correlated activations", "correlated", lambda r: f"r {r['correlation']:+.3f}"),
    ]
    for title, key, fmt in sections:
        print(f"\n{title}:")
        if not data[key]:
            print("  (none)")
        for r in data[key]:
            print(f"  #{r['id']:<6} {fmt(r)}  {r['label']}")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    data = embedsae.open(args.workspace, args.from_sae).match(args.to_sae, min_cosine=args.min_cosine)
    if args.json:
        print(json.dumps(data))
        return 0
    print(format_match(data, top=args.top))
    return 0


def format_match(data: dict[str, Any], top: int = 15) -> str:
    """Summary of a match and the largest splitting trees, with labels."""
    s = data["summary"]
    lines = [
        f"{data['from']} ({s['from_alive']} alive of {s['from_latents']}) -> {data['to']} "
        f"({s['to_alive']} alive of {s['to_latents']})",
        f"  mean best decoder cosine {_f(s['mean_best_cosine'])}; {_f(100 * (s['share_cosine_0.9'] or 0))}% "
        f"of features have a match with cosine >= 0.9",
        f"  {s['split']} features split (mean {s['mean_children_of_split']:.1f} children), {s['kept']} map to one "
        f"feature, {s['without_children']} to none; {s['new']} features of {data['to']} are new "
        f"(cosine < {s['min_cosine']} to every feature of {data['from']})",
    ]
    if s["same_id_share"] > 0.5:
        lines.append(f"  warning: {s['same_id_share']:.0%} of features match the feature with the same id: the two SAEs "
                     "likely started from the same random initialisation (same --seed), so matches mostly reflect "
                     "it; train one with another --seed for an independent comparison")
    splits = [m for m in data["matches"] if len(m["children"]) >= 2][: max(top, 0)]
    for m in splits:
        lines.append("")
        lines.append(f"#{m['id']} {m['label'] or '(no label)'}  -> splits into {len(m['children'])}")
        for n, c in enumerate(m["children"]):
            branch = "└─" if n == len(m["children"]) - 1 else "├─"
            lines.append(f"   {branch} #{c['id']:<6} cos {c['cosine']:.2f}  {c['label']}")
    return "\n".join(lines)
