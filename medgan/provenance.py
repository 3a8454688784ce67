"""Run provenance: what ran, with which software, on which machine, from which source revision.

:func:`provenance` gathers it as a JSON-able dict; :func:`write_provenance` writes it atomically to
``<folder>/provenance.json``. Nothing here can fail a run: a fact that cannot be found is ``None``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from medgan import __version__
from medgan.io.atomic import atomic_write_text

#: The command being run, as the user typed it (set by ``medgan.cli.main``); ``sys.argv`` otherwise.
_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the command line this process runs (``medgan.cli.main`` calls it with its arguments)."""
    global _COMMAND
    _COMMAND = [str(a) for a in argv]


#: File name written by :func:`write_provenance`.
PROVENANCE_NAME = "provenance.json"

#: Seconds each ``git`` call may take before the revision is reported as unknown.
GIT_TIMEOUT_S = 5.0


def _run_git(args: list[str], cwd: Path) -> str | None:
    """``git <args>`` in ``cwd``: its stripped stdout, or None when git is missing, slow or fails."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # `git status` must not take the index lock
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_state(package_dir: Path | None = None) -> dict[str, Any] | None:
    """``{"revision": <HEAD sha>, "dirty": bool}`` of the git checkout holding medgan's source, else None.

    None when medgan is not running from a git checkout (an installed wheel, even one inside
    someone's repository: the package's own ``__init__.py`` must be tracked there), when ``git`` is
    missing or slow, or on any error. ``dirty`` means tracked files differ from ``HEAD`` (untracked
    files are not counted).
    """
    pkg = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    if not pkg.is_dir() or _run_git(["ls-files", "--error-unmatch", "__init__.py"], pkg) is None:
        return None
    rev = _run_git(["rev-parse", "HEAD"], pkg)
    status = _run_git(["status", "--porcelain", "--untracked-files=no"], pkg)
    if not rev or status is None:
        return None
    return {"revision": rev, "dirty": bool(status)}


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_info() -> dict[str, Any]:
    """``{"cuda": <CUDA version>, "device": <GPU 0's name>, "device_count": n}`` when CUDA is available;
    else ``{"cuda": None, "device": <CPU model name>, "device_count": 0}``."""
    import torch

    try:
        if torch.cuda.is_available():
            return {
                "cuda": torch.version.cuda,
                "device": torch.cuda.get_device_name(0),
                "device_count": torch.cuda.device_count(),
            }
    except Exception:  # a broken driver must not fail the run: report the CPU instead
        pass
    return {"cuda": None, "device": _cpu_name(), "device_count": 0}


def _versions() -> dict[str, str | None]:
    import monai
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "medgan": __version__,
    }


def provenance(started: _dt.datetime | None = None) -> dict[str, Any]:
    """What is running and where: a JSON-able dict.

    Keys: ``command`` (``sys.argv``), ``started_utc`` (ISO 8601; ``started``, or now, in UTC),
    ``hostname``, ``versions`` (python, torch, monai, numpy, medgan), ``device`` (:func:`device_info`)
    and ``git`` (:func:`git_state`: revision and dirty flag of medgan's source checkout, or None).
    """
    started = started or _dt.datetime.now(_dt.timezone.utc)
    if started.tzinfo is None:
        started = started.replace(tzinfo=_dt.timezone.utc)
    try:
        host = socket.gethostname()
    except OSError:
        host = None
    return {
        "command": list(_COMMAND) if _COMMAND is not None else list(sys.argv),
        "started_utc": started.astimezone(_dt.timezone.utc).isoformat(),
        "hostname": host,
        "versions": _versions(),
        "device": device_info(),
        "git": git_state(),
    }


def write_provenance(folder: Path, started: _dt.datetime | None = None) -> Path:
    """Write :func:`provenance` to ``<folder>/provenance.json`` atomically (creating ``folder``); return its path.

    A folder that already has one (a resumed run, a rerun of ``medgan run``) keeps the earlier
    starts under ``earlier`` (oldest first), so every process that wrote into it is on record.
    """
    path = Path(folder) / PROVENANCE_NAME
    rec = provenance(started)
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            old = None
        if isinstance(old, dict):
            earlier = old.pop("earlier", [])
            rec["earlier"] = [*(earlier if isinstance(earlier, list) else []), old]
    atomic_write_text(path, json.dumps(rec, indent=2) + "\n")
    return path
