"""DICOM from the wild (issue 17): VOI transforms, decoders missing for 12-bit JPEG, duplicate
positions, mixed orientations, RescaleSlope 0, folders with files lacking pixel data, and the
library warnings pydicom raises while reading (never printed: folded into errors or Volume.warnings)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGExtended12Bit,
    generate_uid,
)

from medgan.errors import InputError
from medgan.intensity import normalize, window_range
from medgan.io.dicom import read_dicom_volumes
from tests.io.test_dicom import _base, _const, write_slice

# ----------------------------------------------------------------------------------------------
# VOI transform: a linear window is passed on; SIGMOID / a VOI LUT Sequence alone are not
# ----------------------------------------------------------------------------------------------

RAMP = np.arange(-400, 400, 25, dtype=np.int16).reshape(4, 8)  # below, inside and above C 40 / W 400


def _voi_lut_item() -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.add_new("LUTData", "US", [min(65535, 4 * k * k) for k in range(256)])  # a curve, not a line
    return item


def _scaled(windowed: np.ndarray) -> np.ndarray:
    """pydicom's windowed output mapped onto [-1, 1] (RAMP reaches both ends of the window)."""
    lo, hi = float(windowed.min()), float(windowed.max())
    return (windowed - lo) / (hi - lo) * 2.0 - 1.0


@pytest.mark.parametrize(("function", "atol"), [("LINEAR_EXACT", 1e-6), ("LINEAR", 2.0 / 399)])
def test_linear_window_is_what_pydicom_applies(tmp_path: Path, function: str, atol: float) -> None:
    """intensity 'auto' maps window_hint linearly: the same pixels as pydicom's apply_voi_lut
    (LINEAR's ends are one unit inside LINEAR_EXACT's, PS3.3 C.11.2.1.2)."""
    path = tmp_path / "w.dcm"
    write_slice(path, RAMP, z=0.0, WindowCenter=40, WindowWidth=400, VOILUTFunction=function)
    (vol,) = read_dicom_volumes(path)
    assert vol.window_hint == (40.0, 400.0) and vol.warnings == []
    ours = normalize(vol.data[0, 0], window_range(*vol.window_hint))
    ds = pydicom.dcmread(path)
    theirs = _scaled(apply_voi_lut(vol.data[0, 0].astype(np.float64), ds))
    np.testing.assert_allclose(ours, theirs, atol=atol)


def test_sigmoid_window_is_not_used_as_a_linear_one(tmp_path: Path) -> None:
    path = tmp_path / "s.dcm"
    write_slice(path, RAMP, z=0.0, WindowCenter=40, WindowWidth=400, VOILUTFunction="SIGMOID")
    (vol,) = read_dicom_volumes(path)
    assert vol.window_hint is None
    (line,) = vol.warnings
    assert "VOILUTFunction SIGMOID" in line and "window: {center: 40, width: 400}" in line
    assert vol.series_uid in line
    np.testing.assert_array_equal(vol.data[0, 0], RAMP)  # pixels stay in modality units


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_voi_lut_sequence_alone_is_named_for_ct(tmp_path: Path, modality: str) -> None:
    path = tmp_path / "lut.dcm"
    write_slice(
        path,
        RAMP,
        z=0.0,
        Modality=modality,
        RescaleSlope=1,
        RescaleIntercept=-24,
        VOILUTSequence=Sequence([_voi_lut_item()]),
    )
    assert "WindowCenter" not in pydicom.dcmread(path)
    (vol,) = read_dicom_volumes(path)
    assert vol.window_hint is None
    np.testing.assert_array_equal(vol.data[0, 0], RAMP.astype(np.float32) - 24)  # not through the LUT
    if modality == "CT":  # 'auto' would have used a CT file's window
        (line,) = vol.warnings
        assert "VOI LUT Sequence" in line and "not used" in line and "percentiles" in line
    else:
        assert vol.warnings == []


def test_window_beside_a_voi_lut_sequence_is_used(tmp_path: Path) -> None:
    path = tmp_path / "both.dcm"
    write_slice(
        path, RAMP, z=0.0, WindowCenter=40, WindowWidth=400, VOILUTSequence=Sequence([_voi_lut_item()])
    )
    (vol,) = read_dicom_volumes(path)
    assert vol.window_hint == (40.0, 400.0) and vol.warnings == []


# ----------------------------------------------------------------------------------------------
# 12-bit JPEG without a decoder that handles 12 bits
# ----------------------------------------------------------------------------------------------


