"""Fuzzing harness for medgan's file readers: seed files, mutations and the load-or-InputError property.

One code path serves three drivers: the hypothesis tests (``tests/io/test_fuzz.py``), the
regression corpus (``tests/io/test_fuzz_corpus.py``) and the coverage-guided atheris script
(``scripts/fuzz_atheris.py``). Every random decision goes through a :class:`Chooser`, so each
driver only supplies its own source of choices.

The property (:func:`check_file`): every reader either returns data of a sane shape or raises
:class:`~medgan.errors.MedganError` whose message is one line naming the file. Any other
exception is a crash; a call running longer than :data:`CALL_TIMEOUT_S` is a hang; a call
needing more than :data:`MEMORY_BUDGET` bytes of new address space (``MemoryError`` under a
temporary ``RLIMIT_AS``) tried to allocate what a header claimed.

Seeds are small valid files written here with pydicom / nibabel / SimpleITK / numpy / Pillow;
nothing is copied from the data directory.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import random
import shutil
import signal
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from medgan.errors import MedganError

T = TypeVar("T")

FORMATS: tuple[str, ...] = ("dicom", "nifti", "npz", "png", "csv", "yaml")
#: Seconds one reader call may take before it counts as a hang.
CALL_TIMEOUT_S = float(os.environ.get("MEDGAN_FUZZ_TIMEOUT", "20"))
#: New address space (bytes) one reader call may reserve; beyond it, allocation raises MemoryError.
MEMORY_BUDGET = int(float(os.environ.get("MEDGAN_FUZZ_MEMORY", str(3 * 2**30))))


# ----------------------------------------------------------------------------------------------
# Choices
# ----------------------------------------------------------------------------------------------


class Chooser:
    """The source of every random decision; subclasses draw from hypothesis, atheris or ``random``."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        raise NotImplementedError

    def raw(self, max_len: int) -> bytes:
        """Up to ``max_len`` arbitrary bytes."""
        raise NotImplementedError

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        return options[self.integer(0, len(options) - 1)]

    def boolean(self, p_true: int = 50) -> bool:
        """True with about ``p_true`` percent probability."""
        return self.integer(0, 99) < p_true


class RandomChooser(Chooser):
    """Choices from :class:`random.Random` (exploration runs)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def raw(self, max_len: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_len))


class HypothesisChooser(Chooser):
    """Choices drawn from a hypothesis ``st.data()`` object (shrinkable)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def raw(self, max_len: int) -> bytes:
        return self.data.draw(self.st.binary(max_size=max_len))


# ----------------------------------------------------------------------------------------------
# Generic byte mutations
# ----------------------------------------------------------------------------------------------

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate_bytes(data: bytes, c: Chooser, max_ops: int = 4) -> bytes:
    """Flip, overwrite, insert, delete, duplicate or truncate bytes, or write an interesting integer."""
    buf = bytearray(data)
    for _ in range(c.integer(0, max_ops)):
        op = c.choice(("flip", "set", "insert", "delete", "truncate", "dup", "int"))
        pos = c.integer(0, max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[pos] ^= 1 << c.integer(0, 7)
        elif op == "set" and buf:
            buf[pos] = c.integer(0, 255)
        elif op == "insert":
            buf[pos:pos] = c.raw(16)
        elif op == "delete":
            del buf[pos : pos + c.integer(1, 16)]
        elif op == "truncate":
            del buf[pos:]
        elif op == "dup" and buf:
            n = c.integer(1, 64)
            buf[pos:pos] = buf[pos : pos + n]
        elif op == "int" and buf:
            width = c.choice((2, 4))
            value = c.choice(_INTERESTING) & (2 ** (8 * width) - 1)
            buf[pos : pos + width] = value.to_bytes(width, c.choice(("little", "big")))
    return bytes(buf)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------

_DICOM_SEEDS = ("ct", "multiframe", "rgb", "mono1", "palette", "rle", "seg")
_CT_SERIES = "1.2.826.0.1.3680043.8.498.1"
_CT_SOP = "1.2.826.0.1.3680043.8.498.2"

# keyword -> (VR, candidate values): values a broken or hostile header may carry
_DICOM_EDITS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "Rows": ("US", (0, 1, 2, 3, 7, 255, 4096, 32768, 65535, b"\x01", b"", b"\xff\xff\xff\xff")),
    "Columns": ("US", (0, 1, 2, 5, 9, 4096, 65535, b"\x07", b"")),
    "NumberOfFrames": (
        "IS",
        ("0", "-1", "1", "2", "3", "4", "65536", "2147483647", "99999999999", "abc", ""),
    ),
    "BitsAllocated": ("US", (0, 1, 7, 8, 12, 16, 24, 32, 64, 65535)),
    "BitsStored": ("US", (0, 1, 8, 12, 16, 17, 33, 65535)),
    "HighBit": ("US", (0, 7, 15, 31, 64, 65535)),
    "SamplesPerPixel": ("US", (0, 1, 2, 3, 4, 65535)),
    "PixelRepresentation": ("US", (0, 1, 2, 65535)),
    "PlanarConfiguration": ("US", (0, 1, 2, 65535)),
    "PhotometricInterpretation": (
        "CS",
        (
            "MONOCHROME1",
            "MONOCHROME2",
            "RGB",
            "PALETTE COLOR",
            "YBR_FULL",
            "YBR_FULL_422",
            "YBR_RCT",
            "",
            "X",
        ),
    ),
    "RescaleSlope": ("DS", ("0", "-1", "1e308", "-1e308", "NaN", "inf", "-inf", "abc", "1\\2", "")),
    "RescaleIntercept": ("DS", ("0", "-1024", "1e308", "NaN", "-inf", "x", "")),
    "WindowCenter": ("DS", ("40", "NaN", "inf", "1e308", "", "40\\400")),
    "WindowWidth": ("DS", ("0", "-1", "NaN", "inf", "", "1e308")),
    "ImagePositionPatient": ("DS", ("0\\0\\0", "NaN\\0\\0", "1\\2", "inf\\inf\\inf", "1e308\\-1e308\\0", "")),
    "ImageOrientationPatient": (
        "DS",
        ("1\\0\\0\\0\\1\\0", "0\\0\\0\\0\\0\\0", "NaN\\0\\0\\0\\1\\0", "1\\0\\0", ""),
    ),
    "PixelSpacing": ("DS", ("0\\0", "-1\\-1", "NaN\\1", "1e308\\1e308", "1", "")),
    "SliceThickness": ("DS", ("0", "-5", "NaN", "1e308", "")),
    "GridFrameOffsetVector": ("DS", ("0\\1\\2", "0", "NaN\\NaN\\NaN", "")),
    "InstanceNumber": ("IS", ("1", "-5", "2147483647", "99999999999999", "x", "")),
    "SeriesInstanceUID": ("UI", ("", "1.2.3", "\x00\x00", "x" * 64)),
    "SOPClassUID": (
        "UI",
        (
            "",
            "1.2.840.10008.5.1.4.1.1.66.4",
            "1.2.840.10008.5.1.4.1.1.2.1",
            "1.2.840.10008.5.1.4.1.1.88.11",
            "9.9",
        ),
    ),
    "Modality": ("CS", ("SEG", "CT", "SR", "", "MR")),
    "SegmentationType": ("CS", ("BINARY", "FRACTIONAL", "LABELMAP", "X", "")),
    "MaximumFractionalValue": ("US", (0, 1, 255, 65535)),
    "RedPaletteColorLookupTableDescriptor": ("US", ((0, 0, 8), (256, 0, 16), (65535, 65535, 65535), (1,))),
    "RedPaletteColorLookupTableData": ("OW", (b"", b"\x00\x01", b"\xff" * 7)),
}
_DICOM_DELETABLE = (
    "PixelData",
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "SeriesInstanceUID",
    "SOPClassUID",
    "PixelRepresentation",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "SegmentSequence",
    "RedPaletteColorLookupTableData",
    "NumberOfFrames",
)
_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",  # explicit big endian (retired)
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",  # JPEG-LS
    "1.2.840.10008.1.2.4.90",  # JPEG 2000
    "1.2.840.10008.1.2.4.100",  # MPEG2
    "1.2.840.10008.1.2.4.110",  # JPEG XL
    "1.2.840.10008.1.2.4.201",  # HTJ2K
    "1.2.3.4",
    "",
    "not-a-uid",
)


