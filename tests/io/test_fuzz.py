"""Fuzzed readers: mutated DICOM, NIfTI, NPZ, PNG and CSV files either load or raise a one-line InputError.

Each test generates a small valid file, mutates it (byte flips, truncation, insertion, and
structured header edits that matter for the format) and feeds it to every reader of the format
(see :mod:`tests.io.fuzzing`). ``MEDGAN_FUZZ_EXAMPLES`` raises the number of examples per test
for a longer local campaign (docs/reliability.md); CI runs are derandomized and database-free.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medgan.errors import ConfigError, InputError
from medgan.io.limits import DEFAULT_MAX_VOXELS, MAX_VOXELS_ENV, check_claim, max_voxels
from tests.io.fuzzing import HypothesisChooser, check_file, fuzz_one

#: Examples per format; the defaults keep the whole file well under a minute on two busy cores.
EXAMPLES = int(os.environ.get("MEDGAN_FUZZ_EXAMPLES", "100"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),  # a hang is also caught by the harness' own 20 s alarm
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _fuzz(fmt: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix=f"medgan-fuzz-{fmt}-") as tmp:
        fuzz_one(fmt, HypothesisChooser(data), Path(tmp))


@FUZZ
@given(data=st.data())
def test_fuzz_dicom(data: st.DataObject) -> None:
    """Rows/Columns/NumberOfFrames/BitsAllocated/... edits, transfer syntaxes, missing PixelData, SEG."""
    _fuzz("dicom", data)


@FUZZ
@given(data=st.data())
def test_fuzz_nifti(data: st.DataObject) -> None:
    """dim/pixdim/datatype/vox_offset/scl_slope edits (.nii, .nii.gz, NIfTI-2) and MHA/NRRD headers."""
    _fuzz("nifti", data)


@FUZZ
@given(data=st.data())
def test_fuzz_npz(data: st.DataObject) -> None:
    """Wrong keys, object arrays (never unpickled), huge .npy shape claims, wrong dtypes, ragged labels."""
    _fuzz("npz", data)


@FUZZ
@given(data=st.data())
def test_fuzz_png(data: st.DataObject) -> None:
    """Corrupt chunks, huge claimed width/height, decompression bombs (and TIFF/JPEG/BMP/GIF seeds)."""
    _fuzz("png", data)


@FUZZ
@given(data=st.data())
def test_fuzz_csv(data: st.DataObject) -> None:
    """Missing columns, bad labels, paths escaping the root, NUL bytes, huge fields, other encodings."""
    _fuzz("csv", data)


@FUZZ
@given(data=st.data())
def test_fuzz_yaml(data: st.DataObject) -> None:
    """Configs nested thousands deep, alias bombs, recursive aliases, repeated keys, tags that run code."""
    _fuzz("yaml", data)


# ----------------------------------------------------------------------------------------------
# The voxel limit: huge claims are refused before anything is allocated
# ----------------------------------------------------------------------------------------------


def test_check_claim_refuses_huge_negative_and_unbacked_claims(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    assert check_claim(f, (2, 3, 4)) == 24
    with pytest.raises(InputError, match=r"x\.bin: the header claims .* more than the limit"):
        check_claim(f, (2**20, 2**20))
    with pytest.raises(InputError, match="negative size"):
        check_claim(f, (4, -1))
    with pytest.raises(InputError, match="the file holds 10 bytes"):
        check_claim(f, (4, 4), itemsize=1, available=10)
    with pytest.raises(InputError, match="compressed bytes can hold"):
        check_claim(f, (2**14, 2**14), itemsize=4, compressed=100)
    check_claim(f, (4, 4), itemsize=2, available=32, compressed=1)


def test_max_voxels_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_VOXELS_ENV, raising=False)
    assert max_voxels() == DEFAULT_MAX_VOXELS
    monkeypatch.setenv(MAX_VOXELS_ENV, "1000")
    assert max_voxels() == 1000
    for bad in ("zero", "0", "-5"):
        monkeypatch.setenv(MAX_VOXELS_ENV, bad)
        with pytest.raises(ConfigError, match=MAX_VOXELS_ENV):
            max_voxels()


def test_lowered_limit_refuses_a_valid_file_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medgan.io.nifti import read_case

    p = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), str(p))
    assert read_case(p).data.shape == (8, 1, 8, 8)
    monkeypatch.setenv(MAX_VOXELS_ENV, "100")
    with pytest.raises(InputError) as ei:
        read_case(p)
    msg = str(ei.value)
    assert "vol.nii.gz" in msg and MAX_VOXELS_ENV in msg and "\n" not in msg


def test_huge_nifti_gz_claim_is_refused_before_allocation(tmp_path: Path) -> None:
    """A 100-byte .nii.gz claiming 2000^3 int16 voxels (16 GB) fails fast, under the harness' memory cap."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    hdr = np.frombuffer(bytes(raw[:348]), dtype=nib.Nifti1Header.template_dtype).copy()
    hdr["dim"][0][1:4] = 2000
    raw[:348] = hdr.tobytes()
    import gzip

    p = tmp_path / "huge.nii.gz"
    p.write_bytes(gzip.compress(bytes(raw)))
    outcomes = check_file("nifti", p, tmp_path)
    assert all(o.endswith("InputError") for o in outcomes), outcomes
