"""Bounded memory while generating: RSS of ``medgan generate`` as a large generation streams to disk.

Runs ``medgan generate`` in a subprocess and samples its resident set size (``/proc/PID/status``,
Linux) and the number of files written, once a second. Reports RSS when the first 10,000 slices
are on disk, at the last sample before the process exits, their difference (the growth, issue
target: under 200 MB), the peak (``VmHWM``), wall time and slices/s. Repeats, then the median.

    python -m benchmarks.generate_memory --checkpoint RUN/cgan --n-per-class 100000 --format png
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import append_section


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _count(out: Path, fmt: str, shard: int) -> int:
    """Slices on disk: files under images/ (PNG / NIfTI / DICOM), or whole NPZ shards x shard size."""
    if fmt == "npz":
        d = out / "shards"
        n = sum(1 for e in os.scandir(d) if e.name.endswith(".npz")) if d.is_dir() else 0
        return n * shard
    d = out / "images"
    return sum(1 for e in os.scandir(d) if not e.name.startswith(".")) if d.is_dir() else 0


def one_run(checkpoint: str, n_per_class: int, fmt: str, out: Path, every: float) -> dict[str, float]:
    """One generation; RSS samples keyed by slices on disk."""
    from medgan.generate import NPZ_SHARD

    cmd = [
        sys.executable, "-m", "medgan", "generate", "--checkpoint", checkpoint, "--out", str(out),
        "--n-per-class", str(n_per_class), "--format", fmt, "--device", "cpu",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first10k = last = peak = None
    n_last = 0
    while proc.poll() is None:
        rss, hwm = _status_kb(proc.pid, "VmRSS"), _status_kb(proc.pid, "VmHWM")
        n = _count(out, fmt, NPZ_SHARD)
        if rss is not None:
            if first10k is None and n >= 10_000:
                first10k = rss
            if n >= 10_000:
                last, n_last = rss, n
            peak = hwm or peak
        time.sleep(every)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"medgan generate failed: {proc.stderr.read().decode()[-2000:]}")
    total = len(list((out / "shards").glob("*.npz"))) if fmt == "npz" else _count(out, fmt, NPZ_SHARD)
    assert first10k is not None and last is not None, "the run ended before 10,000 slices were on disk"
    return {
        "rss_10k_mb": first10k / 1024,
        "rss_last_mb": last / 1024,
        "growth_mb": (last - first10k) / 1024,
        "peak_mb": (peak or 0) / 1024,
        "last_at": n_last,
        "wall_s": wall,
        "per_s": 2 * n_per_class / wall,
        "files": total,
    }


def main() -> None:
    """Run the benchmark and append its table to docs/benchmarks.md."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--checkpoint", required=True, help="conditional-GAN checkpoint or run folder (2 classes)"
    )
    ap.add_argument("--n-per-class", type=int, default=100_000)
    ap.add_argument("--format", default="png", choices=["png", "npz", "nifti", "dicom"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    runs = []
    for r in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="medgan-mem-"))
        try:
            res = one_run(args.checkpoint, args.n_per_class, args.format, out / "gen", args.every)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"run {r + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in res.items()), flush=True)
        runs.append(res)

    def cell(key: str, fmt: str = "{:.0f}") -> str:
        vals = [x[key] for x in runs]
        return f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}-{fmt.format(max(vals))})"

    total = 2 * args.n_per_class
    rows = [
        [
            f"{total:,} slices, {args.format}",
            cell("rss_10k_mb"),
            cell("rss_last_mb"),
            cell("growth_mb"),
            cell("peak_mb"),
            cell("wall_s"),
            cell("per_s"),
        ]
    ]
    cmd = (
        f"python -m benchmarks.generate_memory --checkpoint CKPT --n-per-class {args.n_per_class} "
        f"--format {args.format} --repeats {args.repeats}"
    )
    header = [
        "generation",
        "RSS at 10k slices, MB",
        "RSS at the end, MB",
        "growth, MB (target < 200)",
        "peak RSS, MB",
        "wall, s",
        "slices/s",
    ]
    notes = (
        f"Median (min-max) of {args.repeats} runs. RSS sampled every {args.every:g} s from /proc; 'the end' is "
        "the last sample before the process exits (after the manifest is written)."
    )
    if args.no_docs:
        print(rows)
    else:
        print(append_section("Generation memory: streaming to disk", cmd, header, rows, notes))


if __name__ == "__main__":
    main()
