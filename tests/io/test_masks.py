"""Masks aligned to their image through geometry (:mod:`medgan.io.masks`), for NIfTI cases, DICOM
series with a label volume, and DICOM SEG frames.

Each lesion is placed in *world* space: the image holds a bright blob, the mask file marks the
same world points on its own grid (its own axis order, flips, spacing), and the mask read back
must be exactly the blob.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medgan.errors import InputError
from medgan.io.dicom import read_dicom_volumes
from medgan.io.masks import align_labels
from medgan.io.nifti import read_case
from tests.io.test_dicom import write_seg, write_slice

# ----------------------------------------------------------------------------------------------
# NIfTI image + mask
# ----------------------------------------------------------------------------------------------

#: Image grid: 0.8 x 0.8 x 2 mm voxels, somewhere in RAS space.
AFFINE = np.array([[0.8, 0, 0, -5.0], [0, 0.8, 0, 7.0], [0, 0, 2.0, -3.0], [0, 0, 0, 1]])
SHAPE = (12, 10, 8)


def _blob() -> np.ndarray:
    """The lesion in the image's voxels (not symmetric under any flip or swap of axes)."""
    blob = np.zeros(SHAPE, np.uint8)
    blob[2:4, 6:8, 4:6] = 1
    return blob


def _save(path: Path, arr: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def _image(tmp_path: Path) -> Path:
    """The image: 10 everywhere, 500 on the lesion."""
    return _save(tmp_path / "img.nii.gz", (10 + 490 * _blob().astype(np.int16)), AFFINE)


def _lesion_is_the_blob(vol: object) -> None:
    """The mask is exactly where the image is bright (and not empty)."""
    assert vol.mask is not None and vol.mask.any()  # type: ignore[attr-defined]
    np.testing.assert_array_equal(vol.mask, (vol.data[:, 0] > 100).astype(np.uint8))  # type: ignore[attr-defined]


def test_mask_with_flipped_axes_lands_on_the_lesion(tmp_path: Path) -> None:
    """x and z stored backwards (affine says so): the voxel order alone would put the lesion elsewhere."""
    flip = np.array([[-1, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, -1, SHAPE[2] - 1], [0, 0, 0, 1]])
    mask = _save(tmp_path / "flipped.nii.gz", _blob()[::-1, :, ::-1].copy(), AFFINE @ flip)
    vol = read_case(_image(tmp_path), mask)
    _lesion_is_the_blob(vol)
    assert vol.warnings == []  # the same grid: reordered exactly
    _lesion_is_the_blob(read_case(_image(tmp_path), mask, axis="sagittal"))


def test_mask_with_swapped_axes_lands_on_the_lesion(tmp_path: Path) -> None:
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    mask = _save(tmp_path / "swapped.nii.gz", _blob().transpose(1, 0, 2).copy(), AFFINE @ swap)
    vol = read_case(_image(tmp_path), mask)
    _lesion_is_the_blob(vol)
    assert vol.warnings == []


def test_nrrd_mask_in_its_own_lps_grid_lands_on_the_lesion(tmp_path: Path) -> None:
    """A NRRD mask with another axis order and flips, its lesion voxels found by SimpleITK from
    the lesion's world (LPS) points: independent of medgan's own geometry code."""
    img = sitk.Image(8, 12, 10, sitk.sitkUInt8)  # ITK axes: image z, image -x, image y
    img.SetSpacing((2.0, 0.8, 0.8))
    img.SetDirection((0, 1, 0, 0, 0, -1, 1, 0, 0))  # columns (0,0,1), (1,0,0), (0,-1,0) in LPS
    corner = AFFINE @ [SHAPE[0] - 1, 0, 0, 1]  # image voxel of mask index 0, RAS
    img.SetOrigin((-corner[0], -corner[1], corner[2]))
    for i, j, k in np.argwhere(_blob()):
        x, y, z, _ = AFFINE @ [i, j, k, 1]
        img[img.TransformPhysicalPointToIndex((-x, -y, z))] = 1
    sitk.WriteImage(img, str(tmp_path / "lps.nrrd"))
    vol = read_case(_image(tmp_path), tmp_path / "lps.nrrd")
    _lesion_is_the_blob(vol)
    assert vol.warnings == []


def test_half_resolution_mask_is_resampled_with_a_named_warning(tmp_path: Path) -> None:
    """Mask voxel k covers image voxels 2k and 2k + 1 along every axis."""
    half = np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1]])
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1, 3, 2] = 1
    mask = _save(tmp_path / "coarse.nii.gz", labels, AFFINE @ half)
    vol = read_case(_image(tmp_path), mask)
    _lesion_is_the_blob(vol)
    assert vol.warnings == [
        "mask coarse.nii.gz: resampled from 1.6x1.6x4 mm to the image grid 0.8x0.8x2 mm (nearest neighbour)"
    ]


