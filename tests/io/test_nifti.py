"""NIfTI / NRRD volumes: orientation-aware slicing, lesion labels from masks, geometry, bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medgan.config import config_from_dict
from medgan.data.sources import load_source
from medgan.errors import InputError
from medgan.io.nifti import read_case


def _save(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return path


def _pair(tmp_path: Path, affine: np.ndarray | None = None) -> tuple[Path, Path]:
    img = np.zeros((12, 10, 8), np.int16)
    img[2:10, 2:8, :] = 100 + np.arange(8, dtype=np.int16)[None, None, :]  # intensity encodes z
    mask = np.zeros_like(img, dtype=np.uint8)
    mask[4:6, 4:6, 3] = 1
    mask[4:5, 4:5, 5] = 1
    return _save(tmp_path / "img.nii.gz", img, affine), _save(tmp_path / "mask.nii.gz", mask, affine)


def _cfg(**source: object) -> object:
    return config_from_dict({"data": {"source": {"kind": "nifti", **source}}}).data


def test_axial_slices_labelled_from_mask(tmp_path: Path) -> None:
    img, mask = _pair(tmp_path)
    ss = load_source(_cfg(image=str(img), mask=str(mask)), tmp_path)
    m = ss.manifest
    assert len(ss) == 8 and ss.shape == (1, 10, 12)  # rows follow A (10), columns follow R (12)
    assert sorted(m.loc[m.label == 1, "slice_index"]) == [3, 5]
    assert m.loc[m.slice_index == 3, "mask_px"].item() == 4
    assert (m["source"] == "img.nii.gz").all() and (m["patient_id"] == "img").all()


def test_min_lesion_px_and_empty_threshold(tmp_path: Path) -> None:
    img, mask = _pair(tmp_path)
    ss = load_source(_cfg(image=str(img), mask=str(mask), min_lesion_px=2), tmp_path)
    assert sorted(ss.manifest.loc[ss.manifest.label == 1, "slice_index"]) == [3]
    arr = nib.load(str(img)).get_fdata()
    arr[:, :, [0, 7]] = 0
    _save(tmp_path / "img2.nii.gz", arr.astype(np.int16))
    ss = load_source(
        _cfg(image=str(tmp_path / "img2.nii.gz"), empty_threshold=50, min_body_fraction=0.1), tmp_path
    )
    assert len(ss) == 6 and ss.info["n_dropped_empty"] == 2


def test_flipped_axis_keeps_file_slice_index(tmp_path: Path) -> None:
    aff = np.diag([1.0, 1.0, -1.0, 1.0])  # z voxel axis runs inferior
    img, mask = _pair(tmp_path, aff)
    vol = read_case(img, mask)
    # canonical order goes inferior -> superior, i.e. file index 7..0
    assert vol.slice_index == list(range(7, -1, -1))
    assert [int(vol.mask[k].sum()) for k in range(8)] == [0, 0, 1, 0, 4, 0, 0, 0]
    # the intensity encodes the file's z index: slice k holds 100 + file index
    for k, idx in enumerate(vol.slice_index):
        assert vol.data[k].max() == 100 + idx


def test_coronal_and_sagittal_shapes(tmp_path: Path) -> None:
    img, _ = _pair(tmp_path)
    assert read_case(img, axis="coronal").data.shape == (10, 1, 8, 12)
    assert read_case(img, axis="sagittal").data.shape == (12, 1, 8, 10)


def test_four_d_needs_volume_index(tmp_path: Path) -> None:
    p = _save(tmp_path / "dwi.nii.gz", np.zeros((6, 6, 4, 3), np.float32))
    with pytest.raises(
        InputError, match=r"dwi\.nii\.gz: is 4-D with 3 volumes; choose one with data\.source\.volume_index"
    ):
        read_case(p)
    assert read_case(p, volume_index=2).data.shape == (4, 1, 6, 6)


def test_mask_of_another_shape_is_placed_by_geometry(tmp_path: Path) -> None:
    """A mask covering 7 of the 8 slices (same grid otherwise) is placed on them, with a named warning."""
    img, _ = _pair(tmp_path)
    labels = np.zeros((12, 10, 7), np.uint8)
    labels[4:6, 4:6, 3] = 1
    short = _save(tmp_path / "short_mask.nii.gz", labels)
    vol = read_case(img, short)
    assert [int(vol.mask[k].sum()) for k in range(8)] == [0, 0, 0, 4, 0, 0, 0, 0]
    (note,) = vol.warnings
    assert note.startswith("mask short_mask.nii.gz: its 12x10x7 grid is the image's 1x1x1 mm grid")
    assert "without interpolation; it covers 87.5% of the image" in note


def test_nan_voxels(tmp_path: Path) -> None:
    arr = np.ones((4, 4, 3), np.float32)
    arr[1, 1, 1] = np.inf
    p = _save(tmp_path / "nan.nii.gz", arr)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: contains 1 NaN/Inf"):
        read_case(p)


def test_corrupt_and_non_nifti_files(tmp_path: Path) -> None:
    p = tmp_path / "junk.nii.gz"
    p.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match=r"junk\.nii\.gz: not a readable NIfTI"):
        read_case(p)
    img, _ = _pair(tmp_path)
    data = img.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"trunc\.nii\.gz"):
        read_case(tmp_path / "trunc.nii.gz")


def test_nrrd_label_volume_via_simpleitk(tmp_path: Path) -> None:
    img, mask = _pair(tmp_path)
    m = sitk.ReadImage(str(mask))
    sitk.WriteImage(m, str(tmp_path / "mask.nrrd"))
    a = read_case(img, mask)
    b = read_case(img, tmp_path / "mask.nrrd")
    assert np.array_equal(a.mask, b.mask)


def test_two_d_nrrd_image_and_mask(tmp_path: Path) -> None:
    """A 2-D NRRD (no z axis in its header) is one slice; it crashed building its affine."""
    arr = np.zeros((5, 6), np.uint8)
    arr[1:3, 2:4] = 1
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "flat.nrrd"))
    vol = read_case(tmp_path / "flat.nrrd", tmp_path / "flat.nrrd")
    assert vol.data.shape == (1, 1, 5, 6) and vol.mask is not None and int(vol.mask.sum()) == 4
    np.testing.assert_array_equal(vol.mask[0], vol.data[0, 0] > 0)


@pytest.mark.integration
def test_brain1_defaults_give_7_lesion_and_18_healthy(data_dir: Path) -> None:
    ss = load_source(
        _cfg(
            image="nifti/lesion_volumes/brain1_image.nii.gz", mask="nifti/lesion_volumes/brain1_label.nii.gz"
        ),
        data_dir,
    )
    m = ss.manifest
    assert m["label_name"].value_counts().to_dict() == {"healthy": 18, "lesion": 7}
    assert sorted(m.loc[m.label == 1, "slice_index"]) == list(range(11, 18))
    assert ss.shape == (1, 256, 256)
    assert m["spacing_row"].iloc[0] == pytest.approx(0.78125, abs=1e-4)
    assert m["slice_thickness"].iloc[0] == pytest.approx(6.5, abs=1e-3)


@pytest.mark.integration
def test_slice_geometry_agrees_with_simpleitk(data_dir: Path) -> None:
    """A pixel's LPS position from the manifest geometry lands on the voxel with the same value in SimpleITK."""
    path = data_dir / "nifti/lesion_volumes/breast1_image.nii.gz"
    vol = read_case(path)
    ref = sitk.ReadImage(str(path))
    ref_arr = sitk.GetArrayFromImage(ref)  # (z, y, x)
    row_dir, col_dir = vol.orientation[:3], vol.orientation[3:]
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(vol.data.shape[0]))
        r, c = (int(rng.integers(n)) for n in vol.data.shape[2:])
        p = vol.positions[k] + c * vol.spacing[1] * row_dir + r * vol.spacing[0] * col_dir
        i, j, kk = ref.TransformPhysicalPointToIndex(tuple(float(x) for x in p))
        assert ref_arr[kk, j, i] == vol.data[k, 0, r, c]


