"""Tests for :mod:`medgan.io.dicom`: tiny synthetic DICOM files, plus the real series under ``data_dir``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    generate_uid,
)

from medgan.errors import InputError
from medgan.io.dicom import read_dicom_volumes

# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def _base(sop_class: str, pixels: np.ndarray, series: str | None, **attrs: object) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientID = "P1"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    signed = pixels.dtype.kind == "i"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    series: str | None = None,
    z: float | None = None,
    instance: int | None = None,
    **attrs: object,
) -> Dataset:
    """A single-frame CT slice at height ``z`` (axial orientation) saved to ``path``."""
    if z is not None:
        attrs.setdefault("ImagePositionPatient", [-10.0, -20.0, z])
        attrs.setdefault("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])
        attrs.setdefault("PixelSpacing", [0.5, 0.75])
        attrs.setdefault("SliceThickness", 3.0)
    if instance is not None:
        attrs["InstanceNumber"] = instance
    ds = _base(CTImageStorage, pixels, series, **attrs)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def _item(**attrs: object) -> Dataset:
    d = Dataset()
    for k, v in attrs.items():
        setattr(d, k, v)
    return d


def write_multiframe(path: Path, frames: np.ndarray, zs: list[float], **attrs: object) -> Dataset:
    """An Enhanced CT file: shared orientation/spacing/rescale, per-frame positions ``zs``."""
    ds = _base(EnhancedCTImageStorage, frames, None, **attrs)
    ds.NumberOfFrames = len(frames)
    ds.SharedFunctionalGroupsSequence = Sequence(
        [
            _item(
                PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
                PixelMeasuresSequence=Sequence([_item(PixelSpacing=[0.5, 0.5], SliceThickness=2.0)]),
                PixelValueTransformationSequence=Sequence(
                    [_item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]
                ),
            )
        ]
    )
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [_item(PlanePositionSequence=Sequence([_item(ImagePositionPatient=[0.0, 0.0, z])])) for z in zs]
    )
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_seg(
    path: Path,
    masks: np.ndarray,
    refs: list[Dataset],
    segment_numbers: list[int],
    labels: dict[int, str],
    *,
    with_reference: bool = True,
) -> Dataset:
    """A BINARY DICOM SEG: frame ``i`` is ``masks[i]`` of segment ``segment_numbers[i]`` on ``refs[i]``."""
    n, rows, cols = masks.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SegmentationStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SegmentationStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SEG"
    ds.SegmentationType = "BINARY"
    ds.Rows, ds.Columns = rows, cols
    ds.NumberOfFrames = n
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.SegmentSequence = Sequence(
        [_item(SegmentNumber=k, SegmentLabel=v, SegmentAlgorithmType="MANUAL") for k, v in labels.items()]
    )
    ds.SharedFunctionalGroupsSequence = Sequence(
        [_item(PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]))]
    )
    per = []
    for ref, seg in zip(refs, segment_numbers, strict=True):
        group = _item(
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=list(ref.ImagePositionPatient))]),
            SegmentIdentificationSequence=Sequence([_item(ReferencedSegmentNumber=seg)]),
        )
        if with_reference:
            src = _item(ReferencedSOPClassUID=ref.SOPClassUID, ReferencedSOPInstanceUID=ref.SOPInstanceUID)
            group.DerivationImageSequence = Sequence([_item(SourceImageSequence=Sequence([src]))])
        per.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = pack_bits(masks.astype(np.uint8))
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return ds


def _const(value: int, shape: tuple[int, int] = (8, 8), dtype: str = "int16") -> np.ndarray:
    return np.full(shape, value, dtype=dtype)


@pytest.fixture
def four_slices(tmp_path: Path) -> tuple[Path, list[Dataset]]:
    """4 slices of one series; ``refs[k]`` is the slice at z = k (slice k has value 100 k)."""
    folder = tmp_path / "series"
    names = ["d", "b", "a", "c"]  # name order != position order
    refs: list[Dataset] = [Dataset()] * 4
    uid = generate_uid()
    for k, name in enumerate(names):
        refs[k] = write_slice(folder / name, _const(100 * k), series=uid, z=float(k), instance=4 - k)
    return folder, refs


# ----------------------------------------------------------------------------------------------
# Folders, grouping and sorting
# ----------------------------------------------------------------------------------------------


def test_two_series_grouped_and_sorted_by_position(tmp_path: Path) -> None:
    uid_a, uid_b = "1.2.826.0.1.1", "1.2.826.0.1.2"
    # series A: 4 slices, names and InstanceNumbers shuffled relative to z
    for name, z, inst in [("x9", 3.0, 2), ("x1", 1.0, 4), ("x5", 0.0, 1), ("x3", 2.0, 3)]:
        write_slice(tmp_path / "a" / name, _const(int(z * 10)), series=uid_a, z=z, instance=inst)
    # series B: 3 slices in a nested folder, no extension, z descending in file order
    for name, z, inst in [("s1", 30.0, 1), ("s2", 20.0, 2), ("s3", 10.0, 3)]:
        write_slice(tmp_path / "b" / "deep" / name, _const(int(z)), series=uid_b, z=z, instance=inst)
    (tmp_path / "README.txt").write_text("not dicom")
    (tmp_path / "info.json").write_text("{}")

    vols = read_dicom_volumes(tmp_path)
    assert [v.series_uid for v in vols] == [uid_a, uid_b]
    a, b = vols
    assert a.data.shape == (4, 1, 8, 8) and b.data.shape == (3, 1, 8, 8)
    assert a.data.dtype == np.float32
    assert [Path(s).name for s in a.sources] == ["x5", "x1", "x3", "x9"]
    assert a.data[:, 0, 0, 0].tolist() == [0, 10, 20, 30]
    assert a.positions is not None and np.allclose(a.positions[:, 2], [0, 1, 2, 3])
    assert a.slice_index == [0, 1, 2, 3]
    assert a.thickness == pytest.approx(1.0)
    assert a.spacing == (0.5, 0.75)
    assert np.allclose(a.orientation, [1, 0, 0, 0, 1, 0])
    assert a.frames == [None] * 4
    assert a.patient_id == "P1" and a.modality == "CT" and a.source_format == "dicom"
    assert a.raw_dtype == "int16"
    assert a.window_hint is None and a.mask is None
    assert [Path(s).name for s in b.sources] == ["s3", "s2", "s1"]
    assert b.thickness == pytest.approx(10.0)

    only_b = read_dicom_volumes(tmp_path, series=uid_b)
    assert len(only_b) == 1 and only_b[0].series_uid == uid_b


def test_unknown_series_lists_available(tmp_path: Path) -> None:
    write_slice(tmp_path / "1", _const(0), series="1.2.3.9", z=0.0)
    with pytest.raises(InputError, match=r"series 9\.9 not found; available: 1\.2\.3\.9 \(1 slices\)"):
        read_dicom_volumes(tmp_path, series="9.9")


def test_sort_falls_back_to_instance_number_then_name(tmp_path: Path) -> None:
    uid = generate_uid()
    for name, inst in [("a", 3), ("b", 1), ("c", 2)]:
        write_slice(tmp_path / "inst" / name, _const(inst), series=uid, instance=inst)
    (vol,) = read_dicom_volumes(tmp_path / "inst")
    assert [Path(s).name for s in vol.sources] == ["b", "c", "a"]
    assert vol.positions is None and vol.thickness is None

    uid2 = generate_uid()
    for name in ["z", "m", "a"]:
        write_slice(tmp_path / "names" / name, _const(0), series=uid2)
    (vol2,) = read_dicom_volumes(tmp_path / "names")
    assert [Path(s).name for s in vol2.sources] == ["a", "m", "z"]


def test_duplicate_positions_are_kept(tmp_path: Path) -> None:
    uid = generate_uid()
    for name, z, inst in [("a", 1.0, 2), ("b", 1.0, 1), ("c", 0.0, 3)]:
        write_slice(tmp_path / name, _const(inst), series=uid, z=z, instance=inst)
    (vol,) = read_dicom_volumes(tmp_path)
    assert [Path(s).name for s in vol.sources] == ["c", "b", "a"]


def test_different_slice_sizes_raise(tmp_path: Path) -> None:
    uid = generate_uid()
    write_slice(tmp_path / "a", _const(0), series=uid, z=0.0)
    write_slice(tmp_path / "b", _const(0, (4, 8)), series=uid, z=1.0)
    with pytest.raises(InputError, match="different size") as err:
        read_dicom_volumes(tmp_path)
    assert str(tmp_path / "b") in str(err.value)


# ----------------------------------------------------------------------------------------------
# Pixel values
# ----------------------------------------------------------------------------------------------


def test_rescale_slope_intercept(tmp_path: Path) -> None:
    stored = np.arange(64, dtype=np.int16).reshape(8, 8) - 10
    write_slice(tmp_path / "ct.dcm", stored, z=0.0, RescaleSlope=2, RescaleIntercept=-1024)
    (vol,) = read_dicom_volumes(tmp_path / "ct.dcm")
    expected = stored.astype(np.float32) * 2 - 1024
    np.testing.assert_array_equal(vol.data[0, 0], expected)
    assert vol.thickness == 3.0  # one slice: SliceThickness


def test_window_hint_first_value(tmp_path: Path) -> None:
    write_slice(tmp_path / "w", _const(0), z=0.0, WindowCenter=[40, 300], WindowWidth=[400, 1500])
    (vol,) = read_dicom_volumes(tmp_path / "w")
    assert vol.window_hint == (40.0, 400.0)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.array([[0, 1000], [3000, 4095]], dtype=np.uint16)
    write_slice(
        tmp_path / "m1",
        stored,
        z=0.0,
        PhotometricInterpretation="MONOCHROME1",
        WindowCenter=1000,
        WindowWidth=500,
    )
    ds = pydicom.dcmread(tmp_path / "m1")
    ds.BitsStored, ds.HighBit = 12, 11
    ds.save_as(tmp_path / "m1", enforce_file_format=True)
    (vol,) = read_dicom_volumes(tmp_path / "m1")
    np.testing.assert_array_equal(vol.data[0, 0], 4095.0 - stored)
    assert vol.window_hint == (3095.0, 500.0)
    assert vol.raw_dtype == "uint16"


def test_rgb_has_three_channels(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    ds = _base(SecondaryCaptureImageStorage, rgb[..., 0], None, Modality="OT")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    (vol,) = read_dicom_volumes(tmp_path / "rgb.dcm")
    assert vol.data.shape == (1, 3, 4, 6)
    assert vol.data[0, :, 0, 0].tolist() == [10, 20, 30]
    assert vol.raw_dtype == "uint8"


def test_multiframe_sorted_by_position(tmp_path: Path) -> None:
    frames = np.stack([_const(10 * i) for i in range(5)])
    write_multiframe(tmp_path / "enh.dcm", frames, zs=[4.0, 3.0, 2.0, 1.0, 0.0])
    (vol,) = read_dicom_volumes(tmp_path / "enh.dcm")
    assert vol.data.shape == (5, 1, 8, 8)
    assert vol.frames == [4, 3, 2, 1, 0]
    assert vol.data[:, 0, 0, 0].tolist() == [40 - 1024, 30 - 1024, 20 - 1024, 10 - 1024, -1024]
    assert vol.positions is not None and vol.positions[:, 2].tolist() == [0, 1, 2, 3, 4]
    assert vol.spacing == (0.5, 0.5) and vol.thickness == 1.0
    assert len(set(vol.sop_uids or [])) == 1 and len(set(vol.sources)) == 1


def test_rle_matches_uncompressed(tmp_path: Path) -> None:
    stored = (np.arange(256, dtype=np.int16).reshape(16, 16) * 7) - 900
    ds = write_slice(tmp_path / "raw.dcm", stored, z=0.0, RescaleIntercept=-1024, RescaleSlope=1)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    (plain,) = read_dicom_volumes(tmp_path / "raw.dcm")
    (rle,) = read_dicom_volumes(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(plain.data, rle.data)


def _write_undecodable(path: Path) -> None:
    ds = _base(CTImageStorage, _const(0), None)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x01junk" * 10])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def test_missing_decoder_names_transfer_syntax(tmp_path: Path) -> None:
    _write_undecodable(tmp_path / "mpeg.dcm")
    with pytest.raises(
        InputError, match=r"cannot decode transfer syntax MPEG2 .*1\.2\.840\.10008\.1\.2\.4\.100"
    ):
        read_dicom_volumes(tmp_path / "mpeg.dcm")
    # JPEG XL: same-length UID patched into the file meta (pydicom cannot write it itself)
    raw = (tmp_path / "mpeg.dcm").read_bytes()
    (tmp_path / "jxl.dcm").write_bytes(raw.replace(b"1.2.840.10008.1.2.4.100", b"1.2.840.10008.1.2.4.110"))
    with pytest.raises(
        InputError, match=r"JPEG XL Lossless \(1\.2\.840\.10008\.1\.2\.4\.110\); install"
    ) as err:
        read_dicom_volumes(tmp_path / "jxl.dcm")
    assert "\n" not in str(err.value) and str(tmp_path / "jxl.dcm") in str(err.value)


def test_missing_decoder_in_folder_names_file(tmp_path: Path) -> None:
    write_slice(tmp_path / "ok", _const(0), z=0.0)
    _write_undecodable(tmp_path / "bad")
    with pytest.raises(InputError, match="cannot decode transfer syntax") as err:
        read_dicom_volumes(tmp_path)
    assert err.value.path == str(tmp_path / "bad")


def test_file_without_preamble(tmp_path: Path) -> None:
    ds = _base(CTImageStorage, np.arange(16, dtype=np.int16).reshape(4, 4), None)
    del ds.file_meta
    pydicom.dcmwrite(tmp_path / "nopre", ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert (tmp_path / "nopre").read_bytes()[:2] == b"\x08\x00"
    (vol,) = read_dicom_volumes(tmp_path)
    np.testing.assert_array_equal(vol.data[0, 0], np.arange(16).reshape(4, 4))


# ----------------------------------------------------------------------------------------------
# Broken input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file_raises_naming_it(tmp_path: Path, fraction: float) -> None:
    write_slice(tmp_path / "good.dcm", np.arange(256, dtype=np.int16).reshape(16, 16), z=0.0)
    raw = (tmp_path / "good.dcm").read_bytes()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "cut.dcm").write_bytes(raw[: int(len(raw) * fraction)])
    write_slice(folder / "fine.dcm", _const(0, (16, 16)), z=1.0)
    for target in (folder / "cut.dcm", folder):
        with pytest.raises(InputError, match=r"truncated|not a readable DICOM") as err:
            read_dicom_volumes(target)
        assert err.value.path == str(folder / "cut.dcm")


def test_truncated_rle_raises(tmp_path: Path) -> None:
    ds = write_slice(tmp_path / "a.dcm", np.arange(1024, dtype=np.int16).reshape(32, 32), z=0.0)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    raw = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "a.dcm").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(InputError, match="truncated"):
        read_dicom_volumes(tmp_path / "a.dcm")


def test_text_and_png_are_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello " * 100)
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    for name in ("notes.txt", "img.png"):
        with pytest.raises(InputError, match="not a DICOM file"):
            read_dicom_volumes(tmp_path / name)


def test_empty_folder_and_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="folder is empty"):
        read_dicom_volumes(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / "README").write_text("readme")
    (other / "a.json").write_text("{}")
    with pytest.raises(InputError, match="no DICOM images found"):
        read_dicom_volumes(other)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_dicom_volumes(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------


def _seg_masks() -> np.ndarray:
    m = np.zeros((2, 8, 8), dtype=np.uint8)
    m[0, 1:3, 1:4] = 1  # 6 px
    m[1, 4:8, 4:8] = 1  # 16 px
    return m


def test_seg_mask_on_referenced_slices(four_slices: tuple[Path, list[Dataset]]) -> None:
    folder, refs = four_slices
    seg = folder / "seg.dcm"  # inside the folder: skipped as an image
    write_seg(seg, _seg_masks(), [refs[1], refs[3]], [1, 2], {1: "Liver", 2: "Tumor"})
    (vol,) = read_dicom_volumes(folder, mask=seg)
    assert vol.data.shape == (4, 1, 8, 8)
    assert vol.mask is not None and vol.mask.shape == (4, 8, 8) and vol.mask.dtype == np.uint8
    assert vol.mask.reshape(4, -1).sum(1).tolist() == [0, 6, 0, 16]
    assert vol.mask_source == str(seg)

    (only2,) = read_dicom_volumes(folder, mask=seg, segments=[2])
    assert only2.mask is not None and only2.mask.reshape(4, -1).sum(1).tolist() == [0, 0, 0, 16]

    with pytest.raises(
        InputError, match=r"unknown segment number\(s\) \[7\]; available: 1 \(Liver\), 2 \(Tumor\)"
    ):
        read_dicom_volumes(folder, mask=seg, segments=[7])


def test_seg_matched_by_position(four_slices: tuple[Path, list[Dataset]], tmp_path: Path) -> None:
    folder, refs = four_slices
    seg = tmp_path / "seg_pos.dcm"
    write_seg(seg, _seg_masks(), [refs[0], refs[2]], [1, 1], {1: "Lesion"}, with_reference=False)
    (vol,) = read_dicom_volumes(folder, mask=seg)
    assert vol.mask is not None and vol.mask.reshape(4, -1).sum(1).tolist() == [6, 0, 16, 0]


def test_seg_problems(four_slices: tuple[Path, list[Dataset]], tmp_path: Path) -> None:
    folder, refs = four_slices
    other = write_slice(tmp_path / "o" / "x", _const(0), z=99.0)
    seg = tmp_path / "elsewhere.dcm"
    write_seg(seg, _seg_masks(), [other, other], [1, 1], {1: "Lesion"})
    with pytest.raises(InputError, match="SEG references no slice of the series"):
        read_dicom_volumes(folder, mask=seg)

    big = np.zeros((2, 16, 16), dtype=np.uint8)
    write_seg(seg, big, [refs[0], refs[1]], [1, 1], {1: "Lesion"})
    with pytest.raises(InputError, match="SEG frame size 16x16 is different from the image size 8x8"):
        read_dicom_volumes(folder, mask=seg)

    with pytest.raises(InputError, match="not a segmentation"):
        read_dicom_volumes(folder, mask=folder / "a")


def test_seg_keeps_only_the_referenced_series(
    four_slices: tuple[Path, list[Dataset]], tmp_path: Path
) -> None:
    folder, refs = four_slices
    write_slice(folder / "scout" / "s1", _const(0), z=50.0)  # another series in the same folder
    assert len(read_dicom_volumes(folder)) == 2
    seg = tmp_path / "seg.dcm"
    write_seg(seg, _seg_masks(), [refs[1], refs[3]], [1, 1], {1: "Lesion"})
    (vol,) = read_dicom_volumes(folder, mask=seg)
    assert vol.series_uid == refs[0].SeriesInstanceUID and vol.mask is not None


def test_label_volume_mask(four_slices: tuple[Path, list[Dataset]], tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    folder, _ = four_slices
    labels = np.zeros((4, 8, 8), dtype=np.uint8)
    labels[2, :2, :2] = 1
    labels[3, :1, :3] = 2

    def write(arr: np.ndarray, path: Path) -> None:  # on the series' grid: origin, spacing (x, y, z)
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin((-10.0, -20.0, 0.0))
        img.SetSpacing((0.75, 0.5, 1.0))
        sitk.WriteImage(img, str(path))

    write(labels, tmp_path / "lab.nii.gz")
    (vol,) = read_dicom_volumes(folder, mask=tmp_path / "lab.nii.gz")
    assert vol.mask is not None and vol.mask.reshape(4, -1).sum(1).tolist() == [0, 0, 4, 3]
    assert vol.mask_source == str(tmp_path / "lab.nii.gz")
    (vol2,) = read_dicom_volumes(folder, mask=tmp_path / "lab.nii.gz", segments=[2])
    assert vol2.mask is not None and vol2.mask.reshape(4, -1).sum(1).tolist() == [0, 0, 0, 3]

    write(labels[:3], tmp_path / "short.nii.gz")  # 3 of the 4 slices: placed on them, with a warning
    (vol3,) = read_dicom_volumes(folder, mask=tmp_path / "short.nii.gz")
    assert vol3.mask is not None and vol3.mask.reshape(4, -1).sum(1).tolist() == [0, 0, 4, 0]
    assert len(vol3.warnings) == 1 and "mask short.nii.gz:" in vol3.warnings[0]


def test_segments_without_mask(four_slices: tuple[Path, list[Dataset]]) -> None:
    with pytest.raises(InputError, match="needs a mask"):
        read_dicom_volumes(four_slices[0], segments=[1])


# ----------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_real_ct_liver(data_dir: Path) -> None:
    folder = data_dir / "dicom" / "ct_liver_3slice"
    (vol,) = read_dicom_volumes(folder)
    assert vol.data.shape == (3, 1, 512, 512) and vol.data.dtype == np.float32
    assert vol.modality == "CT" and vol.raw_dtype == "int16"
    assert vol.window_hint == (40.0, 400.0)
    assert float(vol.data.min()) < -900
    assert vol.positions is not None
    assert np.all(np.diff(vol.positions[:, 2]) > 0)
    assert vol.thickness == pytest.approx(1.0)
    assert vol.spacing == pytest.approx((0.810547, 0.810547))
    ds = pydicom.dcmread(vol.sources[1])
    assert float(vol.data[1, 0, 256, 256]) == float(ds.pixel_array[256, 256]) - 1024
    assert vol.sop_uids is not None and vol.sop_uids[1] == ds.SOPInstanceUID
    assert not any(s.endswith("liver_seg.dcm") for s in vol.sources)


@pytest.mark.integration
def test_real_ct_liver_with_seg(data_dir: Path) -> None:
    folder = data_dir / "dicom" / "ct_liver_3slice"
    seg = folder / "liver_seg.dcm"
    (vol,) = read_dicom_volumes(folder, mask=seg)
    assert vol.mask is not None and vol.mask.shape == (3, 512, 512)
    assert all(int(n) > 1000 for n in vol.mask.reshape(3, -1).sum(1))
    assert vol.mask_source == str(seg)
    # the liver is brighter than water on this (contrast) CT
    assert float(np.median(vol.data[:, 0][vol.mask > 0])) > 0


@pytest.mark.integration
def test_real_mr_brain_17slice(data_dir: Path) -> None:
    folder = data_dir / "dicom" / "mr_brain_17slice"
    (vol,) = read_dicom_volumes(folder)
    assert vol.data.shape == (17, 1, 128, 88)
    # orientation [-1,0,0,0,-1,0] -> normal (0,0,1); z increases with InstanceNumber
    assert [Path(s).name for s in vol.sources] == [f"IMG{i:04d}.dcm" for i in range(1, 18)]
    assert vol.positions is not None and np.all(np.diff(vol.positions[:, 2]) > 0)
    assert vol.thickness == pytest.approx(2.0)
    uids = [
        pydicom.dcmread(folder / f"IMG{i:04d}.dcm", stop_before_pixels=True).SOPInstanceUID for i in (1, 17)
    ]
    assert vol.sop_uids is not None and [vol.sop_uids[0], vol.sop_uids[-1]] == uids


@pytest.mark.integration
def test_real_ct_liver_end_to_end(data_dir: Path) -> None:
    from medgan.config import config_from_dict
    from medgan.data.sources import load_source

    raw = {
        "data": {
            "source": {
                "kind": "dicom",
                "path": "dicom/ct_liver_3slice",
                "mask": "dicom/ct_liver_3slice/liver_seg.dcm",
            }
        }
    }
    data = config_from_dict(raw).data
    ss = load_source(data, data_dir)
    assert len(ss) == 3 and ss.shape == (1, 512, 512)
    assert float(ss.images.min()) >= -1.0 and float(ss.images.max()) <= 1.0
    assert ss.manifest["label_name"].tolist() == ["lesion"] * 3
    assert set(ss.manifest["source"]) == {f"dicom/ct_liver_3slice/0{i}.dcm" for i in (1, 2, 3)}
    assert set(ss.manifest["intensity_mode"]) == {"window:dicom"}
    assert set(ss.manifest["mask_source"]) == {"dicom/ct_liver_3slice/liver_seg.dcm"}
