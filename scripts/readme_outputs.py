"""Regenerate the example outputs in README.md from real runs, so they stay true.

    python scripts/readme_outputs.py --demo demo-ws --arxiv ws-arxiv [--cranfield cran] [--check]

Each example in the README sits between `<!-- output: NAME -->` and `<!-- /output -->` and is a fenced block
whose first line is the command (`$ embedsae ...`, with the workspace written as in the README). The script
runs each command on the workspaces given (their paths replace the README's names), and writes the output
back under the command. Blocks whose workspace was not given are left as they are. `--check` only reports
which blocks differ (exit 1 when any does).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- output: (?P<name>[\w-]+) -->\n```\w*\n)(?P<body>.*?)(```\n<!-- /output -->)", re.S)
NAMES = {"demo": "demo-ws", "arxiv": "ws-arxiv", "cranfield": "cran"}
"""How the README writes each workspace."""


def run(command: str, paths: dict[str, str]) -> str | None:
    """The output of one README command run on the given workspaces (None when one of them was not given)."""
    argv = shlex.split(command)
    real = []
    for arg in argv:
        key = next((k for k, v in NAMES.items() if arg == v), None)
        if key is not None:
            if key not in paths:
                return None
            arg = paths[key]
        real.append(arg)
    if real[0] == "embedsae":
        real = [sys.executable, "-m", "embedsae", *real[1:]]
    done = subprocess.run(real, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"`{command}` failed ({done.returncode}):\n{done.stderr}")
    out = done.stdout
    for key, path in paths.items():  # show the README's names, not the local paths
        out = out.replace(str(Path(path)), NAMES[key])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, name in NAMES.items():
        ap.add_argument(f"--{key}", metavar="WS", help=f"the workspace the README calls {name}")
    ap.add_argument("--check", action="store_true", help="report blocks that differ; change nothing")
    args = ap.parse_args()
    paths = {k: getattr(args, k) for k in NAMES if getattr(args, k)}
    text = README.read_text(encoding="utf-8")
    changed = []

    def replace(m: re.Match) -> str:
        body = m.group("body")
        first = body.splitlines()[0]
        if not first.startswith("$ "):
            raise SystemExit(f"block '{m.group('name')}' does not start with '$ command'")
        command = first[2:].split("  #")[0].strip()
        out = run(command, paths)
        if out is None:
            return m.group(0)
        new = f"{first}\n{out.rstrip()}\n"
        if new != body:
            changed.append(m.group("name"))
        return m.group(1) + new + m.group(4)

    text = BLOCK.sub(replace, text)
    if args.check:
        print("differ: " + (", ".join(changed) or "none"))
        return 1 if changed else 0
    README.write_text(text, encoding="utf-8")
    print(f"regenerated {len(changed)} block(s): {', '.join(changed) or 'none changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
