"""A real `embedsae serve` process stopping: SIGTERM and SIGINT end it within 5 s whatever runs (a train job with a
client on its event stream, a map job), with exit code 0 (SIGTERM) or 130 (SIGINT), never an abort; the job is
interrupted as the CLI's Ctrl-C interrupts it (no worker process left, the workspace as it was, resumable)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from embedsae import layout
from embedsae.workspace import Workspace

pytestmark = pytest.mark.slow
STOP_SECONDS = 5.0


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Served:
    """`embedsae serve WS --port 0`, its base URL and port."""

    def __init__(self, ws: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "embedsae", "serve", str(ws), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"serve printed no URL: {line!r}"
        self.port, self.name = int(m.group(1)), ws.name

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body=json.dumps(body) if body else None, headers={"content-type": "application/json"})
        r = c.getresponse()
        return json.loads(r.read())

    def start_job(self, body: dict, reached) -> dict:
        """Start a job and wait until its progress satisfies `reached(progress)`."""
        job = self.call("POST", f"/api/v1/workspaces/{self.name}/jobs", body)
        assert job.get("state") in ("queued", "running"), job
        end = time.monotonic() + 600
        while time.monotonic() < end:
            now = self.call("GET", f"/api/v1/jobs/{job['id']}")
            if reached(now["progress"]) and now["state"] == "running":
                return now
            assert now["state"] in ("queued", "running"), now
            time.sleep(0.3)
        raise AssertionError(f"the job did not get far enough: {now}")

    def stop(self, sig: int) -> tuple[int, float, str]:
        """Send `sig`; the exit code, the seconds it took and what the server printed."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - t0, self.proc.stdout.read()


@pytest.fixture
def served_copy(app_ws, tmp_path):
    ws = tmp_path / "cranfield"
    shutil.copytree(app_ws.path, ws)
    server = Served(ws)
    yield server, ws
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def test_sigterm_during_a_train_job_with_an_event_stream_client(served_copy):
    server, ws = served_copy
    job = server.start_job({"kind": "train", "k": 8, "latents": 512, "epochs": 300, "name": "long"},
                           lambda p: p["unit"] == "step" and p["done"] >= 5)  # past its first checkpoints
    workers = children(server.proc.pid)
    assert workers  # the job runs in a worker process
    streamed: list[dict] = []

    def follow():
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        c.request("GET", f"/api/v1/jobs/{job['id']}/events")
        for line in c.getresponse():
            if line.startswith(b"data: "):
                streamed.append(json.loads(line[6:]))

    client = threading.Thread(target=follow, daemon=True)
    client.start()
    end = time.monotonic() + 30
    while not streamed and time.monotonic() < end:
        time.sleep(0.1)
    assert streamed and streamed[0]["state"] == "running"
    code, seconds, printed = server.stop(signal.SIGTERM)
    assert code == 0 and seconds <= STOP_SECONDS, (code, seconds, printed)
    assert "Traceback" not in printed and "terminate called" not in printed, printed
    client.join(10)
    assert not client.is_alive()  # the event stream ended with the server
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # the worker is gone
    after = Workspace.open(ws)
    assert after.sae_names() == ["topk-k8-n256"]  # the interrupted SAE is not half there
    assert layout.partial_folder(ws, "long").is_dir()  # its run can be resumed (embedsae train --resume)
    assert not [p for p in ws.rglob("*.tmp")]


def test_sigint_during_a_map_job(served_copy):
    server, ws = served_copy
    shutil.rmtree(ws / layout.MAP)
    server.start_job({"kind": "map"}, lambda p: "2-D" in p["message"])
    workers = children(server.proc.pid)
    code, seconds, printed = server.stop(signal.SIGINT)
    assert code == 130 and seconds <= STOP_SECONDS, (code, seconds, printed)
    assert "Traceback" not in printed and "terminate called" not in printed, printed
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]
    assert not (ws / layout.MAP).exists() or not list((ws / layout.MAP).glob("*.npy"))  # no layout half there
