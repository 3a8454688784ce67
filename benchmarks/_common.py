"""Timing helpers shared by the benchmarks: warm-up, median of N runs with min/max, markdown output."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def time_runs(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Seconds per call: median, min and max over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": repeats}


def machine() -> str:
    """One line naming CPU, core count, torch version and device."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, device {dev}"


def append_section(
    title: str, command: str, header: list[str], rows: list[list[str]], notes: str = ""
) -> str:
    """Append a dated markdown table to docs/benchmarks.md and return the text."""
    today = _dt.date.today().isoformat()
    lines = [
        f"### {title} ({today})",
        "",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines) + "\n\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    if not DOCS.exists():
        DOCS.write_text("# Benchmarks\n\n", encoding="utf-8")
    with open(DOCS, "a", encoding="utf-8") as fh:
        fh.write(text)
    return text
