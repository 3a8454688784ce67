"""Writers for generated slices: PNG, NIfTI and synthetic Secondary Capture DICOM."""

from __future__ import annotations

import getpass
import gzip
import socket
import struct
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medgan import __version__
from medgan.intensity import IntensityRange, denormalize, normalize
from medgan.io.dicom import SyntheticDicomMeta, read_dicom_volumes, write_dicom
from medgan.io.images import read_image, write_png
from medgan.io.nifti import read_case, write_nifti
from tests.conftest import require_tool

SENTINEL = "SENTINEL-PATIENT-7f3a9c"  # an identifier handed to no writer: it must never show up


def _grey(h: int = 11, w: int = 14, seed: int = 0) -> np.ndarray:
    """A float32 (1, H, W) slice in [-1, 1] that hits both ends and is asymmetric in rows and columns."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (1, h, w)).astype(np.float32)
    x[0, 0, 0], x[0, -1, -1], x[0, 0, -1] = -1.0, 1.0, 0.0
    return x


def _rgb(h: int = 9, w: int = 13, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (3, h, w)).astype(np.float32)


def _quantise(x: np.ndarray, maxval: int) -> np.ndarray:
    return np.clip(np.rint((x.astype(np.float64) + 1.0) / 2.0 * maxval), 0, maxval)


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------------------------


def _png_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


@pytest.mark.parametrize(("bits", "mode", "dtype"), [(8, "L", np.uint8), (16, "I;16", np.uint16)])
def test_png_grey_round_trip(tmp_path: Path, bits: int, mode: str, dtype: type) -> None:
    x = _grey()
    out = write_png(tmp_path / "a.png", x, bits=bits)
    assert out == tmp_path / "a.png"
    expected = _quantise(x, 2**bits - 1)
    arr = read_image(out)
    assert arr.dtype == dtype and arr.shape == x.shape
    np.testing.assert_array_equal(arr, expected)
    with Image.open(out) as im:
        assert im.mode in ((mode,) if bits == 8 else ("I;16", "I"))
        assert im.size == (x.shape[2], x.shape[1])
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), expected[0])
        assert not im.text  # no tEXt / iTXt / zTXt
    assert set(_png_chunks(out)) == {b"IHDR", b"IDAT", b"IEND"}
    back = arr.astype(np.float64) / (2**bits - 1) * 2.0 - 1.0
    assert np.abs(back - x).max() <= 1.0 / (2**bits - 1) + 1e-6
    _no_temp_files(tmp_path)


def test_png_rgb_and_clipping(tmp_path: Path) -> None:
    x = _rgb()
    x[1, 0, 0], x[2, 0, 0] = 1.7, -3.0  # out of range values are clipped
    out = write_png(tmp_path / "rgb.png", x)
    arr = read_image(out)
    assert arr.shape == x.shape and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, _quantise(x, 255))
    assert arr[1, 0, 0] == 255 and arr[2, 0, 0] == 0
    with Image.open(out) as im:
        assert im.mode == "RGB"


def test_png_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16-bit RGB"):
        write_png(tmp_path / "x.png", _rgb(), bits=16)
    with pytest.raises(ValueError, match="bits"):
        write_png(tmp_path / "x.png", _grey(), bits=12)
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "x.png", np.zeros((2, 4, 4), np.float32))
    bad = _grey()
    bad[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "x.png", bad)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("bits", [8, 16])
def test_png_bytes_are_deterministic(tmp_path: Path, bits: int) -> None:
    x = _grey()
    a = write_png(tmp_path / "a.png", x, bits=bits).read_bytes()
    b = write_png(tmp_path / "b.png", x.copy(), bits=bits).read_bytes()
    assert a == b
    assert (
        write_png(tmp_path / "c.png", _rgb()).read_bytes()
        == write_png(tmp_path / "d.png", _rgb()).read_bytes()
    )


# ----------------------------------------------------------------------------------------------
# NIfTI
# ----------------------------------------------------------------------------------------------


def test_nifti_round_trip_through_read_case(tmp_path: Path) -> None:
    x = _grey()
    out = write_nifti(tmp_path / "g.nii.gz", x, spacing=(0.7, 0.5), thickness=2.5, intensity=(-160.0, 240.0))
    vol = read_case(out)
    assert vol.data.shape == (1, *x.shape)
    np.testing.assert_allclose(vol.data[0], denormalize(x, -160.0, 240.0), atol=1e-4)
    np.testing.assert_allclose(normalize(vol.data[0], IntensityRange(-160.0, 240.0, "t")), x, atol=1e-6)
    assert vol.spacing == pytest.approx((0.7, 0.5), abs=1e-6)
    assert vol.thickness == pytest.approx(2.5)
    # rows run anterior -> posterior, columns right -> left (LPS +x is patient left, +y posterior)
    np.testing.assert_allclose(vol.orientation, [1, 0, 0, 0, 1, 0])
    _no_temp_files(tmp_path)


def test_nifti_without_intensity_keeps_unit_values(tmp_path: Path) -> None:
    x = _grey(6, 9)
    out = write_nifti(tmp_path / "u.nii", x)
    vol = read_case(out)
    np.testing.assert_array_equal(vol.data[0], x)
    assert vol.spacing == (1.0, 1.0) and vol.thickness == 1.0


def test_nifti_header(tmp_path: Path) -> None:
    x = _grey(5, 8)
    long_text = "model=dcgan ckpt=" + "ab" * 60
    out = write_nifti(tmp_path / "h.nii.gz", x, spacing=(0.8, 0.6), thickness=3.0, description=long_text)
    img = nib.load(out)
    hdr = img.header
    assert img.shape == (8, 5, 1)
    assert img.get_data_dtype() == np.float32
    assert hdr.get_zooms() == pytest.approx((0.6, 0.8, 3.0))
    assert int(hdr["qform_code"]) == 2 and int(hdr["sform_code"]) == 2
    assert hdr["descrip"].tobytes().rstrip(b"\0") == long_text.encode()[:79]
    for field in ("aux_file", "db_name", "intent_name"):
        assert hdr[field].tobytes().strip(b"\0") == b""
    # voxel axes in MONAI's order (x along the columns, y along the rows), pointing left and posterior
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert hdr.extensions == [] or len(hdr.extensions) == 0
    raw = out.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[3] & 0x08 == 0  # gzip without a file name ...
    assert raw[4:8] == b"\0\0\0\0"  # ... and without a timestamp
    assert gzip.decompress(raw)[344:348] == b"n+1\0"


def test_nifti_bytes_are_deterministic(tmp_path: Path) -> None:
    x = _grey()
    kw = {"spacing": (0.7, 0.7), "thickness": 1.5, "intensity": (0.0, 1.0), "description": "seed=3"}
    a = write_nifti(tmp_path / "a.nii.gz", x, **kw).read_bytes()
    b = write_nifti(tmp_path / "sub" / "b.nii.gz", x.copy(), **kw).read_bytes()
    assert a == b


def test_nifti_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        write_nifti(tmp_path / "c.nii.gz", _rgb())
    with pytest.raises(ValueError, match=r"\.nii"):
        write_nifti(tmp_path / "c.png", _grey())
    with pytest.raises(ValueError, match="intensity"):
        write_nifti(tmp_path / "c.nii.gz", _grey(), intensity=(5.0, 5.0))
    with pytest.raises(ValueError, match="spacing"):
        write_nifti(tmp_path / "c.nii.gz", _grey(), spacing=(0.0, 1.0))
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------


def _meta(**kw: object) -> SyntheticDicomMeta:
    base: dict[str, object] = {
        "study_uid": "2.25.1001",
        "series_uid": "2.25.1002",
        "sop_uid": "2.25.1003",
        "instance_number": 7,
    }
    base.update(kw)
    return SyntheticDicomMeta(**base)  # type: ignore[arg-type]


def _ct_meta(**kw: object) -> SyntheticDicomMeta:
    return _meta(
        modality="CT",
        spacing=(0.7, 0.8),
        intensity=(-160.0, 240.0),
        derivation="model=dcgan checkpoint_sha256=0123abcd seed=42",
        content_datetime="20260314153000",
        series_number=5,
        **kw,
    )


def test_dicom_grey_round_trip_pydicom(tmp_path: Path) -> None:
    x = _grey()
    meta = _ct_meta()
    out = write_dicom(tmp_path / "g.dcm", x, meta)
    assert out.read_bytes()[128:132] == b"DICM"
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == meta.sop_uid
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
        meta.study_uid,
        meta.series_uid,
        meta.sop_uid,
    )
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    assert ds.DerivationDescription == meta.derivation
    assert ds.BurnedInAnnotation == "NO"
    assert str(ds.PatientName) == "SYNTHETIC^MEDGAN" and ds.PatientID == "SYNTHETIC"
    assert "Synthetic" in ds.ImageComments
    assert ds.Manufacturer == "medgan" and ds.SoftwareVersions == __version__
    assert ds.Modality == "CT" and ds.RescaleType == "HU"
    assert (ds.StudyDate, ds.ContentDate, ds.ContentTime) == ("20260314", "20260314", "153000")
    assert (ds.InstanceNumber, ds.SeriesNumber) == (7, 5)
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.8]
    assert "SourceImageSequence" not in ds
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
    stored = ds.pixel_array
    np.testing.assert_array_equal(stored, _quantise(x[0], 4095))
    hu = apply_modality_lut(stored, ds)
    step = 400.0 / 4095
    assert np.abs(hu - denormalize(x[0], -160.0, 240.0)).max() <= step / 2 + 1e-6
    _no_temp_files(tmp_path)


def test_dicom_without_intensity(tmp_path: Path) -> None:
    x = _grey(6, 7)
    ds = pydicom.dcmread(write_dicom(tmp_path / "n.dcm", x, _meta()))
    assert "RescaleSlope" not in ds and "PixelSpacing" not in ds and "DerivationDescription" not in ds
    assert ds.Modality == "OT"
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (2048.0, 4096.0)
    np.testing.assert_array_equal(ds.pixel_array, _quantise(x[0], 4095))


def test_dicom_grey_reads_with_simpleitk(tmp_path: Path) -> None:
    x = _grey()
    out = write_dicom(tmp_path / "g.dcm", x, _ct_meta())
    img = sitk.ReadImage(str(out))
    arr = sitk.GetArrayFromImage(img).astype(np.float64).reshape(x.shape[1:])
    assert np.abs(arr - denormalize(x[0], -160.0, 240.0)).max() <= 400.0 / 4095
    assert img.GetSpacing()[:2] == pytest.approx((0.8, 0.7))  # ITK: (column, row)


def test_dicom_grey_reads_with_medgan(tmp_path: Path) -> None:
    x = _grey()
    meta = _ct_meta()
    out = write_dicom(tmp_path / "g.dcm", x, meta)
    (vol,) = read_dicom_volumes(out)
    assert vol.data.shape == (1, *x.shape)
    assert np.abs(vol.data[0] - denormalize(x, -160.0, 240.0)).max() <= 400.0 / 4095
    assert vol.spacing == pytest.approx((0.7, 0.8))
    assert vol.modality == "CT" and vol.series_uid == meta.series_uid and vol.sop_uids == [meta.sop_uid]
    assert vol.patient_id == "SYNTHETIC"
    assert vol.window_hint == pytest.approx((40.0, 400.0))
    # a folder of generated slices is one series
    write_dicom(tmp_path / "g2.dcm", _grey(seed=5), _ct_meta(sop_uid="2.25.1004", instance_number=8))
    (series,) = read_dicom_volumes(tmp_path)
    assert series.data.shape[0] == 2


def test_dicom_rgb(tmp_path: Path) -> None:
    x = _rgb()
    out = write_dicom(tmp_path / "c.dcm", x, _meta(spacing=(0.5, 0.5)))
    ds = pydicom.dcmread(out)
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PlanarConfiguration) == (8, 8, 7, 0)
    assert "RescaleSlope" not in ds and "WindowCenter" not in ds
    expected = np.moveaxis(_quantise(x, 255), 0, -1)
    np.testing.assert_array_equal(ds.pixel_array, expected)
    itk = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    np.testing.assert_array_equal(itk.reshape(expected.shape), expected)
    (vol,) = read_dicom_volumes(out)
    assert vol.data.shape == (1, *x.shape)
    np.testing.assert_array_equal(vol.data[0], _quantise(x, 255))


def test_dicom_source_image_sequence(tmp_path: Path) -> None:
    sources = ((str(CTImageStorage), "2.25.2001"), (str(CTImageStorage), "2.25.2002"))
    ds = pydicom.dcmread(write_dicom(tmp_path / "t.dcm", _grey(), _ct_meta(source_images=sources)))
    refs = [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in ds.SourceImageSequence]
    assert refs == list(sources)


def test_dicom_bytes_are_deterministic(tmp_path: Path) -> None:
    x = _grey()
    meta = _ct_meta(source_images=((str(CTImageStorage), "2.25.2001"),))
    a = write_dicom(tmp_path / "a.dcm", x, meta).read_bytes()
    b = write_dicom(tmp_path / "other" / "b.dcm", x.copy(), meta).read_bytes()
    assert a == b
    c = write_dicom(tmp_path / "c.dcm", _rgb(), _meta()).read_bytes()
    assert c == write_dicom(tmp_path / "d.dcm", _rgb(), _meta()).read_bytes()


def _all_values(ds: Dataset) -> list[str]:
    """Every element value of ``ds`` (file meta and nested sequences included) as text."""
    out: list[str] = []

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.keyword != "PixelData":
                out.append(str(elem.value))

    visit(ds.file_meta)
    visit(ds)
    return out


def test_dicom_carries_no_identifying_values(tmp_path: Path) -> None:
    folder = tmp_path / SENTINEL  # even the output path must not leak into the file
    out = write_dicom(folder / f"{SENTINEL}.dcm", _grey(), _ct_meta())
    ds = pydicom.dcmread(out)
    assert str(ds.PatientName) == "SYNTHETIC^MEDGAN" and ds.PatientID == "SYNTHETIC"
    for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber"):
        assert keyword in ds and ds.data_element(keyword).value in ("", None)
    forbidden = [SENTINEL, str(tmp_path)]
    user, host = getpass.getuser(), socket.gethostname()
    forbidden += [s for s in (user, host) if len(s) >= 6 and s.lower() not in ("root", "medgan", "synthetic")]
    values = _all_values(ds)
    for bad in forbidden:
        assert not [v for v in values if bad in v], bad
    assert SENTINEL.encode() not in out.read_bytes()


def test_dicom_rejects_bad_meta(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UID"):
        write_dicom(tmp_path / "x.dcm", _grey(), _meta(sop_uid="not.a.uid"))
    with pytest.raises(ValueError, match="content_datetime"):
        write_dicom(tmp_path / "x.dcm", _grey(), _meta(content_datetime="2026-01-01"))
    with pytest.raises(ValueError, match="intensity"):
        write_dicom(tmp_path / "x.dcm", _grey(), _meta(intensity=(1.0, 0.0)))
    with pytest.raises(ValueError, match="shape"):
        write_dicom(tmp_path / "x.dcm", np.zeros((4, 3, 3), np.float32), _meta())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["grey", "grey-plain", "rgb"])
def test_dicom_passes_dciodvfy(tmp_path: Path, kind: str) -> None:
    dciodvfy = require_tool("dciodvfy", "validates the synthetic DICOM writer")
    if kind == "grey":
        sources = ((str(CTImageStorage), generate_uid()),)
        out = write_dicom(tmp_path / "f.dcm", _grey(), _ct_meta(source_images=sources))
    elif kind == "grey-plain":
        out = write_dicom(tmp_path / "f.dcm", _grey(), _meta())
    else:
        out = write_dicom(tmp_path / "f.dcm", _rgb(), _meta(spacing=(0.5, 0.5), derivation="seed=1"))
    proc = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True, timeout=60, check=False)
    report = proc.stdout + proc.stderr
    assert "SCImage" in report  # dciodvfy recognised the IOD
    errors = [line for line in report.splitlines() if "Error" in line]
    assert not errors, report
