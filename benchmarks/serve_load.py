"""Load on `embedsae serve`: a bounded loop of concurrent clients on loopback mixing hybrid search (with query
embedding: every query is new), steered search, feature cards and neighbours. Prints p50 / p99 latency per kind,
requests per second and errors.

    python benchmarks/serve_load.py WS                      # a workspace that ran `embedsae run` (interpret, index)
    python benchmarks/serve_load.py WS --prepare ../shared/data/arxiv/abstracts.jsonl   # build WS first (k 32, 3072)

Targets (arXiv workspace, 16 clients, a quiet 2-core machine): p50 <= 50 ms hybrid search, <= 20 ms feature card.
Latencies depend on the machine's load: report the load with the figures. `--think SECONDS` gives each client an
exponential think time between requests (interactive users); report it next to the closed loop (no think time),
never instead of it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

TOPICS = ["dark matter halos", "sparse autoencoders", "graph neural networks", "quantum error correction",
          "gravitational waves", "protein folding", "reinforcement learning", "galaxy clusters", "language models",
          "black hole mergers", "topological insulators", "Bayesian inference", "exoplanet atmospheres",
          "transformer attention", "neutron stars", "convex optimisation", "cosmic microwave background"]
WORDS = ["survey", "method", "limits", "new", "fast", "deep", "observations", "theory", "simulations", "data",
         "model", "analysis", "bounds", "estimates", "catalogue", "spectra", "dynamics", "learning"]


def prepare(ws: Path, corpus: Path, k: int = 32, latents: int = 3072) -> None:
    """Embed, train (by default k 32, 3,072 latents), interpret (the first 512 features, to keep it short), families and index
    `corpus` into `ws` (the test embedding cache is reused when EMBEDSAE_TEST_CACHE is set)."""
    import embedsae
    from embedsae import pipeline

    embedder = None
    root = Path(__file__).resolve().parents[1]
    if os.environ.get("EMBEDSAE_TEST_CACHE"):
        sys.path.insert(0, str(root))
        from tests.conftest import CachingEmbedder

        from embedsae.data.embedders import SentenceTransformerEmbedder

        embedder = CachingEmbedder(SentenceTransformerEmbedder())
    w = pipeline.embed(corpus, ws, embedder=embedder)
    pipeline.train(w, k=k, latents=latents)
    project = embedsae.open(w.path)
    project.interpret(max_features=512)
    project.build_families()
    project.index()


def start_server(ws: Path) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([sys.executable, "-m", "embedsae", "serve", str(ws), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r"at http://(127\.0\.0\.1):(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"serve printed no URL: {line!r}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain its output
    return proc, m.group(1), int(m.group(2))


class Client:
    IDLE_RECONNECT = 2.0
    """A keep-alive connection idle this long may have been closed by the server (uvicorn closes after 5 s): a
    request that finds it closed is sent again once on a new connection (counted in `reconnects`)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.reconnects = host, port, 0
        self._connect()

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last = time.monotonic()

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        idle = time.monotonic() - self.last
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if idle < self.IDLE_RECONNECT:
                raise
            self.conn.close()
            self._connect()
            self.reconnects += 1
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
        out = r.status, r.read()
        self.last = time.monotonic()
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--prepare", type=Path, metavar="CORPUS", help="build the workspace from this corpus first")
    ap.add_argument("--k", type=int, default=32, help="k of the SAE --prepare trains")
    ap.add_argument("--latents", type=int, default=3072, help="latents of the SAE --prepare trains")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1600, help="requests in all (the loop's bound)")
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--think", type=float, default=0.0, metavar="SECONDS",
                    help="mean think time of each client between requests (exponential; 0: a closed loop with none)")
    args = ap.parse_args()
    if args.prepare and not args.workspace.exists():
        prepare(args.workspace, args.prepare, args.k, args.latents)
    proc, host, port = start_server(args.workspace)
    try:
        return run(args, host, port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, host: str, port: int, server_pid: int | None = None) -> int:
    ws = args.workspace.name
    base = f"/api/v1/workspaces/{ws}"
    c = Client(host, port)
    status, body = c.call("GET", f"{base}/features?sort=density&limit=200")
    if status != 200:
        raise SystemExit(f"the workspace is not ready for the load test ({status}): {body[:300]!r}")
    features = [f["id"] for f in json.loads(body)["items"]]
    rng = random.Random(args.seed)
    counter = iter(range(10**9))

    def request(kind: str) -> tuple[str, str, dict | None]:
        n = next(counter)
        query = f"{rng.choice(TOPICS)} {rng.choice(WORDS)} {n}"  # new text: the query is embedded every time
        if kind == "hybrid":
            return "POST", f"{base}/search", {"query": query, "mode": "hybrid", "top": 10}
        if kind == "steered":
            return "POST", f"{base}/search", {"query": query, "mode": "dense", "top": 10,
                                              "steer": [{"feature": rng.choice(features), "value": 0.3, "op": "add"}]}
        if kind == "feature":
            return "GET", f"{base}/features/{rng.choice(features)}", None
        return "GET", f"{base}/features/{rng.choice(features)}/neighbours", None

    kinds = ["hybrid", "steered", "feature", "neighbours"]
    for i in range(args.warmup):  # loads every cached part once
        c.call(*request(kinds[i % 4]))
    plan = [kinds[i % 4] for i in range(args.requests)]
    rng.shuffle(plan)
    lock = threading.Lock()
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    errors: list[str] = []
    reconnects = [0]
    todo = iter(plan)

    def worker(seed: int):
        cl = Client(host, port)
        think = random.Random(seed)
        while True:
            if args.think > 0:
                time.sleep(think.expovariate(1 / args.think))
            with lock:
                kind = next(todo, None)
                req = request(kind) if kind else None
            if kind is None:
                with lock:
                    reconnects[0] += cl.reconnects
                return
            t0 = time.perf_counter()
            try:
                status, body = cl.call(*req)
            except Exception as exc:  # noqa: BLE001 - counted as an error
                status, body = 0, str(exc).encode()
                reconnects[0] += cl.reconnects
                cl = Client(host, port)
            dt = time.perf_counter() - t0
            with lock:
                lat[kind].append(dt)
                if status != 200:
                    errors.append(f"{kind} {status} {body[:120]!r}")

    load = os.getloadavg()[0]
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0, time.process_time(), _machine_busy()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(args.seed * 1000 + i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server_cpu = (cpu_seconds(server_pid) if server_pid else 0.0) - cpu0[0]
    client_cpu, busy = time.process_time() - cpu0[1], _machine_busy() - cpu0[2]
    print(f"workspace {ws}: {args.requests} requests, {args.clients} clients, {wall:.1f} s, "
          f"{args.requests / wall:.1f} requests/s, {len(errors)} errors ({reconnects[0]} idle connections reopened); "
          f"think time {args.think * 1000:.0f} ms; "
          f"load average before {load:.1f} on {os.cpu_count()} CPUs")
    # what bounds the closed loop: the CPU each request costs the server and the load generator, against the CPU
    # the machine had (every process's busy time: other work on the machine takes its share too)
    print(f"CPU per request: server {1000 * server_cpu / args.requests:.1f} ms, this client {1000 * client_cpu / args.requests:.1f} "
          f"ms; server used {server_cpu / wall:.2f} cores, client {client_cpu / wall:.2f}, every process "
          f"{busy / wall:.2f} of {os.cpu_count()}; at this server CPU per request {os.cpu_count()} idle cores would give "
          f"at most {args.requests * os.cpu_count() / max(server_cpu, 1e-9):.0f} requests/s")
    print(f"{'kind':<11}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for k in kinds:
        xs = sorted(lat[k])
        if xs:
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            print(f"{k:<11}{len(xs):>6}{1000 * statistics.median(xs):>10.1f}{1000 * p99:>10.1f}"
                  f"{1000 * statistics.fmean(xs):>10.1f}")
    for e in errors[:5]:
        print("error:", e)
    return 1 if errors else 0


def _machine_busy() -> float:
    """Seconds of CPU time the whole machine has been busy (all CPUs, from /proc/stat; 0 elsewhere)."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
