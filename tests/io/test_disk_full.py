"""A full disk: one line naming the output, exit 2, nothing half-written, and what a rerun does.

Where the machine allows it (root, ``mount -t tmpfs``), each writer runs on a real small tmpfs
that fills up; everywhere, a patched ``fsync`` that fails with ENOSPC exercises the same path.
A killed writer's temporary folder beside its output is removed by the next run.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from medgan.cli import main
from tests.conftest import tiny_config


def _leftovers(root: Path) -> list[str]:
    """Temporary files or folders (``.x.XXXXXXXX.tmp*`` / ``.partial``) anywhere under ``root``."""
    return sorted(p.name for p in root.rglob(".*") if ".tmp" in p.name or p.name.endswith(".partial"))


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount(size)``: a fresh tmpfs of ``size`` (e.g. ``"64k"``) at a new folder; skipped where
    tmpfs cannot be mounted (not root, no permission)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        d = tmp_path / f"disk{len(mounted)}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, check=False
        )
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (the patched-writer test covers the path)")
        mounted.append(d)
        return d

    try:
        yield mount
    finally:
        for d in mounted:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)


@pytest.fixture()
def tiny_cfg(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    cfg = tiny_config(steps=4)
    cfg["augment"] = {"checkpoints": [str(tiny_checkpoint)], "ratio": 4.0}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("step ")]
    lines = [x for x in lines if x.startswith("medgan:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_every_writer_on_a_filling_disk_is_one_line_and_leaves_nothing_half_written(
    small_disk: Callable[[str], Path],
    tiny_cfg: Path,
    tiny_checkpoint: Path,
    tiny_data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = ["--data-dir", str(tiny_data_dir)]
    # prepare is atomic: nothing at all is left
    disk = small_disk("24k")
    out = disk / "prepared"
    code = main(["data", "prepare", str(tiny_cfg), *data, "--out", str(out)])
    line = _one_line(capsys)
    assert code == 2 and "no space left on the disk" in line and "nothing was written" in line, line
    assert str(out) in line and not out.exists() and _leftovers(disk) == []
    # a bundle's size is known before it is written: refused up front (torch's writer would abort)
    disk = small_disk("24k")
    code = main(["export-bundle", str(tiny_checkpoint), "--out", str(disk / "bundle")])
    line = _one_line(capsys)
    assert code == 2 and "the bundle needs at least" in line and "free" in line, line
    assert not (disk / "bundle").exists() and _leftovers(disk) == []
    # generate, augment and train keep what is finished and say how to go on
    for argv, what, after in (
        (
            ["generate", "--checkpoint", str(tiny_checkpoint), "--n-per-class", "60", "--device", "cpu"],
            "gen",
            "rerun the same command to finish",
        ),
        (["augment", str(tiny_cfg), *data], "aug", "rerun the same command to finish"),
        (["train", str(tiny_cfg), *data], "run", "with --resume once one was written"),
    ):
        disk = small_disk("40k")
        code = main([*argv, "--out", str(disk / what)])
        line = _one_line(capsys)
        assert code == 2 and "no space left on the disk" in line and after in line, line
        assert _leftovers(disk) == []


def test_a_full_disk_during_an_atomic_write_is_one_line(
    tiny_cfg: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same path with a patched writer (any machine): ``fsync`` reports ENOSPC while training
    writes its first files; exit 2, one line naming the file, no temporary left."""
    import medgan.io.atomic as atomic

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    out = tmp_path / "run"
    code = main(["train", str(tiny_cfg), "--out", str(out), "--data-dir", str(tiny_data_dir)])
    line = _one_line(capsys)
    assert code == 2 and "no space left on the disk" in line and str(out) in line, line
    assert "with --resume once one was written" in line and _leftovers(out) == []
    # export-bundle through the same writer: a one-line error, not the abort of torch's own writer
    code = main(["export-bundle", str(out.parent / "missing")])  # warm the CLI's imports
    capsys.readouterr()
    ckpt = tiny_cfg.parent / "ckpt"
    monkeypatch.undo()
    assert main(["train", str(tiny_cfg), "--out", str(ckpt), "--data-dir", str(tiny_data_dir)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(atomic.os, "fsync", full)
    code = main(["export-bundle", str(ckpt), "--out", str(tmp_path / "bundle")])
    line = _one_line(capsys)
    assert code == 2 and "no space left on the disk" in line and "nothing was written" in line, line
    assert not (tmp_path / "bundle").exists() and _leftovers(tmp_path) == []


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_run(
    tiny_cfg: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """``data prepare`` killed mid-write leaves ``.<out>.<pid>.XXXXXXXX.partial``; the next prepare of
    that output removes it (its process is gone); a live process's folder is left alone."""
    out = tmp_path / "prepared"
    dead = tmp_path / ".prepared.4194999.abcdefgh.partial"  # above Linux's largest pid: never alive
    live = tmp_path / f".prepared.{os.getpid()}.ijklmnop.partial"
    for d in (dead, live):
        d.mkdir()
        (d / "slices-00000.npz").write_bytes(b"half")
    assert main(["data", "prepare", str(tiny_cfg), "--out", str(out), "--data-dir", str(tiny_data_dir)]) == 0
    assert not dead.exists() and live.exists() and (out / "manifest.csv").is_file()
