"""SIGKILL ``medgan generate`` mid-write, resume: the folder ends exactly as an uninterrupted run's.

Also two ``medgan generate`` processes started together on one folder: one writes, the other
refuses with a one-line message, and the result is whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

N_PER_CLASS = 300  # 600 files at batch 8: long enough to kill in the middle of writing


def _cmd(ckpt: Path, out: Path, fmt: str) -> list[str]:
    return [
        sys.executable, "-m", "medgan", "generate", "--checkpoint", str(ckpt), "--out", str(out),
        "--n-per-class", str(N_PER_CLASS), "--format", fmt, "--batch-size", "8", "--seed", "7",
        "--device", "cpu",
    ]  # fmt: skip


def _start(ckpt: Path, out: Path, fmt: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(_cmd(ckpt, out, fmt), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _n_images(out: Path) -> int:
    d = out / "images"
    return sum(1 for _ in d.iterdir()) if d.is_dir() else 0


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _check_whole(out: Path, fmt: str) -> None:
    """The manifest and the files agree exactly; nothing truncated, orphaned or left half-written."""
    m = pd.read_csv(out / "manifest.csv")
    assert len(m) == 2 * N_PER_CLASS and not m["path"].duplicated().any()
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(m["path"]) | {
        "manifest.csv",
        "generate.json",
    }  # no orphans, no temporaries, no lock
    for rel in m["path"]:
        if fmt == "png":
            with Image.open(out / rel) as im:
                im.load()  # a truncated PNG fails here
        else:
            import nibabel as nib

            nib.load(out / rel).get_fdata()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_sigkill_generate_then_resume_equals_uninterrupted(
    tiny_checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = _start(tiny_checkpoint, ref_out, fmt)
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()

    rng = random.Random(99)
    kills = 0
    for _ in range(4):
        target = rng.randint(N_PER_CLASS // 5, 2 * N_PER_CLASS - N_PER_CLASS // 5)  # files, then SIGKILL
        proc = _start(tiny_checkpoint, out, fmt)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _n_images(out) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is not None:  # finished before the target: nothing left to kill
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 2, "the kills all missed the writing; raise N_PER_CLASS"
    final = _start(tiny_checkpoint, out, fmt)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()

    _check_whole(out, fmt)
    a, b = _files(ref_out), _files(out)
    ga, gb = json.loads(a.pop("generate.json")), json.loads(b.pop("generate.json"))
    ga.pop("created_utc"), gb.pop("created_utc")
    assert ga == gb and a == b  # every image and the manifest, byte for byte


@pytest.mark.slow
def test_two_generate_processes_on_one_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out, ref_out = tmp_path / "shared", tmp_path / "ref"
    first = _start(tiny_checkpoint, out, "png")
    while first.poll() is None and _n_images(out) == 0:  # the first one is writing
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # ... and stays in the middle of it while the second starts
    try:
        second = _start(tiny_checkpoint, out, "png")
        err2 = second.communicate(timeout=300)[1].decode()
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, err2
    lines = err2.strip().splitlines()
    assert len(lines) == 1 and "another medgan process is writing into this folder" in lines[0]
    assert str(out) in lines[0] and f"pid {first.pid}" in lines[0]
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    _check_whole(out, "png")
    again = _start(tiny_checkpoint, out, "png")  # once the first is done, the same command is a no-op resume
    assert again.wait(timeout=300) == 0
    _check_whole(out, "png")
    ref = _start(tiny_checkpoint, ref_out, "png")
    assert ref.wait(timeout=300) == 0
    a, b = _files(ref_out), _files(out)
    a.pop("generate.json"), b.pop("generate.json")
    assert a == b
