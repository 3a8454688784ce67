"""``medgan run`` on the quickstart config: wall time and peak memory (target: < 10 min, < 4 GB on 2 CPU cores).

    python -m benchmarks.run_quickstart [--data-dir DIR] [--repeats 1]

Each repeat runs the whole main job in a fresh run folder and a fresh feature cache (as a new
user would), in a child process, and reads its peak resident memory from ``getrusage``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import append_section


def main(argv: list[str] | None = None) -> None:
    """Run and append the figures to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    walls, peaks = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "MEDGAN_CACHE_DIR": str(Path(tmp) / "cache"),
                "MEDGAN_DATA_DIR": args.data_dir,
            }
            cmd = [
                sys.executable,
                "-m",
                "medgan.cli",
                "run",
                str(repo / "configs/quickstart.yaml"),
                "--out",
                str(Path(tmp) / "run"),
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
            peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2)
    row = [
        str(args.repeats),
        f"{statistics.median(walls) / 60:.1f} ({min(walls) / 60:.1f}-{max(walls) / 60:.1f})",
        f"{max(peaks):.2f}",
    ]
    print(
        append_section(
            "medgan run on configs/quickstart.yaml (BreastMNIST)",
            f"python -m benchmarks.run_quickstart --repeats {args.repeats}",
            ["runs", "wall minutes, median (min-max)", "peak RSS GB"],
            [row],
            notes="Targets: under 10 minutes and 4 GB on 2 CPU cores. Fresh run folder and feature cache per run.",
        )
    )


if __name__ == "__main__":
    main()
