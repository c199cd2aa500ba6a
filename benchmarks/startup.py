"""Start-up time of each CLI command, and whether it imports torch or sentence-transformers.

    python benchmarks/startup.py WS [--rounds 5] [--feature 5] [--query "boundary layer"]

Each command runs as a whole process (`python -m embedsae ...`), the commands alternated `--rounds` times;
the median wall time is printed with the import baseline of the same run (`python -c "import embedsae"`), and,
from one extra run under `-X importtime`, whether torch / sentence_transformers were imported and the seconds
spent importing them. WS must be a trained, interpreted workspace (for `features`, `feature`, `search`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "sentence_transformers")


def commands(ws: str, feature: int, query: str) -> dict[str, list[str]]:
    return {
        "import embedsae (baseline)": ["-c", "import embedsae"],
        "--help": ["-m", "embedsae", "--help"],
        "info": ["-m", "embedsae", "info", ws],
        "features": ["-m", "embedsae", "features", ws, "--limit", "20"],
        "feature": ["-m", "embedsae", "feature", ws, str(feature)],
        "neighbours": ["-m", "embedsae", "neighbours", ws, str(feature)],
        "search": ["-m", "embedsae", "search", ws, query, "--top", "5"],
    }


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done.stderr


def heavy_imports(importtime_log: str) -> dict[str, float]:
    """Cumulative import seconds of each heavy top-level package found in a `-X importtime` log."""
    found: dict[str, float] = {}
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (p.strip() for p in line.split("|", 2)[0:3])
        if name in HEAVY:
            found[name] = int(cumulative) / 1e6
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--feature", type=int, default=5)
    ap.add_argument("--query", default="boundary layer transition")
    args = ap.parse_args()
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmds = commands(args.workspace, args.feature, args.query)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.rounds):
        for name, argv in cmds.items():
            times[name].append(run(argv, env)[0])
    base = statistics.median(times["import embedsae (baseline)"])
    print(f"medians of {args.rounds} alternated rounds, whole processes ({sys.executable})")
    print(f"{'command':28s} {'wall s':>7s} {'- baseline':>10s}  heavy imports (s)")
    for name, argv in cmds.items():
        med = statistics.median(times[name])
        heavy = heavy_imports(run(["-X", "importtime", *argv], env)[1])
        text = ", ".join(f"{k} {v:.2f}" for k, v in heavy.items()) or "none"
        print(f"{name:28s} {med:7.2f} {med - base:10.2f}  {text}")


if __name__ == "__main__":
    main()
