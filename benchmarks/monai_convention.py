"""Do real and synthetic slices reach a MONAI network in one convention? (docs/monai.md, issue 18)

The route docs/monai.md recommends: real slices written by ``medgan augment`` as PNG and read with
``LoadImaged`` + ``EnsureChannelFirstd`` + ``ScaleIntensityd``, synthetic slices from the plug-in
(``SyntheticDataset``), both through the same ``Resized``. The check: the correlation between the
mean real image and the mean synthetic image, next to the real-real one (mean images of two
disjoint halves of the real slices), and the mean intensities. The synthetic tensors the plug-in
gave before issue 18 (array order, [-1, 1] mapped linearly) are shown for comparison.

    python -m benchmarks.monai_convention --checkpoint runs/study-breastmnist/cgan --out /tmp/aug
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd

from medgan.monai import SyntheticDataset
from medgan.synthesis import registry


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main(argv: list[str] | None = None) -> dict:
    """Print and return the correlations and mean intensities."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--out", required=True, help="Folder for the augmented dataset.")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args(argv)
    if not (Path(args.out) / "datalist.json").is_file():
        cmd = [
            sys.executable,
            "-m",
            "medgan",
            "augment",
            args.config,
            "--out",
            args.out,
            "--set",
            f"augment.checkpoints=[{args.checkpoint}]",
            "--set",
            "augment.ratio=0.5",
            "--set",
            "train.tracking=[]",
        ]
        subprocess.run(cmd, check=True, env=os.environ.copy())
    files = [
        f
        for f in load_decathlon_datalist(str(Path(args.out) / "datalist.json"), True, "training")
        if not f["synthetic"]
    ]
    resize = Resized("image", (args.size, args.size))
    load = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), ScaleIntensityd("image"), resize])
    real = np.stack([np.asarray(load(dict(f))["image"]) for f in files])
    n_per_class = int(np.bincount([int(f["label"]) for f in files]).max())
    syn_ds = SyntheticDataset(args.checkpoint, n_per_class=n_per_class, transform=resize, device="cpu")
    syn = np.stack([np.asarray(syn_ds[i]["image"]) for i in range(len(syn_ds))])
    # the tensors the plug-in gave before: array order, [-1, 1] mapped linearly to [0, 1]
    synth = registry.load(args.checkpoint, "cpu", makes="samples")
    raw = synth.generate(syn_ds.labels.tolist(), syn_ds.seeds.tolist())
    old = np.stack([np.asarray(resize({"image": (x + 1) / 2})["image"]) for x in raw])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(real))
    half_a, half_b = real[perm[: len(real) // 2]].mean(0), real[perm[len(real) // 2 :]].mean(0)
    m_real, m_syn, m_old = real.mean(0), syn.mean(0), old.mean(0)
    out = {
        "n_real": len(real),
        "n_synthetic": len(syn),
        "corr_real_real": _corr(half_a, half_b),
        "corr_real_synthetic": _corr(m_real, m_syn),
        "corr_real_synthetic_before": _corr(m_real, m_old),
        "corr_real_synthetic_before_transposed": _corr(m_real, np.swapaxes(m_old, -1, -2)),
        "mean_real": float(real.mean()),
        "mean_synthetic": float(syn.mean()),
        "mean_synthetic_before": float(old.mean()),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