def test_monai_synthetic_volume_lesion_slices_match_its_segmentation(tmp_path: Path) -> None:
    """A MONAI synthetic volume with spheres: lesion slices are exactly those where the seg is non-empty."""
    from monai.data import create_test_image_3d

    img, seg = create_test_image_3d(
        40, 36, 30, num_objs=3, rad_max=6, noise_max=0.1, random_state=np.random.RandomState(7)
    )
    ip = _save(tmp_path / "syn.nii.gz", img.astype(np.float32))
    sp = _save(tmp_path / "syn_seg.nii.gz", seg.astype(np.uint8))
    ss = load_source(_cfg(image=str(ip), mask=str(sp)), tmp_path)
    expected = sorted(int(z) for z in np.flatnonzero((seg > 0).sum(axis=(0, 1))))
    got = sorted(ss.manifest.loc[ss.manifest.label == 1, "slice_index"].astype(int))
    assert got == expected and 0 < len(got) < 30
    assert ss.shape == (1, 36, 40)


def test_cases_from_a_csv_or_a_glob_instead_of_a_yaml_list(tmp_path: Path) -> None:
    """110 patients should not need 110 YAML lines: a CSV (image, mask, patient_id) or a glob with a
    mask pattern gives the same slices as the same cases listed in the config."""
    for k in range(3):
        img, mask = _pair(tmp_path)
        (tmp_path / "imagesTr").mkdir(exist_ok=True)
        (tmp_path / "labelsTr").mkdir(exist_ok=True)
        img.rename(tmp_path / "imagesTr" / f"case{k}.nii.gz")
        mask.rename(tmp_path / "labelsTr" / f"case{k}.nii.gz")
    listed = [
        {"image": f"imagesTr/case{k}.nii.gz", "mask": f"labelsTr/case{k}.nii.gz", "patient_id": f"case{k}"}
        for k in range(3)
    ]
    want = load_source(_cfg(cases=listed), tmp_path)
    (tmp_path / "cases.csv").write_text(
        "image,mask,patient_id\n" + "".join(f"{c['image']},{c['mask']},{c['patient_id']}\n" for c in listed)
    )
    by_csv = load_source(_cfg(cases_csv="cases.csv"), tmp_path)
    by_glob = load_source(_cfg(cases_glob="imagesTr/*.nii.gz", mask_pattern="labelsTr/{name}"), tmp_path)
    for got in (by_csv, by_glob):
        assert np.array_equal(got.images, want.images) and np.array_equal(got.masks, want.masks)
        assert got.manifest["patient_id"].tolist() == want.manifest["patient_id"].tolist()
        assert got.manifest["label"].tolist() == want.manifest["label"].tolist()
    with pytest.raises(Exception, match=r"cases_glob: 'nothing/\*\.nii\.gz' matches no file"):
        load_source(_cfg(cases_glob="nothing/*.nii.gz"), tmp_path)
    (tmp_path / "bad.csv").write_text("image,maks\nimagesTr/case0.nii.gz,x\n")
    with pytest.raises(
        InputError, match=r"bad\.csv: header .* expected the columns 'image\[,mask\]\[,patient_id\]'"
    ):
        load_source(_cfg(cases_csv="bad.csv"), tmp_path)
    (tmp_path / "out.csv").write_text("image\n../../etc/passwd\n")
    with pytest.raises(InputError, match=r"out\.csv"):
        load_source(_cfg(cases_csv="out.csv"), tmp_path)
    with pytest.raises(Exception, match="exactly one of 'image'"):
        _cfg(image="x.nii.gz", cases_csv="cases.csv")
