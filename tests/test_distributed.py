"""Data-parallel training under torchrun (gloo on CPU): two processes train the SAE that one process trains."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ARGS = ["--k", "8", "--latents", "256", "--batch-size", "128", "--seed", "3", "--quiet"]


def _env() -> dict[str, str]:
    # faulthandler: a worker killed by a signal (SIGABRT, SIGSEGV) prints where each of its threads was
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def _train(ws, processes: int, *args: str, **kw) -> subprocess.CompletedProcess:
    runner = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    cmd = [sys.executable, *runner, "-m", "embedsae", "train", str(ws.path), *ARGS, *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, **kw)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Whether a process still runs (a zombie does not: it holds no file and no lock)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _errors(stderr: str) -> str:
    """What a failed run said: the embedsae error lines of any rank, then the start of the output (the workers
    print before torchrun reports: a C++ abort's `what()`, a fatal Python error, a faulthandler dump), then its end."""
    ours = [line for line in stderr.splitlines() if "embedsae" in line and "error" in line.lower()]
    head, tail = stderr[:6000], stderr[6000:][-1500:]
    return "\n".join(ours[:10]) + "\n...\n" + head + ("\n...\n" + tail if tail else "")


def _relative_difference(ws, a: str, b: str) -> float:
    wa = load_file(str(ws.sae_dir(a) / "sae.safetensors"))
    wb = load_file(str(ws.sae_dir(b) / "sae.safetensors"))
    return max(float(torch.linalg.norm(wa[k] - wb[k]) / torch.linalg.norm(wa[k]).clamp_min(1e-12)) for k in wa)


@pytest.mark.slow
def test_two_processes_train_the_sae_one_process_trains(cranfield_ws, copy_ws):
    ws = copy_ws(cranfield_ws)
    for processes, name in ((1, "one"), (2, "two")):
        done = _train(ws, processes, "--epochs", "3", "--name", name)
        assert done.returncode == 0, _errors(done.stderr)
    # each process normalising by its own batch's spread instead of the global one: 5.9e-2 apart
    assert _relative_difference(ws, "one", "two") <= 1e-5
    log_one = [json.loads(line) for line in (ws.sae_dir("one") / "train_log.jsonl").read_text().splitlines()]
    log_two = [json.loads(line) for line in (ws.sae_dir("two") / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_one] == [r["step"] for r in log_two]
    np.testing.assert_allclose([r["nmse"] for r in log_two], [r["nmse"] for r in log_one], rtol=1e-5)
    np.testing.assert_allclose([r["dead_fraction"] for r in log_two], [r["dead_fraction"] for r in log_one])
    assert "NMSE held-out" in done.stdout  # rank 0 evaluated and reported


@pytest.mark.slow
def test_killed_two_process_streamed_run_resumes_exactly(cranfield_ws, copy_ws):
    ws = copy_ws(cranfield_ws)
    stream = ["--epochs", "6", "--checkpoint-every", "4", "--in-memory-bytes", "0", "--shuffle-buffer", "512"]
    done = _train(ws, 1, *stream, "--name", "whole")
    assert done.returncode == 0, _errors(done.stderr)

    ckpt = ws.saes_dir / ".partial-cut" / "checkpoint.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "embedsae",
           "train", str(ws.path), *ARGS, *stream, "--name", "cut"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    workers = _children(proc.pid)  # torchrun starts each worker in a process group of its own
    for pid in [proc.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # torchrun, both workers and whatever they started
    proc.wait()
    gone = time.time() + 60  # until a worker has exited, rank 0 holds the SAE's lock
    while time.time() < gone and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["step"] < 60 and "stream" in state

    done = _train(ws, 2, *stream, "--name", "cut", "--resume")
    assert done.returncode == 0, _errors(done.stderr)
    assert _relative_difference(ws, "whole", "cut") <= 1e-5
