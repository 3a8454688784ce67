"""Conditional GAN on CPU (or GPU): training steps/s, generation slices/s and peak memory.

    python -m benchmarks.train_cgan [--data-dir DIR] [--repeats 5] [--steps 20]

For BreastMNIST and PneumoniaMNIST with the default config (``configs/quickstart.yaml``
defaults: 28 px, batch 64, hinge loss, DiffAugment translation+cutout+color, EMA):
- training steps/s of medgan's step, median of ``--repeats`` timings of ``--steps`` steps after
  a warm-up; baseline in the same run: MONAI's plain ``Generator`` + ``Discriminator`` with
  their defaults and BCE (no conditioning, augmentation or EMA) at the same batch size;
- generation slices/s in memory (EMA generator, batch 256) and to disk per format;
- peak resident memory of the whole measurement (each dataset in its own process).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks._common import append_section, time_runs


def _monai_baseline_step(batch: int) -> callable:
    from monai.networks.nets import Discriminator, Generator

    g = Generator(latent_shape=(64,), start_shape=(64, 7, 7), channels=(32, 1), strides=(2, 2))
    d = Discriminator(in_shape=(1, 28, 28), channels=(8, 16, 32), strides=(2, 2, 2), last_act=None)
    og = torch.optim.Adam(g.parameters(), 2e-4)
    od = torch.optim.Adam(d.parameters(), 2e-4)
    bce = torch.nn.BCEWithLogitsLoss()
    real = torch.rand(batch, 1, 28, 28) * 2 - 1

    def step() -> None:
        fake = g(torch.randn(batch, 64))
        ld = bce(d(real), torch.ones(batch, 1)) + bce(d(fake.detach()), torch.zeros(batch, 1))
        od.zero_grad()
        ld.backward()
        od.step()
        lg = bce(d(fake), torch.ones(batch, 1))
        og.zero_grad()
        lg.backward()
        og.step()

    return step


def measure(name: str, data_dir: str, repeats: int, steps: int) -> dict:
    """All figures for one dataset (run in a fresh process for a clean peak-memory reading)."""
    from medgan.config import load_config
    from medgan.data.sources import load_source
    from medgan.generate import generate
    from medgan.synthesis.cgan import ConditionalGAN, generate_images
    from medgan.training.checkpoint import save_checkpoint

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/quickstart.yaml", [f"data.source.name={name}"])
    ss = load_source(cfg.data, Path(data_dir)).split("train")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = ConditionalGAN(cfg.model, cfg.train, len(ss.classes), ss.shape, dev, 0)
    task.attach_data(torch.tensor(ss.images), torch.tensor(ss.manifest["label"].to_numpy().copy()), 0)
    counter = {"s": 0}

    def run_steps() -> None:
        for _ in range(steps):
            task.train_step(counter["s"])
            counter["s"] += 1

    t_ours = time_runs(run_steps, repeats)
    base = _monai_baseline_step(cfg.train.batch_size)
    t_base = time_runs(lambda: [base() for _ in range(steps)], repeats)

    n_gen = 4096
    labels = [i % len(ss.classes) for i in range(n_gen)]
    seeds = list(range(n_gen))
    t_mem = time_runs(lambda: generate_images(task.g_ema, labels, seeds, cfg.model.z_dim, dev), repeats)
    out: dict = {
        "dataset": name,
        "n_train": len(ss),
        "steps_per_s": {k: steps / v for k, v in t_ours.items() if k != "n"},
        "baseline_steps_per_s": {k: steps / v for k, v in t_base.items() if k != "n"},
        "gen_mem_per_s": {k: n_gen / v for k, v in t_mem.items() if k != "n"},
        "gen_disk_per_s": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tensors, _ = task.state_tensors()
        meta = {
            "classes": ss.classes,
            "shape": list(ss.shape),
            "model": cfg.model.model_dump(mode="json"),
            "data": {"intensity": {"lo": 0.0, "hi": 255.0}, "spacing": [None, None]},
        }
        ckpt = save_checkpoint(Path(tmp) / "ck", 1, tensors, meta)
        n_disk = 500
        for fmt in ("png", "nifti", "npz", "dicom"):

            def one(fmt: str = fmt, k: dict = {"i": 0}) -> None:  # noqa: B006 - a per-format run counter
                k["i"] += 1
                generate(
                    ckpt, Path(tmp) / f"{fmt}{k['i']}", n_disk // len(ss.classes), fmt=fmt, device=str(dev)
                )

            t = time_runs(one, max(3, repeats // 2))
            out["gen_disk_per_s"][fmt] = {kk: n_disk / v for kk, v in t.items() if kk != "n"}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _fmt(d: dict) -> str:
    lo, hi = sorted((d["min"], d["max"]))  # rates: the fastest run has the smallest time
    return f"{d['median']:,.1f} ({lo:,.1f}-{hi:,.1f})"


def main(argv: list[str] | None = None) -> None:
    """Run every dataset in a subprocess and append the tables to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.data_dir, args.repeats, args.steps)))
        return
    results = []
    for name in ("breastmnist", "pneumoniamnist"):
        cmd = [sys.executable, "-m", "benchmarks.train_cgan", "--one", name, "--data-dir", args.data_dir]
        cmd += ["--repeats", str(args.repeats), "--steps", str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(results[-1])
    rows = []
    for r in results:
        ratio = r["steps_per_s"]["median"] / r["baseline_steps_per_s"]["median"]
        rows.append(
            [
                f"{r['dataset']} ({r['n_train']} train)",
                _fmt(r["steps_per_s"]),
                _fmt(r["baseline_steps_per_s"]),
                f"{ratio:.2f}x",
                _fmt(r["gen_mem_per_s"]),
                " / ".join(
                    f"{f} {r['gen_disk_per_s'][f]['median']:,.0f}" for f in ("png", "nifti", "npz", "dicom")
                ),
                f"{r['peak_rss_mb']:,.0f}",
            ]
        )
    text = append_section(
        "Conditional GAN: training and generation",
        f"python -m benchmarks.train_cgan --repeats {args.repeats} --steps {args.steps}",
        [
            "data",
            "medgan train steps/s",
            "MONAI plain GAN steps/s (baseline)",
            "ratio",
            "generation slices/s in memory",
            "to disk slices/s (png / nifti / npz / dicom)",
            "peak RSS MB",
        ],
        rows,
        notes=(
            f"Default config, batch 64, 28 px; each timing is {args.steps} steps, median (min-max) of {args.repeats}. "
            "The baseline is MONAI's Generator + Discriminator with their defaults (0.1 M + 24 k parameters, BCE, no "
            "class conditioning, DiffAugment or EMA) at the same batch: it is the floor a MONAI user starts from, not an "
            "equivalent model. Generation in memory: 4,096 slices, batch 256; to disk: 500 slices per format including "
            "the manifest."
        ),
    )
    print(text)


if __name__ == "__main__":
    main()