def _dicom_item(**attrs: Any) -> Any:
    from pydicom.dataset import Dataset

    d = Dataset()
    for k, v in attrs.items():
        setattr(d, k, v)
    return d


def _dicom_base(sop_class: str, pixels: np.ndarray, sop_uid: str, **attrs: Any) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.SeriesInstanceUID = _CT_SERIES
    ds.PatientID = "FUZZ"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    data = np.ascontiguousarray(pixels).tobytes()
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    return ds


def dicom_seed(kind: str) -> Any:
    """A small valid DICOM dataset of one of :data:`_DICOM_SEEDS` kinds."""
    from pydicom.sequence import Sequence
    from pydicom.uid import (
        CTImageStorage,
        EnhancedCTImageStorage,
        RLELossless,
        SecondaryCaptureImageStorage,
        SegmentationStorage,
    )

    rng = np.random.default_rng(0)
    geometry = {
        "ImagePositionPatient": [-10.0, -20.0, 5.0],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "PixelSpacing": [0.5, 0.75],
        "SliceThickness": 3.0,
        "InstanceNumber": 1,
    }
    if kind in ("ct", "rle"):
        pix = rng.integers(-1000, 1000, (8, 8)).astype(np.int16)
        ds = _dicom_base(
            CTImageStorage,
            pix,
            _CT_SOP,
            RescaleSlope=1,
            RescaleIntercept=-1024,
            WindowCenter=40,
            WindowWidth=400,
            **geometry,
        )
        if kind == "rle":
            ds.compress(RLELossless, generate_instance_uid=False)
        return ds
    if kind == "multiframe":
        frames = rng.integers(0, 4000, (3, 6, 8)).astype(np.uint16)
        ds = _dicom_base(EnhancedCTImageStorage, frames, "1.2.826.0.1.3680043.8.498.4")
        ds.NumberOfFrames = 3
        ds.SharedFunctionalGroupsSequence = Sequence(
            [
                _dicom_item(
                    PlaneOrientationSequence=Sequence(
                        [_dicom_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]
                    ),
                    PixelMeasuresSequence=Sequence(
                        [_dicom_item(PixelSpacing=[0.5, 0.5], SliceThickness=2.0)]
                    ),
                    PixelValueTransformationSequence=Sequence(
                        [_dicom_item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]
                    ),
                )
            ]
        )
        ds.PerFrameFunctionalGroupsSequence = Sequence(
            [
                _dicom_item(PlanePositionSequence=Sequence([_dicom_item(ImagePositionPatient=[0.0, 0.0, z])]))
                for z in (2.0, 0.0, 1.0)
            ]
        )
        return ds
    if kind == "rgb":
        pix = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
        ds = _dicom_base(SecondaryCaptureImageStorage, pix, "1.2.826.0.1.3680043.8.498.5", Modality="OT")
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        return ds
    if kind == "mono1":
        pix = rng.integers(0, 256, (5, 5)).astype(np.uint8)
        return _dicom_base(
            SecondaryCaptureImageStorage,
            pix,
            "1.2.826.0.1.3680043.8.498.6",
            PhotometricInterpretation="MONOCHROME1",
            Modality="CR",
        )
    if kind == "palette":
        pix = rng.integers(0, 4, (4, 4)).astype(np.uint8)
        ds = _dicom_base(
            SecondaryCaptureImageStorage,
            pix,
            "1.2.826.0.1.3680043.8.498.7",
            PhotometricInterpretation="PALETTE COLOR",
            Modality="OT",
        )
        lut = (np.arange(4, dtype="<u2") * 20000).tobytes()
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", lut)
        return ds
    if kind == "seg":
        from pydicom.pixels import pack_bits

        mask = np.zeros((1, 8, 8), np.uint8)
        mask[0, 2:5, 3:6] = 1
        ds = _dicom_base(SegmentationStorage, np.zeros((8, 8), np.uint8), "1.2.826.0.1.3680043.8.498.8")
        ds.Modality = "SEG"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
        ds.SegmentationType = "BINARY"
        ds.NumberOfFrames = 1
        ds.SegmentSequence = Sequence([_dicom_item(SegmentNumber=1, SegmentLabel="lesion")])
        ds.SharedFunctionalGroupsSequence = Sequence(
            [
                _dicom_item(
                    PlaneOrientationSequence=Sequence(
                        [_dicom_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]
                    )
                )
            ]
        )
        ds.PerFrameFunctionalGroupsSequence = Sequence(
            [
                _dicom_item(
                    SegmentIdentificationSequence=Sequence([_dicom_item(ReferencedSegmentNumber=1)]),
                    DerivationImageSequence=Sequence(
                        [
                            _dicom_item(
                                SourceImageSequence=Sequence(
                                    [
                                        _dicom_item(
                                            ReferencedSOPClassUID=CTImageStorage,
                                            ReferencedSOPInstanceUID=_CT_SOP,
                                        )
                                    ]
                                )
                            )
                        ]
                    ),
                    PlanePositionSequence=Sequence([_dicom_item(ImagePositionPatient=[-10.0, -20.0, 5.0])]),
                )
            ]
        )
        ds.PixelData = pack_bits(mask)
        return ds
    raise ValueError(kind)