def test_mask_elsewhere_in_world_space_is_refused(tmp_path: Path) -> None:
    """Same shape as the image, but 500 mm away: refused, though the voxel order would fit."""
    far = AFFINE.copy()
    far[:3, 3] += 500.0
    mask = _save(tmp_path / "far.nii.gz", _blob(), far)
    with pytest.raises(
        InputError, match=r"far\.nii\.gz: mask does not overlap the image img\.nii\.gz in world space"
    ) as err:
        read_case(_image(tmp_path), mask)
    assert "\n" not in str(err.value)


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    labels = _blob().astype(np.int16)
    labels[0, 0, 0] = -3
    mask = _save(tmp_path / "neg.nii.gz", labels, AFFINE)
    with pytest.raises(InputError, match=r"neg\.nii\.gz: mask labels must be >= 0, found -3$"):
        read_case(_image(tmp_path), mask)


@pytest.mark.parametrize(
    "affine",
    [np.diag([1.0, 0.0, 1.0, 1.0]), np.diag([1.0, np.nan, 1.0, 1.0]), np.ones((4, 4))],
    ids=["zero-axis", "nan", "rank-1"],
)
def test_singular_or_non_finite_mask_affine_is_refused(affine: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"^m\.nii: the mask's affine .* is singular or not finite$"):
        align_labels(_blob(), affine, SHAPE, AFFINE, mask="m.nii", image="img.nii")


def test_align_labels_keeps_label_values() -> None:
    labels = np.zeros(SHAPE, np.uint16)
    labels[1, 2, 3], labels[5, 5, 5] = 7, 300
    out, note = align_labels(
        labels[::-1].copy(),
        AFFINE @ np.diag([-1, 1, 1, 1]) @ _shift(11),
        SHAPE,
        AFFINE,
        mask="m.nii",
        image="i.nii",
    )
    assert note is None and out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)


def _shift(x: float) -> np.ndarray:
    out = np.eye(4)
    out[0, 3] = -x
    return out


# ----------------------------------------------------------------------------------------------
# DICOM series + NIfTI / NRRD label volume
# ----------------------------------------------------------------------------------------------

ROWS, COLS = 8, 10
ORIGIN = (-10.0, -20.0, 30.0)  # first pixel of the lowest slice, LPS
ROW_SP, COL_SP, STEP = 0.5, 0.75, 2.5


def _series(folder: Path, zs: list[int], uid: str | None = None, **attrs: object) -> list[Dataset]:
    """Axial slices at ORIGIN + (0, 0, STEP * z) for z in ``zs``; 900 on the lesion (slice z = 3,
    rows 2-3, columns 5-7), 10 elsewhere."""
    uid = uid or generate_uid()
    out = []
    for n, z in enumerate(zs):
        pix = np.full((ROWS, COLS), 10, np.int16)
        if z == 3:
            pix[2:4, 5:8] = 900
        out.append(
            write_slice(
                folder / f"s{n}.dcm",
                pix,
                series=uid,
                instance=n + 1,
                ImagePositionPatient=[ORIGIN[0], ORIGIN[1], ORIGIN[2] + STEP * z],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                PixelSpacing=[ROW_SP, COL_SP],
                **attrs,
            )
        )
    return out


def _lesion_world() -> list[tuple[float, float, float]]:
    return [
        (ORIGIN[0] + c * COL_SP, ORIGIN[1] + r * ROW_SP, ORIGIN[2] + 3 * STEP)
        for r in range(2, 4)
        for c in range(5, 8)
    ]


def _label_volume(path: Path, n_slices: int = 6, offset: float = 0.0) -> Path:
    """Labels on the series' lattice stored with x and z flipped (direction diag(-1, 1, -1)),
    the lesion marked by SimpleITK at its world points."""
    img = sitk.Image(COLS, ROWS, n_slices, sitk.sitkUInt8)
    img.SetSpacing((COL_SP, ROW_SP, STEP))
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    img.SetOrigin((ORIGIN[0] + (COLS - 1) * COL_SP + offset, ORIGIN[1], ORIGIN[2] + (n_slices - 1) * STEP))
    for p in _lesion_world():
        img[img.TransformPhysicalPointToIndex((p[0] + offset, p[1], p[2]))] = 1
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_dicom_label_volume_with_flipped_axes_lands_on_the_lesion(tmp_path: Path, suffix: str) -> None:
    _series(tmp_path / "series", list(range(6)))
    labels = _label_volume(tmp_path / f"lab{suffix}")
    (vol,) = read_dicom_volumes(tmp_path / "series", mask=labels)
    _lesion_is_the_blob(vol)
    assert vol.mask.sum() == 6 and vol.warnings == []


def test_dicom_label_volume_on_unevenly_spaced_slices(tmp_path: Path) -> None:
    """Slice z = 2 is missing: each slice takes the labels at its own position, exactly."""
    _series(tmp_path / "series", [0, 1, 3, 4, 5])
    (vol,) = read_dicom_volumes(tmp_path / "series", mask=_label_volume(tmp_path / "lab.nrrd"))
    _lesion_is_the_blob(vol)
    assert vol.mask.reshape(5, -1).sum(1).tolist() == [0, 0, 6, 0, 0] and vol.warnings == []


