"""SIGKILL ``medgan train`` at random points, resume each time: the result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from medgan.training.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import tiny_config

STEPS, EVERY = 300, 25


def _train(cfg: Path, out: Path, data: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medgan", "train", str(cfg), "--out", str(out), "--data-dir", str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*cmd, "--resume"] if resume else cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def _steps_logged(run: Path) -> int:
    """The last step whose stats line was completely written (the loop logs every step here)."""
    last = 0
    path = run / "stats.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                last = max(last, json.loads(line)["step"])
            except (json.JSONDecodeError, KeyError):
                break
    return last


@pytest.mark.slow
def test_sigkill_train_then_resume_equals_uninterrupted(tiny_data_dir: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "tiny.yaml"
    cfg = tiny_config(steps=STEPS, checkpoint_every=EVERY, sample_every=1000, keep_last=3)
    cfg["train"]["device"] = "cpu"
    cfg_path.write_text(yaml.safe_dump(cfg))
    ref_run, run = tmp_path / "ref", tmp_path / "killed"
    t0 = time.monotonic()
    ref = _train(cfg_path, ref_run, tiny_data_dir, resume=False)
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    wall = time.monotonic() - t0  # start-up plus training, on this machine, now

    rng = random.Random(1234)
    kills, finished = 0, False
    for _ in range(8):
        proc = _train(cfg_path, run, tiny_data_dir, resume=bool(list_checkpoints(run / "checkpoints")))
        time.sleep(rng.uniform(0.3, 0.6) * wall)  # start-up plus a random share of the training
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        ckpts = list_checkpoints(run / "checkpoints")
        for ck in ckpts:  # whatever the kill interrupted, every checkpoint on disk is whole
            load_checkpoint(ck)
        saved = int(ckpts[-1].stem.split("-")[1]) if ckpts else 0
        assert _steps_logged(run) - saved <= EVERY  # at most one checkpoint interval of work lost
    if not finished:
        final = _train(cfg_path, run, tiny_data_dir, resume=True)
        assert final.wait(timeout=300) == 0, final.stderr.read().decode()
    assert kills >= 2, "the kills all missed the training; lengthen STEPS"
    last_a = list_checkpoints(ref_run / "checkpoints")[-1]
    last_b = list_checkpoints(run / "checkpoints")[-1]
    assert last_a.name == last_b.name == f"step-{STEPS:07d}.safetensors"
    a, _ = load_checkpoint(last_a)
    b, _ = load_checkpoint(last_b)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert last_a.read_bytes() == last_b.read_bytes()  # same SHA-256, so same manifests and UIDs
