"""The modality transform of :mod:`medgan.io.dicom` (pydicom's ``apply_modality_lut``): Modality LUT
Sequence, RescaleSlope / RescaleIntercept with a value missing, MONOCHROME1 through a LUT, broken LUTs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.sequence import Sequence

from medgan.errors import InputError
from medgan.io.dicom import read_dicom_volumes
from tests.io.test_dicom import write_slice

FIRST = 2  # first stored value the LUT maps
LUT = [1000 + 7 * k for k in range(16)]  # 16 entries: stored FIRST..FIRST+15 -> 1000..1105


def _stored() -> np.ndarray:
    """Stored values below, inside and above the LUT's input range."""
    return np.arange(24, dtype=np.uint16).reshape(4, 6)


def _expected() -> np.ndarray:
    return np.asarray(LUT, dtype=np.float32)[np.clip(_stored().astype(int) - FIRST, 0, len(LUT) - 1)]


def _lut_item(data: bytes | None = None, descriptor: list[int] | None = None) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor or [len(LUT), FIRST, 16]
    if data is None:
        item.add_new("LUTData", "US", LUT)
    else:
        item.add_new("LUTData", "OW", data)
    item.ModalityLUTType = "US"
    return item


def test_modality_lut_sequence_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "lut.dcm"
    write_slice(path, _stored(), z=0.0, ModalityLUTSequence=Sequence([_lut_item()]))
    ds = pydicom.dcmread(path)
    assert "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
    (vol,) = read_dicom_volumes(path)
    np.testing.assert_array_equal(vol.data[0, 0], _expected())
    np.testing.assert_array_equal(vol.data[0, 0], apply_modality_lut(ds.pixel_array, ds))
    assert vol.raw_dtype == "uint16"


def test_modality_lut_as_ow_bytes(tmp_path: Path) -> None:
    path = tmp_path / "lut_ow.dcm"
    item = _lut_item(np.asarray(LUT, dtype="<u2").tobytes())
    write_slice(path, _stored(), z=0.0, ModalityLUTSequence=Sequence([item]))
    (vol,) = read_dicom_volumes(path)
    np.testing.assert_array_equal(vol.data[0, 0], _expected())


def test_monochrome1_mirrors_through_the_lut(tmp_path: Path) -> None:
    path = tmp_path / "m1.dcm"
    write_slice(
        path,
        _stored(),
        z=0.0,
        PhotometricInterpretation="MONOCHROME1",
        ModalityLUTSequence=Sequence([_lut_item()]),
    )
    (vol,) = read_dicom_volumes(path)
    # 16-bit stored range 0..65535 maps onto the LUT's first and last entries
    np.testing.assert_array_equal(vol.data[0, 0], LUT[0] + LUT[-1] - _expected())


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [({"RescaleIntercept": -1024}, -1024.0), ({"RescaleSlope": 3}, 0.0)],
    ids=["intercept-only", "slope-only"],
)
def test_rescale_with_one_value_missing(tmp_path: Path, attrs: dict[str, float], expected: float) -> None:
    """pydicom alone skips a rescale unless both values are present; the reader keeps the one given."""
    stored = np.arange(16, dtype=np.int16).reshape(4, 4)
    write_slice(tmp_path / "r.dcm", stored, z=0.0, **attrs)
    (vol,) = read_dicom_volumes(tmp_path / "r.dcm")
    slope = float(attrs.get("RescaleSlope", 1))
    np.testing.assert_array_equal(vol.data[0, 0], stored * slope + expected)


def test_broken_lut_is_a_one_line_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad_lut.dcm"
    item = _lut_item(np.asarray(LUT[:5], dtype="<u2").tobytes())  # 5 entries where 16 are declared
    write_slice(path, _stored(), z=0.0, ModalityLUTSequence=Sequence([item]))
    with pytest.raises(InputError, match="cannot apply the modality LUT") as err:
        read_dicom_volumes(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