def _raw_element(keyword: str, vr: str, value: Any) -> Any:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    if isinstance(value, bytes):
        blob = value
    elif vr in ("US",):
        values = value if isinstance(value, tuple) else (value,)
        blob = b"".join(struct.pack("<H", v & 0xFFFF) for v in values)
    else:
        blob = str(value).encode("latin-1")
        if len(blob) % 2:
            blob += b"\0" if vr == "UI" else b" "
    tag = Tag(keyword)
    return tag, RawDataElement(tag, vr, len(blob), blob, 0, False, True)


def _dicom_bytes(ds: Any, *, preamble: bool = True) -> bytes:
    import pydicom

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if preamble:
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        else:
            ds = ds.copy()
            ds.file_meta = type(ds.file_meta)()
            ds.preamble = None
            pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def _set_transfer_syntax(data: bytes, uid: str) -> bytes:
    """Rewrite the file meta group of ``data`` (a file with preamble) with TransferSyntaxUID ``uid``."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    if len(data) < 144 or data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return data
    end = 144 + struct.unpack_from("<I", data, 140)[0]
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = uid
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=False)
    return data[:132] + buf.getvalue() + data[end:]


def make_dicom(c: Chooser) -> tuple[str, bytes]:
    """A mutated DICOM file: (seed kind, bytes)."""
    from pydicom import config
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

    kind = c.choice(_DICOM_SEEDS)
    ds = dicom_seed(kind)
    for _ in range(c.integer(0, 4)):
        if c.boolean(25):
            keyword = c.choice(_DICOM_DELETABLE)
            if keyword in ds:
                del ds[keyword]
            continue
        if c.boolean(15) and "PixelData" in ds:
            blob = ds.PixelData or b""
            op = c.choice(("short", "long", "empty", "odd"))
            blob = {
                "short": blob[: c.integer(0, max(len(blob) - 1, 0))],
                "long": blob + c.raw(64),
                "empty": b"",
                "odd": blob + b"\x01",
            }[op]
            tag, elem = _raw_element("PixelData", "OB", blob)
            ds[tag] = elem
            continue
        keyword = c.choice(tuple(_DICOM_EDITS))
        vr, values = _DICOM_EDITS[keyword]
        tag, elem = _raw_element(keyword, vr, c.choice(values))
        ds[tag] = elem
    encoding = c.choice(("explicit", "explicit", "implicit", "big", "deflate", "nopreamble"))
    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        if encoding in ("implicit", "big", "deflate") and not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.file_meta.TransferSyntaxUID = {
                "implicit": ImplicitVRLittleEndian,
                "big": ExplicitVRBigEndian,
                "deflate": DeflatedExplicitVRLittleEndian,
            }[encoding]
        try:
            data = _dicom_bytes(ds, preamble=encoding != "nopreamble")
        except Exception:  # pydicom refuses some edits (e.g. a bad value for a big-endian US): keep the seed
            data = _dicom_bytes(dicom_seed(kind))
    finally:
        config.settings.writing_validation_mode = old
    if c.boolean(15):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = _set_transfer_syntax(data, c.choice(_TRANSFER_SYNTAXES))
    if c.boolean(50):
        data = mutate_bytes(data, c)
    return kind, data


# ----------------------------------------------------------------------------------------------
# NIfTI (and MetaImage / NRRD, which read_array also opens)
# ----------------------------------------------------------------------------------------------

_NIFTI_SEEDS = ("int16", "float32", "mask", "4d", "nifti2", "mha", "nrrd")

_NIFTI_EDITS: dict[str, tuple[Any, ...]] = {
    "dim0": (0, 1, 2, 3, 4, 5, 7, 8, -1, 32767),
    "dimk": (0, 1, -1, 2, 255, 32767, 2**31 - 1, -(2**31)),
    "pixdim": (0.0, -1.0, 1e-30, 1e30, np.inf, -np.inf, np.nan),
    "datatype": (
        *(0, 1, 2, 4, 8, 16, 32, 64, 128, 255, 256, 512),
        *(768, 1024, 1280, 1536, 1792, 2048, 2304, -1, 32767),
    ),
    "bitpix": (0, 1, 8, 16, 32, 64, 128, -8, 32767),
    "vox_offset": (0.0, 1.0, 344.0, 352.0, 353.0, 4096.0, 1e10, -1.0, np.nan, np.inf),
    "scl_slope": (0.0, -1.0, 1e38, -1e38, np.nan, np.inf, 1e-38),
    "scl_inter": (0.0, 1e38, np.nan, -np.inf),
    "qform_code": (0, 1, 2, 4, -1, 32767),
    "sform_code": (0, 1, 2, 4, -1, 32767),
    "quatern_b": (0.0, 1.0, 2.0, np.nan, np.inf),
    "srow_x": (0.0, 1.0, 1e30, np.nan, np.inf),
    "sizeof_hdr": (0, 348, 540, -1, 1 << 24),
    "magic": (b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"xxxx"),
}


def _nifti_header_edit(data: bytes, c: Chooser, nifti2: bool) -> bytes:
    """Set one header field of uncompressed NIfTI ``data`` to an extreme or inconsistent value."""
    import nibabel as nib

    hdr_cls = nib.Nifti2Header if nifti2 else nib.Nifti1Header
    size = hdr_cls.template_dtype.itemsize
    if len(data) < size:
        return data
    hdr = np.frombuffer(data[:size], dtype=hdr_cls.template_dtype).copy()
    key = c.choice(tuple(_NIFTI_EDITS))
    value = c.choice(_NIFTI_EDITS[key])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if key == "dim0":
            hdr["dim"][0][0] = value
        elif key == "dimk":
            info = np.iinfo(hdr["dim"].dtype)
            hdr["dim"][0][c.integer(1, 7)] = min(max(value, info.min), info.max)
        elif key == "pixdim":
            hdr["pixdim"][0][c.integer(0, 7)] = value
        elif key == "srow_x":
            hdr[c.choice(("srow_x", "srow_y", "srow_z"))][0][c.integer(0, 3)] = value
        elif key == "magic":
            hdr["magic"] = value if not nifti2 else value + b"\r\n\x1a\n"
        elif key == "vox_offset" and nifti2:
            hdr["vox_offset"] = int(value) if np.isfinite(value) else 2**62
        else:
            field_dtype = hdr.dtype[key]
            if field_dtype.kind in "iu":
                info = np.iinfo(field_dtype)
                value = int(min(max(value if np.isfinite(value) else 0, info.min), info.max))
            hdr[key] = value
    return hdr.tobytes() + data[size:]


def _itk_bytes(suffix: str) -> bytes:
    import tempfile

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.arange(4 * 5 * 3, dtype=np.int16).reshape(3, 5, 4))
    img.SetSpacing((0.5, 0.5, 2.0))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"seed{suffix}"
        sitk.WriteImage(img, str(p))
        return p.read_bytes()


_ITK_EDITS = {
    ".mha": (
        b"DimSize = 100000 100000 100000",
        b"DimSize = 4 5",
        b"DimSize = 0 0 0",
        b"DimSize = -4 5 3",
        b"NDims = 9",
        b"NDims = 0",
        b"ElementType = MET_DOUBLE",
        b"ElementType = MET_NONE",
        b"ElementNumberOfChannels = 3",
        b"ElementNumberOfChannels = 100000",
        b"CompressedData = True",
        b"ElementSpacing = 0 0 0",
        b"ElementSpacing = nan nan nan",
        b"TransformMatrix = 0 0 0 0 0 0 0 0 0",
        b"ElementDataFile = /etc/hostname",
        b"ElementDataFile = ../elsewhere.raw",
        b"HeaderSize = 99999999",
    ),
    ".nrrd": (
        b"sizes: 100000 100000 100000",
        b"sizes: 4 5",
        b"sizes: 0 0 0",
        b"dimension: 9",
        b"type: double",
        b"type: block",
        b"encoding: gzip",
        b"encoding: bzip2",
        b"space directions: (0,0,0) (0,0,0) (0,0,0)",
        b"space directions: (nan,0,0) (0,1,0) (0,0,1)",
        b"data file: /etc/hostname",
        b"byte skip: 99999999",
        b"kinds: RGB-color domain domain",
    ),
}


def nifti_seed(kind: str) -> tuple[str, bytes]:
    """(suffix, bytes) of a small valid volume of one of :data:`_NIFTI_SEEDS` kinds."""
    import nibabel as nib

    if kind in ("mha", "nrrd"):
        return f".{kind}", _itk_bytes(f".{kind}")
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    if kind == "int16":
        img = nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), aff)
        img.header.set_slope_inter(0.5, -10.0)
    elif kind == "float32":
        img = nib.Nifti1Image(np.linspace(-1, 1, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3), aff)
    elif kind == "mask":
        arr = np.zeros((6, 5, 4), np.uint8)
        arr[2:4, 1:3, 1] = 1
        img = nib.Nifti1Image(arr, aff)
    elif kind == "4d":
        img = nib.Nifti1Image(np.ones((4, 4, 3, 2), np.int16), aff)
    elif kind == "nifti2":
        img = nib.Nifti2Image(np.arange(4 * 4 * 2, dtype=np.uint8).reshape(4, 4, 2), aff)
    else:
        raise ValueError(kind)
    return ".nii", img.to_bytes()


def make_nifti(c: Chooser) -> tuple[str, bytes]:
    """A mutated volume file: (suffix such as ``.nii.gz``, bytes)."""
    kind = c.choice(_NIFTI_SEEDS)
    suffix, data = nifti_seed(kind)
    if suffix == ".nii":
        for _ in range(c.integer(0, 3)):
            data = _nifti_header_edit(data, c, nifti2=kind == "nifti2")
        if c.boolean(30):
            data = mutate_bytes(data, c)
        if c.boolean(50):
            data = gzip.compress(data, mtime=0)
            suffix = ".nii.gz"
            if c.boolean(20):
                data = mutate_bytes(data, c)
    else:
        header_end = data.find(b"ElementDataFile = LOCAL") if suffix == ".mha" else data.find(b"\n\n")
        head, body = (data[:header_end], data[header_end:]) if header_end > 0 else (data, b"")
        lines = head.split(b"\n")
        for _ in range(c.integer(0, 3)):
            new = c.choice(_ITK_EDITS[suffix])
            key = new.split(b"=")[0].split(b":")[0].strip()
            idx = next((i for i, line in enumerate(lines) if line.startswith(key)), None)
            if idx is None:
                lines.insert(max(len(lines) - 1, 1), new)
            else:
                lines[idx] = new
        data = b"\n".join(lines) + body
        if c.boolean(30):
            data = mutate_bytes(data, c)
    return suffix, data


# ----------------------------------------------------------------------------------------------
# NPZ
# ----------------------------------------------------------------------------------------------

#: Set when any object was unpickled while reading a fuzzed .npz (it must stay False).
UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class PickleBomb:
    """An object whose unpickling is recorded in :data:`UNPICKLED`."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickle, ("unpickled",))


