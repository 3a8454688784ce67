"""Reading labelled slices: medgan's readers against what a MONAI / numpy user would write.

    python -m benchmarks.read_sources [--data-dir DIR] [--repeats 5]

For each source, slices/s for medgan's ``load_source`` (read, orient, normalise, label, hash,
split, manifest) and for a baseline in the same run:
- MedMNIST: ``np.load`` + scaling to [-1, 1] (no manifest, no hashing);
- NIfTI + mask: MONAI ``LoadImage`` + ``EnsureChannelFirst`` + ``Orientation('RAS')`` on image and
  mask, ``ScaleIntensityRangePercentiles``, and per-slice lesion counting;
- DICOM series: SimpleITK ``ImageSeriesReader`` (GDCM series sorting) + a window. (MONAI's
  ``LoadImage(reader='PydicomReader')`` cannot be the baseline: it fails on the CT folder because
  the folder also holds the SEG object.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import append_section, time_runs
from medgan.config import config_from_dict
from medgan.data.sources import load_source
from medgan.paths import resolve_data_dir


def _medgan(source: dict, data_dir: Path) -> int:
    return len(load_source(config_from_dict({"data": {"source": source}}).data, data_dir))


def _numpy_medmnist(path: Path) -> int:
    n = 0
    with np.load(path) as z:
        for s in ("train", "val", "test"):
            x = z[f"{s}_images"].astype(np.float32) / 127.5 - 1.0
            n += len(x)
    return n


def _monai_nifti(img: Path, mask: Path) -> int:
    from monai.transforms import (
        Compose,
        EnsureChannelFirst,
        LoadImage,
        Orientation,
        ScaleIntensityRangePercentiles,
    )

    load = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Orientation(axcodes="RAS")])
    x = ScaleIntensityRangePercentiles(0.5, 99.5, -1.0, 1.0, clip=True)(load(str(img)))
    m = load(str(mask))
    lesion = (torch.as_tensor(m) > 0).sum(dim=(0, 1, 2))
    return int(x.shape[-1] + 0 * lesion.sum())


def _sitk_dicom(folder: Path) -> int:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    x = sitk.GetArrayFromImage(reader.Execute()).astype(np.float32)
    x = np.clip((x + 160.0) / 200.0 - 1.0, -1.0, 1.0)
    return int(x.shape[0])


def main(argv: list[str] | None = None) -> None:
    """Run the reader benchmarks and append the table to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    d = resolve_data_dir(args.data_dir)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cases = [
        (
            "PneumoniaMNIST .npz (5,856 slices, 28 px)",
            lambda: _medgan({"kind": "medmnist", "name": "pneumoniamnist"}, d),
            "np.load + scale",
            lambda: _numpy_medmnist(d / "medmnist/pneumoniamnist.npz"),
        ),
        (
            "NIfTI brain1 + mask (25 slices, 256 px)",
            lambda: _medgan(
                {
                    "kind": "nifti",
                    "image": "nifti/lesion_volumes/brain1_image.nii.gz",
                    "mask": "nifti/lesion_volumes/brain1_label.nii.gz",
                },
                d,
            ),
            "MONAI LoadImage+Orientation+percentiles",
            lambda: _monai_nifti(
                d / "nifti/lesion_volumes/brain1_image.nii.gz", d / "nifti/lesion_volumes/brain1_label.nii.gz"
            ),
        ),
        (
            "DICOM CT series (3 slices, 512 px)",
            lambda: _medgan({"kind": "dicom", "path": "dicom/ct_liver_3slice"}, d),
            "SimpleITK ImageSeriesReader+window",
            lambda: _sitk_dicom(d / "dicom/ct_liver_3slice"),
        ),
        (
            "DICOM MR series (17 slices, 128x88)",
            lambda: _medgan({"kind": "dicom", "path": "dicom/mr_brain_17slice"}, d),
            "SimpleITK ImageSeriesReader+window",
            lambda: _sitk_dicom(d / "dicom/mr_brain_17slice"),
        ),
    ]
    rows = []
    for name, ours, base_name, base in cases:
        n = ours()
        a = time_runs(ours, args.repeats)
        b = time_runs(base, args.repeats)
        rows.append(
            [
                name,
                f"{n / a['median']:,.0f} ({n / a['max']:,.0f}-{n / a['min']:,.0f})",
                base_name,
                f"{n / b['median']:,.0f} ({n / b['max']:,.0f}-{n / b['min']:,.0f})",
                f"{b['median'] / a['median']:.2f}x",
            ]
        )
        print(rows[-1])
    text = append_section(
        "Reading labelled slices",
        "python -m benchmarks.read_sources --data-dir ../shared/data",
        ["source", "medgan slices/s median (min-max)", "baseline", "baseline slices/s", "medgan / baseline"],
        rows,
        notes=(
            f"Median of {args.repeats} runs after one warm-up. medgan's figure includes what the baseline does "
            "not: SHA-1 per slice, splits and the manifest (and, for MedMNIST, duplicate detection)."
        ),
    )
    print(text)


if __name__ == "__main__":
    main()
