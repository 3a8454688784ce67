"""The reader contract (medgan.io.contract): readers take plain arguments and return raw values.

2-D readers return :class:`Images2D` (raw pixels in the file's dtype, one manifest row per image,
nothing normalised or resized); volume readers return :class:`Volume`. The data layer's handling
of both is tested through ``load_source`` in test_medmnist.py, test_images.py and test_nifti.py.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medgan.errors import InputError
from medgan.io.contract import ImageBatch, Images2D, Volume, as_chw, check_finite
from medgan.io.images import read_image_folder
from medgan.io.medmnist import read_medmnist
from medgan.io.nifti import read_case

#: Keys the data layer adds; a reader never sets them.
DATA_LAYER_KEYS = {"intensity_mode", "intensity_lo", "intensity_hi", "sha1", "slice_id"}


def test_read_medmnist_returns_raw_uint8_batches_per_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(10, 200, size=(n, 6, 7), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    path = tmp_path / "medmnist" / "tinymnist.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)

    out = read_medmnist("tinymnist", tmp_path)
    assert isinstance(out, Images2D) and out.source_format == "medmnist" and out.classes == ["0", "1"]
    batches = list(out.batches)
    assert [b.rows[0]["split"] for b in batches] == ["train", "val", "test"]
    for b, split in zip(batches, ("train", "val", "test"), strict=True):
        assert isinstance(b, ImageBatch) and b.pixels.dtype == np.uint8
        np.testing.assert_array_equal(b.pixels[:, 0], arrays[f"{split}_images"])  # raw values, (n, 1, H, W)
        assert [r["slice_index"] for r in b.rows] == list(range(len(b.pixels)))
        assert all(r["source"] == str(path) and not DATA_LAYER_KEYS & set(r) for r in b.rows)
    lo = min(int(a.min()) for k, a in arrays.items() if k.endswith("images"))
    hi = max(int(a.max()) for k, a in arrays.items() if k.endswith("images"))
    assert out.info == {"file": str(path), "task": None, "raw_range": [lo, hi]}
    assert all(type(v) is int for v in out.info["raw_range"])  # shown as integers by data inspect


def test_read_image_folder_reads_each_file_when_asked(tmp_path: Path) -> None:
    a16 = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000
    Image.fromarray(a16).save(tmp_path / "deep.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,patient_id\ndeep.png,b,p1\nbroken.png,a,p2\n", encoding="utf-8")

    out = read_image_folder(csv)  # the CSV is checked now; no image is decoded yet
    assert out.classes == ["a", "b"] and out.info == {"n_files": 2} and out.where == str(csv)
    batches = iter(out.batches)
    first = next(batches)
    assert first.pixels.dtype == np.uint16 and first.pixels.shape == (1, 1, 6, 8)
    np.testing.assert_array_equal(first.pixels[0, 0], a16)
    (row,) = first.rows
    assert row["label"] == 1 and row["label_name"] == "b" and row["patient_id"] == "p1"
    assert row["source"] == str(tmp_path / "deep.png") and (row["rows"], row["cols"]) == (6, 8)
    assert not DATA_LAYER_KEYS & set(row)
    with pytest.raises(InputError, match=r"broken\.png"):
        next(batches)


def test_read_case_takes_paths_and_returns_a_raw_volume(tmp_path: Path) -> None:
    vol_path = tmp_path / "case7.nii.gz"
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) - 30
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(vol_path))
    vol = read_case(vol_path)
    assert isinstance(vol, Volume) and vol.data.shape == (3, 1, 5, 4) and vol.patient_id == "case7"
    assert vol.data.min() == data.min() and vol.data.max() == data.max()  # raw values, not [-1, 1]
    assert read_case(vol_path, patient_id="P1", axis="coronal").patient_id == "P1"


def test_check_finite_and_as_chw() -> None:
    check_finite(np.zeros(3, np.float32), "x")
    with pytest.raises(InputError, match=r"^bad: contains 1 NaN/Inf"):
        check_finite(np.array([0.0, np.inf]), "bad")
    assert as_chw(np.zeros((4, 5))).shape == (1, 4, 5)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        as_chw(np.zeros((2, 4, 5)))
