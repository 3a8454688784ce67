"""The mask-conditioned SPADE GAN and the segmenter on CPU (or GPU): training and generation rates.

    python -m benchmarks.spade_speed [--data-dir DIR] [--repeats 3] [--steps 5] [--n 256] [--device cpu]
                                     [--kinds] [--train-only]

BUSI at 64 px (``configs/spade_busi.yaml``), batch 32:

- SPADE training images/s, median of ``--repeats`` timings of ``--steps`` steps after a warm-up,
  by default and with the mode-seeking term (``ms_weight: 1``); baseline in the same run:
  the cGAN at the same size and batch (``model.kind: cgan``, its defaults); with ``--kinds``
  also the study_busi cGAN arm, the diffusion model and the CycleGAN (the cost of their arms);
- generation of ``--n`` image + mask pairs in memory (``generate_pairs``), images/s;
- one epoch of the segmenter (MONAI UNet, the config's ``segmenter:``) on the 544 training pairs,
  with and without classical augmentation, seconds (median of ``--repeats``).

The weights are a one-step checkpoint: speed does not depend on what the network learned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import append_section, time_runs

CONFIG = "configs/spade_busi.yaml"

#: ``--kinds``: the other kinds a BUSI study could train, at the same size and batch (what an arm of
#: configs/study_busi.yaml costs per image).
KIND_ROWS = (
    ("cgan (study_busi arm: g_channels 64)", ["model={kind: cgan, g_channels: 64}"]),
    ("diffusion (its defaults)", ["model={kind: diffusion}"]),
    (
        "cyclegan (study arm defaults: 32 ch, 6 blocks; normal <-> malignant)",
        ["model={kind: cyclegan, g_channels: 32, n_res_blocks: 6, domain_a: normal, domain_b: malignant}"],
    ),
)


def _rate(overrides: list[str], data_dir: Path, repeats: int, steps: int, device: str) -> float:
    from medgan.config import load_config
    from medgan.synthesis import registry
    from medgan.train import checkpoint_meta, training_masks, training_slices

    cfg = load_config(CONFIG, overrides)
    images, labels, meta = training_slices(cfg, data_dir, None)
    entry = registry.get(cfg.model.kind)
    masks = training_masks(cfg, data_dir) if entry.pairs else None
    meta = checkpoint_meta(cfg, labels, meta)  # as training does (a CycleGAN's domains)
    task = entry.build_task(cfg, images, labels, meta, torch.device(device), masks=masks)
    counter = iter(range(10**9))

    def run() -> None:
        for _ in range(steps):
            task.train_step(next(counter))
        if device == "cuda":
            torch.cuda.synchronize()

    t = time_runs(run, repeats=repeats, warmup=1)
    return steps * cfg.train.batch_size / t["median"]


def main(argv: list[str] | None = None) -> None:
    """Time SPADE training (with / without mode seeking, cGAN baseline), pair generation and a segmenter epoch."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MEDGAN_DATA_DIR", "../shared/data"))
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kinds", action="store_true", help="also time the cGAN arm, diffusion and CycleGAN")
    ap.add_argument("--train-only", action="store_true", help="only the training rates")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    rows = []
    for name, over in (
        ("spade (default: ms_weight 0)", []),
        ("spade (ms_weight 1)", ["model.ms_weight=1"]),
        ("cgan (baseline, its defaults)", ["model={kind: cgan}", "train.lr_g=2e-4", "train.lr_d=2e-4"]),
        *(KIND_ROWS if args.kinds else ()),
    ):
        r = _rate([*over, "train.select.every=0"], args.data_dir, args.repeats, args.steps, args.device)
        rows.append([name, f"{r:.1f}", f"{32 / r:.2f}"])
        print(rows[-1], flush=True)
    append_section(
        "SPADE GAN: training images/s at 64 px, batch 32 (BUSI)",
        f"python -m benchmarks.spade_speed --repeats {args.repeats} --steps {args.steps} --device {args.device}"
        + (" --kinds" if args.kinds else "")
        + (" --train-only" if args.train_only else ""),
        ["model", f"images/s (median of {args.repeats} x {args.steps} steps)", "s / step"],
        rows,
    )
    if args.train_only:
        return

    from medgan.config import load_config
    from medgan.data.sources import load_source
    from medgan.synthesis import registry
    from medgan.train import train

    with tempfile.TemporaryDirectory() as tmp:
        ck = train(
            load_config(CONFIG, ["train.steps=1", "train.select.every=0"]), Path(tmp) / "r", args.data_dir
        )
        synth = registry.load_pair_sampler(ck, args.device)
        labels, seeds = [i % 3 for i in range(args.n)], list(range(args.n))
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            synth.generate_pairs(labels, seeds)
            times.append(time.perf_counter() - t0)
        gen = args.n / statistics.median(times)

    from medgan.segmenter.train import train_segmenter

    cfg = load_config(CONFIG)
    ss = load_source(cfg.data, args.data_dir)
    tr, va = ss.split("train"), ss.split("val")
    seg_rows = []
    for aug in (False, True):
        c = cfg.segmenter.model_copy(update={"epochs": 1, "augment": aug, "device": args.device})
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            train_segmenter(tr.images, tr.masks, va.images, va.masks, c)
            ts.append(time.perf_counter() - t0)
        seg_rows.append(
            [
                f"segmenter epoch ({len(tr)} pairs), augment {aug}",
                f"{statistics.median(ts):.1f}",
                f"{min(ts):.1f}-{max(ts):.1f}",
            ]
        )
    append_section(
        "SPADE pairs and the segmenter at 64 px (BUSI)",
        f"python -m benchmarks.spade_speed --n {args.n} --repeats {args.repeats} --device {args.device}",
        ["what", f"seconds (median of {args.repeats})", "min-max s"],
        [
            [f"generate_pairs of {args.n} image + mask pairs", f"{args.n / gen:.2f}", f"{gen:.0f} pairs/s"],
            *seg_rows,
        ],
        notes="The segmenter epoch includes scoring the validation pairs (118) once.",
    )


if __name__ == "__main__":
    main()
