"""A real HTTP server on 127.0.0.1 speaking the OpenAI `/v1/embeddings` protocol, for tests.

Vectors are deterministic: hashed bag-of-words counts (plus a small hashed-text component), so texts that
share words are close, like a crude real model. Faults can be queued: each request takes the next one.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


def fake_vector(model: str, text: str, dim: int) -> np.ndarray:
    """The server's vector for a text: hashed word counts plus a little text-specific noise, unit norm."""
    v = np.zeros(dim, np.float64)
    for w in WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.sha256(f"{model}:{w}".encode()).digest()[:8], "little")
        v[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{text}".encode()).digest()[:8], "little")
    v += 0.05 * np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class EmbeddingServer:
    """Start with `with EmbeddingServer(dim=64) as srv:`; `srv.base_url` is the API root (…/v1).

    `faults` is a list consumed one per request: "429" (with Retry-After: 0), "500", "503", "malformed"
    (a 200 with cut-off JSON), "wrong_dim" (vectors one longer), "401", or None (answer normally).
    `requests` records (inputs, authorization header, status) of every request.
    """

    def __init__(self, dim: int = 64, faults: list[str | None] | None = None, reverse: bool = True) -> None:
        self.dim = dim
        self.faults = list(faults or [])
        self.reverse = reverse  # answer the data list in reverse order (clients must sort by index)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    fault = server.faults.pop(0) if server.faults else None
                    server.requests.append({"input": body.get("input"), "model": body.get("model"),
                                            "auth": self.headers.get("Authorization"), "fault": fault,
                                            "path": self.path})
                if self.path != "/v1/embeddings":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if fault in ("429", "500", "503", "401"):
                    extra = {"Retry-After": "0"} if fault == "429" else {}
                    return self._send(int(fault), b'{"error": {"message": "injected"}}', extra)
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                dim = server.dim + (1 if fault == "wrong_dim" else 0)
                data = [{"object": "embedding", "index": i, "embedding": fake_vector(body["model"], t, dim).tolist()}
                        for i, t in enumerate(inputs)]
                if server.reverse:
                    data.reverse()
                tokens = sum(len(WORD.findall(t.lower())) for t in inputs)
                payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}).encode()
                self._send(200, payload[: len(payload) // 2] if fault == "malformed" else payload)

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EmbeddingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def texts_seen(self) -> list[str]:
        """Every input text the server was sent, in request order."""
        return [t for r in self.requests if r["fault"] is None for t in (r["input"] or [])]


if __name__ == "__main__":  # a stand-alone double for demos: python tests/embedding_server.py --port 8765
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--faults", default="", help="comma-separated faults for the first requests, e.g. 429,429,500")
    ap.add_argument("--seconds", type=float, default=600, help="stop after this long")
    args = ap.parse_args()
    with EmbeddingServer(dim=args.dim, faults=[f for f in args.faults.split(",") if f]) as srv:
        print(srv.base_url, flush=True)
        time.sleep(args.seconds)
