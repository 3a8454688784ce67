"""Run provenance: command, versions, device, source revision, host and start time; never fails."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import monai
import numpy as np
import pytest
import torch

import medgan
from medgan import provenance as prov


@pytest.fixture(autouse=True)
def _no_cli_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget a command line an earlier test's ``medgan.cli.main`` recorded (these tests expect ``sys.argv``)."""
    monkeypatch.setattr(prov, "_COMMAND", None)


def test_provenance_has_every_fact() -> None:
    p = prov.provenance()
    assert p["command"] == sys.argv
    assert p["versions"] == {
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "medgan": medgan.__version__,
    }
    started = dt.datetime.fromisoformat(p["started_utc"])
    assert started.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - started).total_seconds()) < 60
    assert isinstance(p["hostname"], str) and p["hostname"]
    assert set(p["device"]) == {"cuda", "device", "device_count"}
    json.dumps(p)  # JSON-able as it stands


def test_started_is_reported_in_utc() -> None:
    local = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert prov.provenance(local)["started_utc"] == "2026-01-02T01:04:05+00:00"
    assert prov.provenance(dt.datetime(2026, 1, 2, 3, 4, 5))["started_utc"] == "2026-01-02T03:04:05+00:00"


def test_device_is_the_gpu_when_cuda_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert prov.device_info() == {"cuda": "12.4", "device": "NVIDIA H200", "device_count": 2}


def test_device_is_the_cpu_without_cuda_or_with_a_broken_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = prov.device_info()
    assert info["cuda"] is None and info["device_count"] == 0
    assert isinstance(info["device"], str) and info["device"]

    def broken(i: int = 0) -> str:
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    assert prov.device_info()["cuda"] is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_of_a_checkout_and_of_a_plain_folder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    pkg = repo / "medgan"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    assert prov.git_state(pkg) is None  # not a checkout
    git("init", "-q")
    assert prov.git_state(pkg) is None  # a checkout, but the package is not tracked there
    git("add", "medgan/__init__.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert prov.git_state(pkg) == {"revision": head, "dirty": False}
    (repo / "notes.txt").write_text("untracked files do not count")
    assert prov.git_state(pkg) == {"revision": head, "dirty": False}
    (pkg / "__init__.py").write_text("x = 2\n")
    assert prov.git_state(pkg) == {"revision": head, "dirty": True}


def test_this_source_tree_reports_a_revision_when_it_is_a_checkout() -> None:
    state = prov.git_state()
    if state is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", state["revision"]) and isinstance(state["dirty"], bool)


@pytest.mark.parametrize(
    "error", [FileNotFoundError("git"), subprocess.TimeoutExpired("git", 5.0), PermissionError("git")]
)
def test_git_missing_or_slow_gives_none(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def run(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(prov.subprocess, "run", run)
    assert prov.git_state() is None
    assert prov.provenance()["git"] is None


def test_write_provenance_is_atomic_and_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "nested"
    path = prov.write_provenance(folder)
    assert path == folder / "provenance.json"
    first = json.loads(path.read_text())
    assert first["command"] == sys.argv and set(first) == {
        "command",
        "started_utc",
        "hostname",
        "versions",
        "device",
        "git",
    }
    prov.write_provenance(folder, dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    assert json.loads(path.read_text())["started_utc"] == "2030-01-01T00:00:00+00:00"
    assert [p.name for p in folder.iterdir()] == ["provenance.json"]  # no temporaries left
