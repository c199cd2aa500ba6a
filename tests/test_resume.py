"""Kill-and-resume: a run killed mid-training and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embedsae import pipeline

ARGS = ["--k", "16", "--latents", "512", "--epochs", "8", "--batch-size", "128", "--checkpoint-every", "7",
        "--seed", "3", "--quiet"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "embedsae", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(cranfield_ws, copy_ws):
    ws = copy_ws(cranfield_ws)
    # the uninterrupted reference
    subprocess.run(_cli("train", str(ws.path), *ARGS, "--name", "whole"), check=True, env=_env(), capture_output=True)

    # the same run, killed once a checkpoint exists
    ckpt = ws.saes_dir / ".partial-cut" / "checkpoint.pt"
    proc = subprocess.Popen(_cli("train", str(ws.path), *ARGS, "--name", "cut"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    assert "cut" not in ws.sae_names(), "a killed run must not leave a finished-looking SAE"
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 8 * (1330 // 128)

    done = subprocess.run(_cli("train", str(ws.path), *ARGS, "--name", "cut", "--resume"), env=_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a = json.loads((ws.sae_dir("whole") / "metrics.json").read_text())
    b = json.loads((ws.sae_dir("cut") / "metrics.json").read_text())
    for key in ("nmse", "nmse_train", "dead_fraction", "l0", "log_feature_density", "act_mean"):
        assert abs(a[key] - b[key]) <= 1e-4, (key, a[key], b[key])
    wa = load_file(str(ws.sae_dir("whole") / "sae.safetensors"))
    wb = load_file(str(ws.sae_dir("cut") / "sae.safetensors"))
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key
    log_a = (ws.sae_dir("whole") / "train_log.jsonl").read_text().splitlines()
    log_b = (ws.sae_dir("cut") / "train_log.jsonl").read_text().splitlines()
    assert len(log_a) == len(log_b)


def test_in_process_stop_and_resume_matches(cranfield_ws, copy_ws):
    ws = copy_ws(cranfield_ws)
    kw = dict(k=8, latents=256, epochs=3, batch_size=128, seed=5, checkpoint_every=4, noise=0.2)
    pipeline.train(ws, name="ref", **kw)

    def interrupt_at_step_9(event):  # Ctrl-C at the first progress report past step 9 (step 10)
        if event.stage == "train" and event.done >= 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.train(ws, name="part", progress=interrupt_at_step_9, **kw)
    assert "part" not in ws.sae_names()
    pipeline.train(ws, name="part", resume=True, **kw)
    a = ws.load_sae("ref").state_dict()
    b = ws.load_sae("part").state_dict()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5, err_msg=key)