_NPY_CLAIMS = (
    "{'descr': '<u1', 'fortran_order': False, 'shape': (1099511627776,), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (65536, 65536, 65536), }",
    "{'descr': '<u1', 'fortran_order': False, 'shape': (4, 28, 28), }",
    "{'descr': '<u1', 'fortran_order': True, 'shape': (3, 5, 5), }",
    "{'descr': '<u1', 'fortran_order': False, 'shape': (-1, 5, 5), }",
    "{'descr': '<u1', 'fortran_order': False, 'shape': (2.5, 5), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': '<U1000000000', 'fortran_order': False, 'shape': (4,), }",
    "{'descr': '|V2147483647', 'fortran_order': False, 'shape': (4,), }",
    "{'descr': '<c16', 'fortran_order': False, 'shape': (3, 2, 2), }",
    "{'descr': '<M8[s]', 'fortran_order': False, 'shape': (3, 2, 2), }",
    "{'descr': 'bogus', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<u1', 'shape': (3,), }",
    "__import__('os').system('true')",
    "{'descr': '<u1', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }",
    "{'descr': '<u1', 'fortran_order': False, 'shape': (), }",
)


def _npy_with_header(header: str, body: bytes, version: int = 1) -> bytes:
    text = header.encode("latin-1")
    pad = (64 - (10 + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body
    return bytes([0x93, *b"NUMPY", version, 0]) + struct.pack("<I", len(text)) + text + body


def _npz_array(c: Chooser, role: str, n: int) -> np.ndarray:
    """An array playing ``role`` (images or labels), usually plausible, sometimes hostile."""
    if role == "images":
        shape = c.choice(
            ((n, 5, 5), (n, 5, 5, 3), (n, 4, 6, 1), (n, 5, 5, 2), (5, 5), (n,), (n, 0, 0), (0, 5, 5))
        )
        dtype = c.choice((np.uint8, np.uint8, np.uint8, np.float32, np.int16, np.bool_, np.float64))
        arr = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 251
        out = arr.astype(dtype)
        if dtype is np.float32 and out.size and c.boolean(30):
            out.flat[0] = np.nan
        return out
    shape = c.choice(((n, 1), (n,), (n, 2), (n + 1, 1), (), (max(n - 1, 0), 1)))
    values = c.choice(("small", "small", "negative", "huge", "nan", "bool", "str"))
    size = int(np.prod(shape))
    if values == "small":
        return (np.arange(size) % 2).astype(np.uint8).reshape(shape)
    if values == "negative":
        return np.full(shape, -3, dtype=np.int64)
    if values == "huge":
        return np.full(shape, np.iinfo(np.int64).max, dtype=np.int64)
    if values == "nan":
        return np.full(shape, np.nan, dtype=np.float32)
    if values == "bool":
        return np.ones(shape, dtype=bool)
    return np.full(shape, "1", dtype="<U2")


def make_npz(c: Chooser) -> tuple[str, bytes]:
    """A mutated ``.npz`` file: (suffix, bytes)."""
    n = c.integer(0, 4)
    arrays: dict[str, Any] = {}
    layout = c.choice(("medmnist", "medmnist", "partial", "generic", "extra"))
    splits = ("train", "val", "test") if layout != "partial" else ("train",)
    if layout == "generic":
        arrays["images"] = _npz_array(c, "images", n)
        arrays["features"] = np.zeros((n, 3), np.float32)
    else:
        for s in splits:
            arrays[f"{s}_images"] = _npz_array(c, "images", n)
            if not (layout == "partial" and c.boolean(30)):
                arrays[f"{s}_labels"] = _npz_array(c, "labels", n)
        if layout == "extra":
            arrays["note"] = np.array(["x"])
    pickles = c.boolean(15)
    if pickles:
        arrays[c.choice(tuple(arrays) or ("train_images",))] = np.array([PickleBomb(), 1], dtype=object)
    writer = c.choice(("savez", "compressed", "raw", "raw", "npy"))
    buf = io.BytesIO()
    if writer == "npy":  # a plain .npy file named .npz
        np.lib.format.write_array(buf, np.asanyarray(next(iter(arrays.values()))), allow_pickle=True)
    else:  # like np.savez / np.savez_compressed, but with fixed timestamps so that the bytes are repeatable
        method = {"savez": zipfile.ZIP_STORED, "compressed": zipfile.ZIP_DEFLATED}.get(writer)
        if method is None:
            method = c.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, arr in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=True)
                blob = member.getvalue()
                suffix = ".npy"
                if writer == "raw":
                    suffix = c.choice((".npy", ".npy", "", ".NPY"))
                    if c.boolean(40):
                        blob = _npy_with_header(
                            c.choice(_NPY_CLAIMS), c.raw(256), version=c.choice((1, 2, 3))
                        )
                    elif c.boolean(10):
                        blob = c.raw(64)  # a member that is not a .npy array at all
                info = zipfile.ZipInfo(name + suffix, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                zf.writestr(info, blob)
    data = buf.getvalue()
    if c.boolean(35):
        data = mutate_bytes(data, c)
    return ".npz", data


# ----------------------------------------------------------------------------------------------
# PNG (and the other image formats read_image opens)
# ----------------------------------------------------------------------------------------------

_PNG_SEEDS = ("L", "I;16", "RGB", "RGBA", "P", "LA", "1", "tiff16", "tiff_float", "jpeg", "bmp", "gif")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_seed(kind: str) -> tuple[str, bytes]:
    """(suffix, bytes) of a small valid image of one of :data:`_PNG_SEEDS` kinds."""
    from PIL import Image

    grey = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 7).astype(np.uint8)
    buf = io.BytesIO()
    if kind in ("tiff16", "tiff_float"):
        import tifffile

        arr = (grey.astype(np.uint16) * 250) if kind == "tiff16" else grey.astype(np.float32) / 3
        tifffile.imwrite(buf, arr)
        return ".tif", buf.getvalue()
    if kind == "L":
        im = Image.fromarray(grey)
    elif kind == "I;16":
        im = Image.frombytes("I;16", (7, 5), (grey.astype("<u2") * 257).tobytes())
    elif kind in ("RGB", "jpeg", "bmp", "gif"):
        im = Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], axis=-1))
    elif kind == "RGBA":
        im = Image.fromarray(np.stack([grey, grey, grey, 255 - grey], axis=-1), "RGBA")
    elif kind == "P":
        im = Image.fromarray(grey % 4).convert("P")
        im.putpalette([0, 0, 0, 80, 80, 80, 160, 20, 20, 250, 250, 250])
    elif kind == "LA":
        im = Image.fromarray(np.stack([grey, 255 - grey], axis=-1), "LA")
    elif kind == "1":
        im = Image.fromarray(grey > 100)
    else:
        raise ValueError(kind)
    fmt, suffix = {"jpeg": ("JPEG", ".jpg"), "bmp": ("BMP", ".bmp"), "gif": ("GIF", ".gif")}.get(
        kind, ("PNG", ".png")
    )
    im.save(buf, format=fmt)
    return suffix, buf.getvalue()


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        ctype = data[pos + 4 : pos + 8]
        chunks.append((ctype, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_chunk(ctype: bytes, body: bytes, good_crc: bool = True, length: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    if not good_crc:
        crc ^= 0x1
    return struct.pack(">I", len(body) if length is None else length) + ctype + body + struct.pack(">I", crc)


def _exif_orientation(value: int) -> bytes:
    """A minimal little-endian TIFF/Exif block holding one Orientation entry."""
    return (
        b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 0x0112, 3, 1, value & 0xFFFF) + b"\0\0\0\0"
    )


def _png_structured(data: bytes, c: Chooser) -> bytes:
    chunks = _png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        return data
    width, height, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    good_crc = c.boolean(85)
    op = c.choice(("dims", "dims", "bomb", "depth", "chunk", "idat", "exif", "drop", "text"))
    extra: list[bytes] = []
    if op == "dims":
        width = c.choice((0, 1, 7, 65535, 100000, 2**31 - 1, 2**32 - 1, width))
        height = c.choice((0, 1, 5, 65535, 100000, 2**31 - 1, 2**32 - 1, height))
    elif op == "bomb":
        # consistent header and image data that inflate to width*height bytes of zeros
        width, height = c.choice(((4000, 4000), (12000, 9000), (30000, 30000)))
        depth, colour, interlace = 8, 0, 0
        if width * height <= 16_000_000:
            raw = zlib.compress(b"\0" * ((width + 1) * height), 9)
            chunks = [(t, b) for t, b in chunks if t != b"IDAT"]
            chunks.insert(1, (b"IDAT", raw))
    elif op == "depth":
        depth = c.choice((0, 1, 2, 3, 4, 8, 16, 32, 255))
        colour = c.choice((0, 1, 2, 3, 4, 5, 6, 7, 255))
        comp, filt, interlace = c.choice((0, 1)), c.choice((0, 1)), c.choice((0, 1, 2))
    elif op == "chunk":
        extra.append(
            _png_chunk(
                c.choice((b"IHDR", b"IDAT", b"PLTE", b"tRNS", b"zzzz")),
                c.raw(64),
                good_crc,
                c.choice((None, 2**31 - 1, 0xFFFFFFFF)),
            )
        )
    elif op == "idat":
        chunks = [(t, (c.raw(128) if t == b"IDAT" else b)) for t, b in chunks]
    elif op == "exif":
        extra.append(
            _png_chunk(
                b"eXIf", _exif_orientation(c.choice((0, 1, 3, 6, 8, 9, 65535))) if c.boolean() else c.raw(40)
            )
        )
    elif op == "drop":
        drop = c.choice((b"IDAT", b"IEND", b"PLTE", b"IHDR"))
        chunks = [(t, b) for t, b in chunks if t != drop]
    elif op == "text":
        bomb = zlib.compress(b"A" * 5_000_000, 9)
        extra.append(_png_chunk(c.choice((b"zTXt", b"iCCP")), b"k\0\0" + bomb))
    ihdr = struct.pack(
        ">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, comp, filt, interlace
    )
    out = [_PNG_MAGIC, _png_chunk(b"IHDR", ihdr, good_crc)]
    out += extra
    out += [_png_chunk(t, b) for t, b in chunks[1:]]
    return b"".join(out)


def make_image(c: Chooser) -> tuple[str, bytes]:
    """A mutated image file: (suffix, bytes)."""
    kind = c.choice(_PNG_SEEDS)
    suffix, data = image_seed(kind)
    if suffix == ".png" and c.boolean(60):
        data = _png_structured(data, c)
    if c.boolean(50):
        data = mutate_bytes(data, c)
    return suffix, data


# ----------------------------------------------------------------------------------------------
# CSV
# ----------------------------------------------------------------------------------------------

_CSV_PATHS = (
    "a.png",
    "b.png",
    "c.png",
    "sub/d.png",
    "sub/../a.png",
    "../outside.png",
    "sub/../../outside.png",
    "/etc/hostname",
    "/dev/zero",
    "/proc/self/environ",
    "/",
    ".",
    "sub",
    "missing.png",
    "a.png\x00.txt",
    "x" * 5000,
    "~/a.png",
    "C:\\a.png",
    " a.png ",
    "a.png\n",
    "\u00e9.png",
    "sub/" * 200 + "a.png",
    "",
)
_CSV_LABELS = (
    *("0", "1", "0", "1", "nan", "inf", "1e400", "-0", ""),
    *("x\x00y", "a" * 200_000, "\u00e9", "0 ", '"1"'),
)
_CSV_SPLITS = ("train", "val", "test", "", "TRAIN", "bogus", "\x00")
_CSV_HEADERS = (
    "path,label",
    "path,label,patient_id,split",
    "label,path",
    "Path , LABEL",
    "path,label,path",
    "path",
    "label",
    "path,label,extra",
    "",
    "\ufeffpath,label",
    "path;label",
)


def make_csv(c: Chooser) -> tuple[str, bytes]:
    """A mutated labels CSV (for the image folder of :func:`csv_root`): (suffix, bytes)."""
    header = c.choice(_CSV_HEADERS)
    cols = [h.strip().lower().lstrip("\ufeff") for h in header.split(",")]
    lines = [header]
    for i in range(c.integer(0, 5)):
        cells = []
        for col in cols:
            if col == "path":
                cells.append(
                    c.choice(_CSV_PATHS) if c.boolean(40) else ("a.png", "b.png", "c.png", "sub/d.png")[i % 4]
                )
            elif col == "label":
                cells.append(c.choice(_CSV_LABELS) if c.boolean(40) else str(i % 2))
            elif col == "split":
                cells.append(c.choice(_CSV_SPLITS))
            else:
                cells.append(c.choice(("p1", "p2", "", "\x00", "p" * 1000)))
        if c.boolean(10):
            cells.append("extra")
        if c.boolean(15):
            cells = [f'"{x}"' for x in cells]
        lines.append(",".join(cells))
    text = c.choice(("\n", "\r\n", "\r")).join(lines) + c.choice(("\n", "", "\r\n"))
    data = text.encode(c.choice(("utf-8", "utf-8", "utf-8", "utf-16", "latin-1")), errors="replace")
    if c.boolean(30):
        data = mutate_bytes(data, c)
    return ".csv", data


_YAML_BASE = (
    "name: fuzz\n"
    "data:\n  source: {kind: medmnist, name: tinymnist}\n  size: 16\n"
    "model: {kind: cgan}\n"
    "train: {steps: 2, batch_size: 8}\n"
)
_YAML_PIECES = (
    "a: " + "[" * 200 + "]" * 200,
    "a: " + "{b: " * 100 + "1" + "}" * 100,
    "x: &x [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\ny: &y [*x, *x, *x, *x, *x, *x, *x, *x, *x, *x]\n"
    "z: &z [*y, *y, *y, *y, *y, *y, *y, *y, *y, *y]\nw: &w [*z, *z, *z, *z, *z, *z, *z, *z, *z, *z]\n"
    "v: [*w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w, *w]",
    "r: &r [1, *r]",
    "name: again",
    "data: {size: 99999999}",
    "data: {size: -3}",
    "train: {steps: .nan}",
    "train: !!python/object/apply:os.system [echo pwned]",
    "model: !!binary AAAA",
    "? [complex, key]\n: 1",
    "<<: *undefined",
    "%YAML 9.9\n---",
    "--- a\n--- b",
    "\t\tname: tabs",
    'name: "\\x00"',
)


def make_yaml(c: Chooser) -> tuple[str, bytes]:
    """A mutated run config: pieces that nest deeply, expand aliases, repeat keys, or run code."""
    lines = _YAML_BASE.splitlines()
    for _ in range(c.integer(0, 3)):
        lines.insert(c.integer(0, len(lines)), c.choice(_YAML_PIECES))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if c.boolean(30):
        data = mutate_bytes(data, c)
    return ".yaml", data


def csv_root(folder: Path) -> Path:
    """An image folder with a.png, b.png, c.png and sub/d.png (valid 4x4 grey PNGs); returns it."""
    from PIL import Image

    root = folder / "images"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("a.png", "b.png", "c.png", "sub/d.png")):
        p = root / name
        if not p.exists():
            Image.fromarray(np.full((4, 4), 40 * i + 10, np.uint8)).save(p)
    return root


# ----------------------------------------------------------------------------------------------
# The property
# ----------------------------------------------------------------------------------------------

MAKERS: dict[str, Callable[[Chooser], tuple[str, bytes]]] = {
    "dicom": lambda c: (".dcm", make_dicom(c)[1]),
    "nifti": make_nifti,
    "npz": make_npz,
    "png": make_image,
    "csv": make_csv,
    "yaml": make_yaml,
}


class PropertyViolation(AssertionError):
    """A reader crashed, hung, over-allocated, unpickled, or returned something insane."""


class CallTimeout(BaseException):
    """Raised by the alarm when one reader call runs past :data:`CALL_TIMEOUT_S` (a BaseException,
    so that a reader's ``except Exception`` cannot hide it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "setitimer") or os.name != "posix":
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise CallTimeout(f"reader call took longer than {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, _alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _memory_limit(budget: int) -> Iterator[None]:
    """Cap new address space at ``budget`` bytes (soft RLIMIT_AS) for the duration, where possible."""
    try:
        import resource
    except ImportError:  # not POSIX
        yield
        return
    current = _address_space()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if budget <= 0 or current is None:
        yield
        return
    limit = current + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _max_voxels() -> int:
    try:
        from medgan.io.limits import max_voxels
    except ImportError:  # replaying the corpus against a medgan from before the limit existed
        return 2**30
    return max_voxels()


def _sane_array(arr: Any, what: str, ndim: tuple[int, ...] | None = None) -> None:
    if not isinstance(arr, np.ndarray):
        raise PropertyViolation(f"{what}: returned {type(arr).__name__}, not an ndarray")
    if arr.dtype.hasobject:
        raise PropertyViolation(f"{what}: returned an object array")
    if ndim is not None and arr.ndim not in ndim:
        raise PropertyViolation(f"{what}: returned shape {arr.shape}, expected {ndim}-D")
    if arr.size > _max_voxels():
        raise PropertyViolation(f"{what}: returned {arr.size} values, more than the voxel limit")


def _sane_volume(vol: Any, what: str) -> None:
    _sane_array(vol.data, what, (4,))
    z, ch, h, w = vol.data.shape
    if min(z, h, w) < 1 or ch not in (1, 3) or vol.data.dtype != np.float32:
        raise PropertyViolation(f"{what}: volume of shape {vol.data.shape} / {vol.data.dtype}")
    if vol.mask is not None and vol.mask.shape != (z, h, w):
        raise PropertyViolation(f"{what}: mask shape {vol.mask.shape} for volume {vol.data.shape}")
    if len(vol.sources) != z or len(vol.slice_index) != z:
        raise PropertyViolation(f"{what}: {z} slices but {len(vol.sources)} sources")


def _sane_sliceset(ss: Any, what: str) -> None:
    _sane_array(ss.images, what, (4,))
    if len(ss.manifest) != ss.images.shape[0]:
        raise PropertyViolation(f"{what}: {ss.images.shape[0]} images but {len(ss.manifest)} manifest rows")
    if ss.images.size and not np.all(np.isfinite(ss.images)):
        raise PropertyViolation(f"{what}: non-finite pixels")
    if ss.images.size and (ss.images.min() < -1.0 - 1e-5 or ss.images.max() > 1.0 + 1e-5):
        raise PropertyViolation(f"{what}: pixels outside [-1, 1]")


@dataclass
class ReaderCall:
    """One reader applied to one fuzzed file."""

    label: str
    call: Callable[[], Any]
    check: Callable[[Any, str], None]
    names: tuple[str, ...]  # the error message must contain one of these


def _dicom_calls(path: Path, work: Path) -> list[ReaderCall]:
    from medgan.io.dicom import read_dicom_volumes

    folder = work / "series"
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    shutil.copyfile(path, target)
    sibling = folder / "sibling.dcm"
    if not sibling.exists():
        ds = dicom_seed("ct")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.10"
        ds.ImagePositionPatient = [-10.0, -20.0, 8.0]
        ds.InstanceNumber = 2
        sibling.write_bytes(_dicom_bytes(ds))
    ct_only = work / "ct"
    ct_only.mkdir(exist_ok=True)
    if not (ct_only / "ct.dcm").exists():
        (ct_only / "ct.dcm").write_bytes(_dicom_bytes(dicom_seed("ct")))

    def volumes(result: Any, what: str) -> None:
        if not isinstance(result, list) or not result:
            raise PropertyViolation(f"{what}: returned {result!r}, expected a non-empty list of volumes")
        for vol in result:
            _sane_volume(vol, what)

    name = path.name
    return [
        ReaderCall("read_dicom_volumes(file)", lambda: read_dicom_volumes(path), volumes, (name,)),
        ReaderCall(
            "read_dicom_volumes(folder)",
            lambda: read_dicom_volumes(folder),
            volumes,
            (name, folder.name, sibling.name),
        ),
        ReaderCall(
            "read_dicom_volumes(mask=SEG)", lambda: read_dicom_volumes(ct_only, mask=path), volumes, (name,)
        ),
        _source_call(path, work, (name,)),
    ]


def _nifti_calls(path: Path, work: Path) -> list[ReaderCall]:
    import nibabel as nib

    from medgan.io.dicom import read_dicom_volumes
    from medgan.io.nifti import read_case

    companion = work / "companion.nii.gz"
    if not companion.exists():
        nib.save(
            nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), np.eye(4)), str(companion)
        )
    ct_only = work / "ct"
    ct_only.mkdir(exist_ok=True)
    if not (ct_only / "ct.dcm").exists():
        (ct_only / "ct.dcm").write_bytes(_dicom_bytes(dicom_seed("ct")))
    name = path.name
    return [
        ReaderCall("read_case(image)", lambda: read_case(path), _sane_volume, (name,)),
        ReaderCall(
            "read_case(image, coronal, volume 1)",
            lambda: read_case(path, axis="coronal", volume_index=1),
            _sane_volume,
            (name,),
        ),
        ReaderCall("read_case(mask)", lambda: read_case(companion, path), _sane_volume, (name,)),
        ReaderCall(
            "read_dicom_volumes(mask=label volume)",
            lambda: read_dicom_volumes(ct_only, mask=path),
            lambda r, w: [_sane_volume(v, w) for v in r],
            (name,),
        ),
        _source_call(path, work, (name,)),
    ]


def _npz_calls(path: Path, work: Path) -> list[ReaderCall]:
    from medgan.io.medmnist import read_medmnist_npz
    from medgan.io.npz import read_npz

    def arrays(result: Any, what: str) -> None:
        if not isinstance(result, dict):
            raise PropertyViolation(f"{what}: returned {type(result).__name__}")
        for arr in result.values():
            _sane_array(arr, what)

    def splits(result: Any, what: str) -> None:
        for imgs, labs in result.values():
            _sane_array(imgs, what, (3, 4))
            _sane_array(labs, what, (1,))
            if labs.shape[0] != imgs.shape[0] or labs.dtype != np.int64:
                raise PropertyViolation(f"{what}: {imgs.shape[0]} images, labels {labs.shape} {labs.dtype}")

    name = path.name
    return [
        ReaderCall("read_npz", lambda: read_npz(path), arrays, (name,)),
        ReaderCall("read_medmnist_npz", lambda: read_medmnist_npz(path), splits, (name,)),
        _source_call(path, work, (name,)),
    ]


def _png_calls(path: Path, work: Path) -> list[ReaderCall]:
    from medgan.io.images import read_image

    def image(result: Any, what: str) -> None:
        _sane_array(result, what, (3,))
        if result.shape[0] not in (1, 3) or min(result.shape) < 1:
            raise PropertyViolation(f"{what}: image of shape {result.shape}")
        if result.dtype not in (np.uint8, np.uint16, np.int32, np.float32):
            raise PropertyViolation(f"{what}: image of dtype {result.dtype}")

    root = csv_root(work)
    listed = root / f"listed{path.suffix}"
    shutil.copyfile(path, listed)
    labels = root / "fuzz_labels.csv"
    labels.write_text(f"path,label\na.png,0\n{listed.name},1\n", encoding="utf-8")
    return [
        ReaderCall("read_image", lambda: read_image(path), image, (path.name,)),
        _source_call(labels, work, (listed.name,), label="load_source(labels CSV listing it)"),
    ]


def _csv_calls(path: Path, work: Path) -> list[ReaderCall]:
    import pandas as pd

    from medgan.io.images import read_labels_csv

    root = csv_root(work)
    target = root / path.name
    if target != path:
        shutil.copyfile(path, target)
    root_abs = root.absolute()

    def frame(result: Any, what: str) -> None:
        df, classes = result
        if not isinstance(df, pd.DataFrame) or not classes or len(set(classes)) != len(classes):
            raise PropertyViolation(f"{what}: returned {type(df).__name__}, classes {classes!r}")
        if len(df) and (df["label"].min() < 0 or df["label"].max() >= len(classes)):
            raise PropertyViolation(f"{what}: label index out of range")
        for p in df["path"]:
            if "\x00" in p:
                raise PropertyViolation(f"{what}: returned a path with a NUL byte")

    # an error may name the CSV or the listed file it is about (for instance "/etc/hostname: not an image")
    names = (
        path.name,
        *(str(p) for p in root.rglob("*.png")),
        "/etc/hostname",
        "/dev/zero",
        "/proc/self/environ",
    )
    return [
        ReaderCall("read_labels_csv", lambda: read_labels_csv(target, root_abs, None), frame, names),
        ReaderCall(
            "read_labels_csv(classes)", lambda: read_labels_csv(target, root_abs, ["0", "1"]), frame, names
        ),
        _source_call(target, work, names),
    ]


def _source_call(path: Path, work: Path, names: tuple[str, ...], label: str = "load_source") -> ReaderCall:
    """``medgan data inspect PATH``: the source layer (detect, config, reader, slicing) on the file."""
    from medgan.data.detect import source_from_spec
    from medgan.data.sources import load_source

    def run() -> Any:
        data = source_from_spec(str(path), work, data_options={"size": 8})
        return load_source(data, work)

    return ReaderCall(f"{label}({path.name})", run, _sane_sliceset, names)


def _yaml_calls(path: Path, work: Path) -> list[ReaderCall]:
    from medgan.config import RunConfig, load_config

    def config(result: Any, what: str) -> None:
        if not isinstance(result, RunConfig):
            raise PropertyViolation(f"{what}: returned {type(result).__name__}")

    return [ReaderCall("load_config", lambda: load_config(path), config, (path.name,))]


CALLS: dict[str, Callable[[Path, Path], list[ReaderCall]]] = {
    "dicom": _dicom_calls,
    "nifti": _nifti_calls,
    "npz": _npz_calls,
    "png": _png_calls,
    "csv": _csv_calls,
    "yaml": _yaml_calls,
}


def _check_error(exc: MedganError, call: ReaderCall) -> None:
    msg = str(exc)
    if "\n" in msg or "\r" in msg or len(msg.splitlines()) != 1 or msg != msg.strip():
        raise PropertyViolation(f"{call.label}: error message is not one line: {msg!r}")
    if not any(n and n in msg for n in call.names):
        raise PropertyViolation(
            f"{call.label}: error message does not name the file {call.names[0]}: {msg!r}"
        )
    if len(msg) > 2000:
        raise PropertyViolation(f"{call.label}: error message is {len(msg)} characters long")
    for inner in _chain(exc):
        if isinstance(inner, MemoryError):
            raise PropertyViolation(f"{call.label}: allocation beyond the memory budget ({msg})") from exc


def _quiet_libraries() -> None:
    """Silence the log lines and C++ warnings that libraries print for every broken file."""
    import logging

    for name in ("tifffile", "nibabel", "pydicom", "PIL"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.suppress(ImportError, AttributeError):
        import SimpleITK as sitk

        sitk.ProcessObject_SetGlobalWarningDisplay(False)


def check_file(fmt: str, path: Path, work: Path) -> list[str]:
    """Apply every reader of ``fmt`` to ``path`` and check the property; returns one outcome per call.

    ``work`` is a scratch folder for companion files. Raises :class:`PropertyViolation`.
    """
    _quiet_libraries()
    outcomes: list[str] = []
    for call in CALLS[fmt](path, work):
        UNPICKLED.clear()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                with _memory_limit(MEMORY_BUDGET), _time_limit(CALL_TIMEOUT_S):
                    result = call.call()
        except MedganError as exc:
            _check_error(exc, call)
            outcomes.append(f"{call.label}: {type(exc).__name__}")
        except CallTimeout as exc:
            raise PropertyViolation(f"{call.label}: hang ({exc})") from None
        except PropertyViolation:
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise PropertyViolation(f"{call.label}: crash {type(exc).__name__}: {exc}") from exc
        else:
            call.check(result, call.label)
            outcomes.append(f"{call.label}: loaded")
        if UNPICKLED:
            raise PropertyViolation(f"{call.label}: an object was unpickled from {path.name}")
    return outcomes


def fuzz_one(fmt: str, c: Chooser, work: Path) -> tuple[Path, list[str]]:
    """Make one mutated ``fmt`` file in ``work`` from the choices of ``c`` and check it."""
    suffix, data = MAKERS[fmt](c)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"fuzz{suffix}"
    path.write_bytes(data)
    return path, check_file(fmt, path, work)