def test_dicom_label_volume_elsewhere_is_refused(tmp_path: Path) -> None:
    _series(tmp_path / "series", list(range(6)))
    labels = _label_volume(tmp_path / "far.nrrd", offset=300.0)  # same shape, 300 mm to the left
    with pytest.raises(
        InputError, match=r"far\.nrrd: mask does not overlap the image series .* in world space"
    ):
        read_dicom_volumes(tmp_path / "series", mask=labels)


# ----------------------------------------------------------------------------------------------
# DICOM SEG: Frame of Reference, orientation, spacing, references
# ----------------------------------------------------------------------------------------------


def _seg_masks() -> np.ndarray:
    m = np.zeros((2, ROWS, COLS), dtype=np.uint8)
    m[0, 2:4, 5:8] = 1
    m[1, 0, 0] = 1
    return m


def _resave(seg: Path, **changes: object) -> None:
    import pydicom

    ds = pydicom.dcmread(seg)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for key, value in changes.items():
        if key == "ImageOrientationPatient":
            shared.PlaneOrientationSequence[0].ImageOrientationPatient = value
        elif key == "PixelSpacing":
            shared.PixelMeasuresSequence = Sequence([Dataset()])
            shared.PixelMeasuresSequence[0].PixelSpacing = value
        else:
            setattr(ds, key, value)
    ds.save_as(seg, enforce_file_format=True)


def test_seg_in_another_frame_of_reference_is_refused(tmp_path: Path) -> None:
    refs = _series(tmp_path / "series", list(range(6)), FrameOfReferenceUID="1.2.3.100")
    seg = tmp_path / "seg.dcm"
    for with_reference in (True, False):
        write_seg(seg, _seg_masks(), [refs[3], refs[4]], [1, 1], {1: "Lesion"}, with_reference=with_reference)
        _resave(seg, FrameOfReferenceUID="1.2.3.100")
        (vol,) = read_dicom_volumes(tmp_path / "series", mask=seg)
        _lesion_is_the_blob_on(vol, extra=1)
        _resave(seg, FrameOfReferenceUID="1.2.3.999")
        with pytest.raises(
            InputError,
            match=r"seg\.dcm: SEG FrameOfReferenceUID 1\.2\.3\.999 is different from 1\.2\.3\.100 of series",
        ):
            read_dicom_volumes(tmp_path / "series", mask=seg)


def _lesion_is_the_blob_on(vol: object, extra: int) -> None:
    """The SEG's first frame is the lesion (slice 3); its second marks one pixel on slice 4."""
    assert vol.mask is not None  # type: ignore[attr-defined]
    assert vol.mask.reshape(6, -1).sum(1).tolist() == [0, 0, 0, 6, extra, 0]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(vol.mask[3], (vol.data[3, 0] > 100).astype(np.uint8))  # type: ignore[attr-defined]


def test_seg_frames_in_another_orientation(tmp_path: Path) -> None:
    """Same corner point, another plane: not placed by position; referenced by UID: refused."""
    refs = _series(tmp_path / "series", list(range(6)))
    seg = tmp_path / "seg.dcm"
    write_seg(seg, _seg_masks(), [refs[3], refs[4]], [1, 1], {1: "Lesion"}, with_reference=False)
    _resave(seg, ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(InputError, match="SEG references no slice of the series"):
        read_dicom_volumes(tmp_path / "series", mask=seg)
    write_seg(seg, _seg_masks(), [refs[3], refs[4]], [1, 1], {1: "Lesion"})
    _resave(seg, ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(
        InputError, match=r"SEG frame 1 orientation \(0 1 0 0 0 -1\) is different from the image's"
    ):
        read_dicom_volumes(tmp_path / "series", mask=seg)


def test_seg_pixel_spacing_must_be_the_images(tmp_path: Path) -> None:
    refs = _series(tmp_path / "series", list(range(6)))
    seg = tmp_path / "seg.dcm"
    write_seg(seg, _seg_masks(), [refs[3], refs[4]], [1, 1], {1: "Lesion"})
    _resave(seg, PixelSpacing=[ROW_SP, COL_SP])
    _lesion_is_the_blob_on(read_dicom_volumes(tmp_path / "series", mask=seg)[0], extra=1)
    _resave(seg, PixelSpacing=[1.0, 1.0])
    with pytest.raises(
        InputError, match=r"SEG pixel spacing 1x1 mm is different from the image's 0\.5x0\.75 mm"
    ):
        read_dicom_volumes(tmp_path / "series", mask=seg)


def test_seg_goes_only_to_the_series_it_references(tmp_path: Path) -> None:
    """Two series at the same positions: frames referencing one by UID are not also placed on
    the other by position."""
    refs = _series(tmp_path / "both" / "a", list(range(6)))
    _series(tmp_path / "both" / "b", list(range(6)))
    seg = tmp_path / "seg.dcm"
    write_seg(seg, _seg_masks(), [refs[3], refs[4]], [1, 1], {1: "Lesion"})
    (vol,) = read_dicom_volumes(tmp_path / "both", mask=seg)
    assert vol.series_uid == refs[0].SeriesInstanceUID
    _lesion_is_the_blob_on(vol, extra=1)
