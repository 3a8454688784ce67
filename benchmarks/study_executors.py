"""A study's wall time with the local executor and with Ray, on the same config (docs/benchmarks.md).

The study: BreastMNIST (the quickstart's data and classifier, 10 epochs), arms real / classical /
cgan at ratio 0.5, fraction 1.0, 3 seeds: one cGAN (``--cgan-steps``) and 9 classifier cells. Each repeat runs in a fresh folder (nothing cached), so the figure is the
whole study: Ray's start-up, shipping the slices to workers, and the jobs.

    python -m benchmarks.study_executors --repeats 3 --cgan-steps 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks._common import machine
from medgan.config import load_config
from medgan.paths import resolve_data_dir
from medgan.study import run_study


def _cfg(executor: str, cpus: int | None, steps: int) -> object:
    sets = [
        "study.arms=[real, classical, cgan]",
        "study.ratios=[0.5]",
        "study.fractions=[1.0]",
        "study.seeds=3",
        "classifier.epochs=10",
        f"study.steps.cgan={steps}",
        f"study.executor={executor}",
        f"study.cpus_per_task={'null' if cpus is None else cpus}",
        "train.tracking=[]",
        "gates=null",
    ]
    return load_config("configs/quickstart.yaml", sets)


def main(argv: list[str] | None = None) -> None:
    """Time each executor setting ``--repeats`` times; print a markdown table and the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cgan-steps", type=int, default=100)
    args = ap.parse_args(argv)
    settings = [("local", None), ("local", 1), ("ray", 1)]
    times: dict[str, list[float]] = {}
    results: dict[str, pd.DataFrame] = {}
    for rep in range(args.repeats):
        for executor, cpus in settings:
            name = f"{executor}, cpus_per_task={cpus}"
            with tempfile.TemporaryDirectory(prefix="medgan-study-bench-") as tmp:
                t0 = time.perf_counter()
                run_study(_cfg(executor, cpus, args.cgan_steps), resolve_data_dir(), Path(tmp))
                times.setdefault(name, []).append(time.perf_counter() - t0)
                results[name] = pd.read_csv(Path(tmp) / "results.csv")
            print(f"repeat {rep}: {name}: {times[name][-1]:.1f} s", flush=True)
    same = results["local, cpus_per_task=1"].equals(results["ray, cpus_per_task=1"])
    print(f"\nmachine: {machine()}\n")
    print("| executor | median s | min | max | runs |\n|---|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {min(ts):.1f} | {max(ts):.1f} | {len(ts)} |")
    print(f"\nresults.csv of local and ray at cpus_per_task=1 identical: {same}")
    print(json.dumps({k: sorted(v) for k, v in times.items()}))


if __name__ == "__main__":
    main()
