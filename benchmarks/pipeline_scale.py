"""The whole pipeline at N documents on this machine: every stage as a whole `embedsae` process, with its wall
time and peak resident memory, killed when it passes a memory limit.

    python benchmarks/pipeline_scale.py 100000                  # builds the corpus, runs every stage
    python benchmarks/pipeline_scale.py 1004160 --max-rss 8     # the issue's 1 M run (6,276 x 160)
    python benchmarks/pipeline_scale.py 100000 --stages train interpret --keep   # some stages of a kept run

The corpus: the 6,276 shared arXiv abstracts (../shared/data/arxiv/abstracts.jsonl) repeated with unique ids
(`<id>~<copy>`) up to N records, written as the files a user would have (corpus.jsonl and corpus.parquet), and
their vectors: the abstract's MiniLM vector plus Gaussian noise of standard deviation 0.02 per coordinate,
renormalised (seeded; vectors.npy, written block by block). The base vectors are embedded once with the
packaged model through embedsae and cached under /work/cache/scale/ (EMBEDSAE_SCALE_CACHE).

Stages (each `embedsae ...` in its own process, with the defaults a user gets):
    embed       embed corpus.jsonl --vectors vectors.npy (and embed-parquet: the same from corpus.parquet)
    train       train WS
    interpret   interpret WS
    families    families WS
    index       index WS
    search-M    search WS QUERY --mode M, for each mode (dense, concept, hybrid, bm25)
    serve       embedsae serve WS; the features screen (/w/WS/features), a feature page and a hybrid search
                (/api/v1/.../search): the first request of each (cold) and the median of the next ones

Peak RSS is the process tree's high-water mark from wait4 (ru_maxrss); a watcher samples the tree's RSS every
0.2 s and kills it (SIGKILL) when it passes --max-rss GB, so a memory regression cannot take the machine down.
The table (stage, wall s, peak RSS GB, notes) is printed at the end and, with --out, written as Markdown.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ABSTRACTS = ROOT.parent / "shared" / "data" / "arxiv" / "abstracts.jsonl"
CACHE = Path(os.environ.get("EMBEDSAE_SCALE_CACHE", "/work/cache/scale"))
NOISE = 0.02
BLOCK = 65_536
MODES = ("dense", "concept", "hybrid", "bm25")
QUERY = "sparse autoencoders for interpretable embeddings"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The vectors are this (packaged) model's, so the workspace embeds queries with it."""
STAGES = ("embed", "embed-parquet", "train", "interpret", "families", "index", *(f"search-{m}" for m in MODES), "serve")