def test_12_bit_jpeg_without_its_decoder_names_the_plugins(tmp_path: Path) -> None:
    if set(get_decoder(JPEGExtended12Bit).available_plugins) - {"pillow"}:
        pytest.skip("a 12-bit JPEG decoder (GDCM or pylibjpeg-libjpeg) is installed")
    ds = _base(CTImageStorage, _const(0, dtype="uint16"), None)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc1" + b"\x00" * 60 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "j12.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError) as err:
        read_dicom_volumes(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: cannot decode transfer syntax JPEG Extended")
    assert "1.2.840.10008.1.2.4.51" in msg and "12-bit" in msg
    assert "pylibjpeg-libjpeg" in msg and "python-gdcm" in msg
    assert "corrupt" not in msg and "\n" not in msg


# ----------------------------------------------------------------------------------------------
# Geometry: duplicate positions (warning), mixed orientations (refused)
# ----------------------------------------------------------------------------------------------


def test_duplicate_positions_are_named(tmp_path: Path) -> None:
    uid = generate_uid()
    for name, z, inst in [("a", 10.0, 2), ("b", 10.0, 1), ("c", 0.0, 3)]:
        write_slice(tmp_path / name, _const(inst), series=uid, z=z, instance=inst)
    (vol,) = read_dicom_volumes(tmp_path)
    assert [Path(s).name for s in vol.sources] == ["c", "b", "a"]  # all kept
    assert vol.thickness == pytest.approx(10.0)
    (line,) = vol.warnings
    assert line == (
        f"series {uid}: 2 slices share position 10 mm along the slice normal (b, a); "
        "kept all, in InstanceNumber order (two acquisitions in one series?)"
    )


def test_distinct_positions_have_no_warning(tmp_path: Path) -> None:
    uid = generate_uid()
    for k in range(3):
        write_slice(tmp_path / f"s{k}", _const(k), series=uid, z=float(k), instance=k + 1)
    (vol,) = read_dicom_volumes(tmp_path)
    assert vol.warnings == []


@pytest.mark.parametrize("odd", ["a", "c"])
def test_slice_with_another_orientation_is_refused(tmp_path: Path, odd: str) -> None:
    uid = generate_uid()
    for k, name in enumerate("abc"):
        orient = [0, 1, 0, 0, 0, -1] if name == odd else [1, 0, 0, 0, 1, 0]
        write_slice(tmp_path / name, _const(k), series=uid, z=float(k), ImageOrientationPatient=orient)
    with pytest.raises(InputError) as err:
        read_dicom_volumes(tmp_path)
    msg = str(err.value)
    assert err.value.path == str(tmp_path / odd)  # the odd one, also when it sorts first
    assert f"series {uid}" in msg and "orientation (0, 1, 0, 0, 0, -1)" in msg and "\n" not in msg


# ----------------------------------------------------------------------------------------------
# RescaleSlope 0
# ----------------------------------------------------------------------------------------------


def test_rescale_slope_zero_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.dcm"
    write_slice(path, RAMP, z=0.0, RescaleSlope=0, RescaleIntercept=-1024)
    with pytest.raises(InputError) as err:
        read_dicom_volumes(path)
    assert str(err.value) == f"{path}: RescaleSlope is 0: every pixel would be the same value"


# ----------------------------------------------------------------------------------------------
# Folders with files that are not images
# ----------------------------------------------------------------------------------------------


def _without_pixels(path: Path, series: str) -> None:
    ds = write_slice(path, _const(0), series=series, z=5.0)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)


def _sr(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    ds.save_as(path, enforce_file_format=True)


def test_folder_skips_image_file_without_pixel_data(tmp_path: Path) -> None:
    uid = generate_uid()
    for k in range(2):
        write_slice(tmp_path / f"s{k}.dcm", _const(k), series=uid, z=float(k))
    _without_pixels(tmp_path / "x.dcm", uid)
    _sr(tmp_path / "report.dcm")  # a non-image object: left out quietly, as before
    (vol,) = read_dicom_volumes(tmp_path)
    assert [Path(s).name for s in vol.sources] == ["s0.dcm", "s1.dcm"]
    assert vol.warnings == ["skipped 1 image file without pixel data: x.dcm"]
    # alone, the file is refused as before; a folder with nothing else usable too
    for target in (tmp_path / "x.dcm", tmp_path / "only"):
        if target.name == "only":
            _without_pixels(target / "x.dcm", uid)
            _sr(target / "report.dcm")
        with pytest.raises(InputError, match="pixel data is missing") as err:
            read_dicom_volumes(target)
        assert err.value.path is not None and err.value.path.endswith("x.dcm")


def test_skipped_file_of_another_series_is_named_once(tmp_path: Path) -> None:
    a, b = "1.2.826.0.9.1", "1.2.826.0.9.2"
    write_slice(tmp_path / "a.dcm", _const(0), series=a, z=0.0)
    write_slice(tmp_path / "b.dcm", _const(0), series=b, z=0.0)
    _without_pixels(tmp_path / "x.dcm", b)
    va, vb = read_dicom_volumes(tmp_path)
    assert va.warnings == [] and vb.warnings == ["skipped 1 image file without pixel data: x.dcm"]
    (only_a,) = read_dicom_volumes(tmp_path, series=a)
    assert only_a.warnings == []


# ----------------------------------------------------------------------------------------------
# Library warnings: never printed
# ----------------------------------------------------------------------------------------------


def _bad_uid(path: Path, **attrs: object) -> None:
    """A slice whose StudyInstanceUID is not a valid UID (pydicom warns when it decodes it)."""
    write_slice(path, _const(1), z=float(attrs.pop("z", 0.0)), **attrs)  # type: ignore[arg-type]
    raw = path.read_bytes()
    assert raw.count(b"1.2.3.4\x00") == 1
    path.write_bytes(raw.replace(b"1.2.3.4\x00", b"1.2.A.4\x00"))


def test_library_warnings_go_to_volume_warnings(
    tmp_path: Path, recwarn: pytest.WarningsRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = generate_uid()
    _bad_uid(tmp_path / "a.dcm", series=uid, z=0.0)
    _bad_uid(tmp_path / "b.dcm", series=uid, z=1.0)
    warnings.simplefilter("always")
    (vol,) = read_dicom_volumes(tmp_path)
    assert len(recwarn) == 0
    assert capsys.readouterr().err == ""
    assert vol.warnings == ["2 files (a.dcm, b.dcm): pydicom: Invalid value for VR UI: '1.2.A.4'."]


def test_library_warning_folds_into_the_refusal(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "bad.dcm"
    _bad_uid(path, RescaleSlope=0)
    warnings.simplefilter("always")
    with pytest.raises(InputError) as err:
        read_dicom_volumes(path)
    assert len(recwarn) == 0
    assert str(err.value) == (
        f"{path}: RescaleSlope is 0: every pixel would be the same value "
        "(library warning: pydicom: Invalid value for VR UI: '1.2.A.4'.)"
    )
