"""The command line: inspect / prepare on real data, and every bad input -> one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medgan.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run(capsys, "data", "inspect", *args, "--json")
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------- real data (the acceptance figures)


@pytest.mark.integration
def test_inspect_breastmnist_and_pneumoniamnist(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    s = inspect_json(capsys, "medmnist:breastmnist", "--data-dir", data_dir)
    assert s["format"] == "medmnist" and s["n_slices"] == 780 and s["shape"] == [1, 28, 28]
    assert s["per_split"] == {"train": 546, "val": 78, "test": 156}
    assert s["per_label"] == {"malignant": 210, "normal, benign": 570}
    s = inspect_json(capsys, "medmnist:pneumoniamnist", "--data-dir", data_dir)
    assert s["per_split"] == {"train": 4708, "val": 524, "test": 624}


@pytest.mark.integration
def test_inspect_dicom_ct_liver(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    s = inspect_json(capsys, "dicom/ct_liver_3slice", "--data-dir", data_dir)
    assert s["format"] == "dicom" and s["n_slices"] == 3 and s["shape"] == [1, 512, 512]
    assert s["n_series"] == 1
    assert s["raw_intensity_range"][0] < -900  # Hounsfield units: air, so RescaleIntercept was applied
    assert s["intensity_mode"].startswith("window")


@pytest.mark.integration
def test_inspect_dicom_mr_brain_in_position_order(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    s = inspect_json(capsys, "dicom/mr_brain_17slice", "--data-dir", data_dir)
    assert s["n_slices"] == 17 and s["shape"] == [1, 128, 88] and s["n_series"] == 1


@pytest.mark.integration
def test_inspect_nifti_with_mask(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    s = inspect_json(
        capsys,
        "nifti/lesion_volumes/brain1_image.nii.gz",
        "--mask",
        "nifti/lesion_volumes/brain1_label.nii.gz",
        "--data-dir",
        data_dir,
    )
    assert s["per_label"] == {"healthy": 18, "lesion": 7}
    assert s["lesion_slice_index"] == list(range(11, 18))


@pytest.mark.integration
def test_text_output_and_env_data_dir(
    capsys: pytest.CaptureFixture[str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(data_dir))
    code, out, _ = run(capsys, "data", "inspect", "medmnist:breastmnist")
    assert code == 0
    assert "train 546" in out and "malignant" in out and "(1, 28, 28)" in out


@pytest.mark.integration
def test_prepare_writes_shards_and_manifest(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    from medgan.data.prepare import load_prepared

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "prepared"
    code, _, err = run(
        capsys, "data", "prepare", repo / "configs/nifti_lesions.yaml", "--out", out, "--data-dir", data_dir
    )
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {
        "slices-00000.npz",
        "manifest.csv",
        "prepared.json",
        "config.resolved.yaml",
        "patient_key.salt",
    }
    ss = load_prepared(out)
    assert len(ss) == 69 and ss.shape == (1, 128, 128)
    # patient-grouped: each patient's slices in one split
    assert (ss.manifest.groupby("patient_id")["split"].nunique() == 1).all()
    assert not list(tmp_path.glob(".*partial"))
    # the same config prepares the same slices
    code, _, _ = run(
        capsys,
        "data",
        "prepare",
        repo / "configs/nifti_lesions.yaml",
        "--out",
        tmp_path / "again",
        "--data-dir",
        data_dir,
    )
    again = load_prepared(tmp_path / "again")
    assert np.array_equal(again.images, ss.images)
    assert again.manifest["split"].tolist() == ss.manifest["split"].tolist()


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("medgan: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "data", "inspect", tmp_path / "nope.nii.gz")
    assert_one_line_error(code, err, "nope.nii.gz", "not found")


def test_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "data", "inspect", tmp_path / "empty")
    assert_one_line_error(code, err, "empty", "empty")


def test_truncated_dicom(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "data", "inspect", bad)
    assert_one_line_error(code, err, "cut.dcm")


def test_corrupt_dicom_in_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(folder / "ok.dcm")
    data = (folder / "ok.dcm").read_bytes()
    (folder / "broken.dcm").write_bytes(data[: len(data) - 3000])
    code, _, err = run(capsys, "data", "inspect", folder)
    assert_one_line_error(code, err, "broken.dcm")


def test_non_image_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    code, _, err = run(capsys, "data", "inspect", p)
    assert_one_line_error(code, err, "notes.txt", "unrecognised input")


def test_four_d_nifti_without_volume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 4, 3), np.float32), np.eye(4)), str(p))
    code, _, err = run(capsys, "data", "inspect", p)
    assert_one_line_error(code, err, "bold.nii.gz", "4-D", "volume_index")
    code, out, _ = run(capsys, "data", "inspect", p, "--set", "data.source.volume_index=1", "--json")
    assert code == 0 and json.loads(out)["n_slices"] == 4


def test_mask_outside_the_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    img, mask = tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz"
    far = np.eye(4)
    far[:3, 3] = 100.0  # the image's shape, 173 mm away in world space
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.int16), np.eye(4)), str(img))
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.uint8), far), str(mask))
    code, _, err = run(capsys, "data", "inspect", img, "--mask", mask)
    assert_one_line_error(code, err, "seg.nii.gz", "does not overlap the image")


def test_nan_voxels(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    arr = np.ones((6, 6, 4), np.float32)
    arr[0, 0, 0] = np.nan
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(p))
    code, _, err = run(capsys, "data", "inspect", p)
    assert_one_line_error(code, err, "nan.nii.gz", "NaN")


def _image_csv(tmp_path: Path, rows: str) -> Path:
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + rows)
    return csv


def test_csv_row_naming_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    csv = _image_csv(tmp_path, "a.png,x\nmissing.png,y\n")
    code, _, err = run(capsys, "data", "inspect", csv)
    assert_one_line_error(code, err, "labels.csv", "missing.png")


def test_label_outside_configured_classes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    csv = _image_csv(tmp_path, "a.png,benign\nb.png,cancer\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  source: {{kind: images, labels_csv: {csv}, classes: [benign, malignant]}}\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "data", "prepare", cfg, "--out", out)
    assert_one_line_error(code, err, "labels.csv", "cancer")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_unknown_config_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  source: {kind: medmnist, name: breastmnist}\n  resize: 64\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "data", "prepare", cfg, "--out", out)
    assert_one_line_error(code, err, "cfg.yaml", "data.resize", "unknown key")
    assert not out.exists()


def test_failure_while_writing_leaves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.int16), np.eye(4)), str(img))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  source: {{kind: nifti, image: {img}}}\n")

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("medgan.data.prepare.write_manifest", boom)
    out = tmp_path / "out"
    code, _, err = run(capsys, "data", "prepare", cfg, "--out", out)
    assert code == 1 and "disk full" in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_output_is_not_clobbered(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    img = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.int16), np.eye(4)), str(img))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  source: {{kind: nifti, image: {img}}}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "data", "prepare", cfg, "--out", out)
    assert_one_line_error(code, err, "not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    code, _, _ = run(capsys, "data", "prepare", cfg, "--out", out, "--overwrite")
    assert code == 0 and not (out / "keep.txt").exists() and (out / "manifest.csv").is_file()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.cli", "--debug", "data", "inspect", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_console_script_help_and_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "data" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.cli", "data", "inspect"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