# ---------------------------------------------------------------------------- the corpus
def base_records() -> list[dict]:
    with open(ABSTRACTS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def base_vectors(records: list[dict]) -> np.ndarray:
    """The MiniLM vectors of the abstracts (as `embedsae embed` makes them), computed once and cached."""
    path = CACHE / "arxiv-minilm.npy"
    if path.is_file():
        x = np.load(path)
        if len(x) == len(records):
            return x
    from embedsae import pipeline

    print(f"embedding the {len(records):,} abstracts once (cached in {path}) ...", flush=True)
    ws = pipeline.embed(ABSTRACTS, CACHE / "arxiv-ws")
    x = ws.vectors.read(0, ws.n_documents)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def build_corpus(n: int, folder: Path, seed: int = 0) -> None:
    """corpus.jsonl, corpus.parquet and vectors.npy of n records (skipped when already there for this n)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / "corpus.json"
    if done.is_file() and json.loads(done.read_text()).get("n") == n:
        return
    folder.mkdir(parents=True, exist_ok=True)
    records = base_records()
    base = base_vectors(records).astype(np.float32)
    m = len(records)
    t0 = time.perf_counter()
    vec = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    rng = np.random.default_rng(seed)
    lines = [None] * m
    schema = pa.schema([("id", pa.string()), ("title", pa.string()), ("abstract", pa.string()),
                        ("categories", pa.list_(pa.string())), ("year", pa.int64()), ("source", pa.string())])
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out, \
            pq.ParquetWriter(folder / "corpus.parquet", schema) as pw:
        for start in range(0, n, BLOCK):
            rows = np.arange(start, min(start + BLOCK, n))
            src = rows % m
            x = base[src] + rng.standard_normal((len(rows), base.shape[1]), dtype=np.float32) * NOISE
            vec[start : start + len(rows)] = x / np.linalg.norm(x, axis=1, keepdims=True)
            batch: dict[str, list] = {name: [] for name in schema.names}
            for r, s in zip(rows.tolist(), src.tolist()):
                rec = records[s]
                rid = f"{rec['id']}~{r // m}"
                if lines[s] is None:  # the record's JSON with a placeholder id, made once per abstract
                    lines[s] = json.dumps({**rec, "id": "\x00"}, ensure_ascii=False)
                out.write(lines[s].replace('"\\u0000"', json.dumps(rid), 1) + "\n")
                for key, values in batch.items():
                    values.append(rid if key == "id" else rec.get(key))
            pw.write_table(pa.table(batch, schema=schema))
    vec.flush()
    del vec
    done.write_text(json.dumps({"n": n, "noise": NOISE, "seed": seed}))
    sizes = ", ".join(f"{p} {(folder / p).stat().st_size / 1e9:.2f} GB" for p in ("corpus.jsonl", "corpus.parquet", "vectors.npy"))
    print(f"wrote the corpus of {n:,} records in {time.perf_counter() - t0:.0f} s: {sizes}", flush=True)


# ---------------------------------------------------------------------------- measuring a process
def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) in bytes of a process and its descendants (0 when gone)."""
    total = anon = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
        todo += [int(k) for k in kids]
    return total, anon


class Watched:
    """A child process whose tree's RSS is sampled; killed (with its process group) above `limit` bytes."""

    def __init__(self, cmd: list[str], limit: int, *, stdout=subprocess.PIPE, env: dict | None = None) -> None:
        self.limit = limit
        self.killed = False
        self.cpu = 0.0
        self.peak_sampled = self.peak_anon = 0
        self.loads: list[float] = []  # the machine's 1-minute load average, sampled while the stage runs
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     env=env or {**os.environ, "PYTHONUNBUFFERED": "1"})
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._sample, daemon=True)
        self._watch.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss, anon = tree_rss(self.proc.pid)
            self.peak_sampled, self.peak_anon = max(self.peak_sampled, rss), max(self.peak_anon, anon)
            self.loads.append(os.getloadavg()[0])
            if rss > self.limit and not self.killed:
                self.killed = True
                self.kill()
            self._stop.wait(0.2)

    def wait(self) -> tuple[int, float, int]:
        """(exit status, wall seconds, peak RSS bytes of the tree from wait4); the process group is killed if
        this process is interrupted while waiting. `self.cpu` is then the tree's user + system CPU seconds."""
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except BaseException:
            self.kill()
            raise
        wall = time.perf_counter() - self.t0
        self.cpu = usage.ru_utime + usage.ru_stime
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._stop.set()
        self._watch.join()
        return self.proc.returncode, wall, max(usage.ru_maxrss * 1024, self.peak_sampled)

    def load(self) -> float | None:
        """The mean of the 1-minute load averages sampled while the process ran."""
        return round(statistics.fmean(self.loads), 1) if self.loads else None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> tuple[int, float, int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.wait()
        except ChildProcessError:
            return self.proc.returncode or 0, time.perf_counter() - self.t0, self.peak_sampled


def embedsae_cmd() -> list[str]:
    return [sys.executable, "-m", "embedsae"]


def run_stage(name: str, args: list[str], limit: int, log: Path) -> dict:
    """Run one `embedsae` command as a watched process; its output goes to log/<name>.log."""
    log.mkdir(parents=True, exist_ok=True)
    with open(log / f"{name}.log", "w") as out:
        w = Watched([*embedsae_cmd(), *args], limit, stdout=out)
        code, wall, peak = w.wait()
    tail = (log / f"{name}.log").read_text(errors="replace").replace("\r", "\n").strip().splitlines()
    note = "" if code == 0 else (f"KILLED above {limit / 1e9:.1f} GB" if w.killed else f"exit {code}: "
                                 + (tail[-1][:150] if tail else ""))
    row = {"stage": name, "wall_s": round(wall, 1), "cpu_s": round(w.cpu, 1), "peak_rss_gb": round(peak / 1e9, 2),
           "peak_anon_gb": round(w.peak_anon / 1e9, 2), "load": w.load(), "ok": code == 0, "notes": note}
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------- the app
def get(host: str, port: int, path: str, body: dict | None = None) -> tuple[int, float, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    if body is None:
        conn.request("GET", path)
    else:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter() - t0
    conn.close()
    return r.status, dt, data


def _serve_requests(host: str, port: int, name: str, repeats: int) -> list[dict]:
    rows = []
    status, _, body = get(host, port, f"/api/v1/workspaces/{name}/features?sort=density&limit=5")
    feature = json.loads(body)["items"][0]["id"] if status == 200 and json.loads(body).get("items") else 0
    pages = {
        "serve: features screen": (f"/w/{name}/features", None),
        "serve: feature page": (f"/w/{name}/features/{feature}", None),
        "serve: hybrid search": (f"/api/v1/workspaces/{name}/search", {"query": QUERY, "mode": "hybrid", "top": 10}),
    }
    for label, (path, payload) in pages.items():  # a body means a POST
        times, codes = [], []
        for i in range(1 + repeats):  # a new query text each time: every search embeds its query
            q = None if payload is None else {**payload, "query": f"{QUERY} {i}" if i else QUERY}
            status, dt, _ = get(host, port, path, q)
            codes.append(status)
            times.append(dt)
        ok = all(c == 200 for c in codes)
        rows.append({"stage": label, "wall_s": round(times[0], 3), "peak_rss_gb": None, "peak_anon_gb": None, "ok": ok,
                     "notes": f"first {times[0] * 1000:.0f} ms, then p50 {statistics.median(times[1:]) * 1000:.0f} ms "
                              f"of {repeats}" + ("" if ok else f"; statuses {codes}")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_serve(ws: Path, limit: int, log: Path, repeats: int = 5) -> list[dict]:
    """Start `embedsae serve`, time the features screen, a feature page and a hybrid search (first and warm)."""
    log.mkdir(parents=True, exist_ok=True)
    w = Watched([*embedsae_cmd(), "serve", str(ws), "--port", "0"], limit)
    line = w.proc.stdout.readline()
    m = re.search(r"at http://(127\.0\.0\.1):(\d+)/", line)
    if not m:
        code, wall, peak = w.stop()
        return [{"stage": "serve", "wall_s": round(wall, 1), "cpu_s": round(w.cpu, 1), "peak_rss_gb": round(peak / 1e9, 2),
                 "peak_anon_gb": 0, "ok": False, "notes": f"no URL printed: {line.strip()[:150]}"}]
    threading.Thread(target=lambda: shutil.copyfileobj(w.proc.stdout, open(log / "serve.log", "w")), daemon=True).start()
    host, port = m.group(1), int(m.group(2))
    start_s = time.perf_counter() - w.t0
    rows: list[dict] = []
    try:
        rows = _serve_requests(host, port, ws.name, repeats)
    finally:
        code, wall, peak = w.stop()
    rows.insert(0, {"stage": "serve", "wall_s": round(start_s, 1), "cpu_s": round(w.cpu, 1), "peak_rss_gb": round(peak / 1e9, 2),
                    "peak_anon_gb": round(w.peak_anon / 1e9, 2), "load": w.load(), "ok": not w.killed,
                    "notes": "start-up until the URL is printed; RSS over the whole session"
                             + (f"; KILLED above {limit / 1e9:.1f} GB" if w.killed else "")})
    return rows


# ---------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="documents (6,276 abstracts repeated; 1004160 = 160 copies)")
    ap.add_argument("--dir", type=Path, help=f"where the corpus and workspace go (default {CACHE}/run-N)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, help="only these stages (default: all)")
    ap.add_argument("--max-rss", type=float, default=8.0, help="GB: a stage whose process tree passes it is killed")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (the corpus files are always kept)")
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    ap.add_argument("--corpus-only", action="store_true", help="build the corpus files and stop")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a terminated benchmark kills its stage too
    folder = args.dir or CACHE / f"run-{args.n}"
    build_corpus(args.n, folder)
    if args.corpus_only:
        return 0
    ws = folder / "ws"
    stages = args.stages or [s for s in STAGES if s != "embed-parquet"] + ["embed-parquet"]
    limit = int(args.max_rss * 1e9)
    log = folder / "logs"
    load = os.getloadavg()
    print(f"{args.n:,} documents in {folder}; stages {', '.join(stages)}; load average {load[0]:.2f} on "
          f"{os.cpu_count()} CPUs; memory limit {args.max_rss} GB", flush=True)
    plan = {
        "embed": ["embed", str(folder / "corpus.jsonl"), "-o", str(ws), "--vectors", str(folder / "vectors.npy"),
                  "--model", MODEL, "--overwrite"],
        "embed-parquet": ["embed", str(folder / "corpus.parquet"), "-o", str(folder / "ws-parquet"), "--vectors",
                          str(folder / "vectors.npy"), "--model", MODEL, "--overwrite"],
        "train": ["train", str(ws)],
        "interpret": ["interpret", str(ws)],
        "families": ["families", str(ws), "--top", "5", "--rebuild"],
        "index": ["index", str(ws)],
        **{f"search-{m}": ["search", str(ws), QUERY, "--mode", m, "--top", "5"] for m in MODES},
    }
    rows = []
    for stage in stages:
        if stage == "serve":
            rows += run_serve(ws, limit, log)
        else:
            rows.append(run_stage(stage, plan[stage], limit, log))
        if stage == "embed-parquet":
            shutil.rmtree(folder / "ws-parquet", ignore_errors=True)
    after = [r for r in rows if r["stage"] not in ("embed", "embed-parquet") and not r["stage"].startswith("serve:")]
    total = sum(r["wall_s"] for r in after if r["stage"] != "serve")
    cpu = sum(r.get("cpu_s") or 0 for r in after if r["stage"] != "serve")
    table = ["| stage | wall s | CPU s | peak RSS GB (anonymous) | load | notes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rss = "" if r["peak_rss_gb"] is None else f"{r['peak_rss_gb']:.2f} ({r['peak_anon_gb']:.2f})"
        table.append(f"| {r['stage']} | {r['wall_s']} | {r.get('cpu_s', '')} | {rss} | {r.get('load') or ''} | "
                     f"{r['notes'] or ('ok' if r['ok'] else 'failed')} |")
    table.append(f"| **after embed, in all** | **{total:.0f}** | **{cpu:.0f}** | | | train + interpret + families + "
                 "index + searches (CPU s / 2 cores: the wall time an idle machine would need at best) |")
    text = "\n".join(table)
    print(f"\n{args.n:,} documents; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}\n{text}")
    if args.out:
        args.out.write_text(text + "\n")
    if not args.keep and not args.stages:
        shutil.rmtree(ws, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
