"""DICOM reader: files, multi-frame files and folders -> one :class:`~medgan.io.contract.Volume` per series.

Conventions (all in one place):

* **Files.** A folder is searched recursively; files of any name are tried. Files that are not
  DICOM (no ``DICM`` marker and no plausible raw DICOM start) are skipped quietly; a DICOM file
  that cannot be read or decoded raises :class:`~medgan.errors.InputError` naming that file.
  Non-image objects (SEG, RTSTRUCT, SR, PR, DICOMDIR, ...) are not images: in a folder they are
  left out quietly; a SEG is only used through ``mask``. An image file without pixel data is
  refused alone, skipped in a folder with a warning naming it (refused when nothing else is left).
* **Warnings.** Library warnings (pydicom's on invalid values, ...) are never printed: a refused
  file carries the first in its one-line error, a loaded one lists them in ``Volume.warnings``.
* **Series.** Image files are grouped by SeriesInstanceUID, volumes ordered by that UID. A series
  whose slices differ in ImageOrientationPatient is refused, naming the odd file.
* **Slice order.** Ascending ImagePositionPatient projected on the slice normal (row cosine x
  column cosine); without complete geometry by InstanceNumber; then by file name and frame.
  Ties keep InstanceNumber / file-name order (slices sharing a position are kept, with a
  warning). Every frame of a multi-frame file is one slice.
* **Intensities.** float32 after the modality transform (pydicom's ``apply_modality_lut``: the
  Modality LUT Sequence, else RescaleSlope / RescaleIntercept, also from the
  PixelValueTransformationSequence of enhanced files; HU for CT; RescaleSlope 0 is refused).
  MONOCHROME1 is inverted inside
  the range of representable values, ``y' = f(lo) + f(hi) - y`` with ``f`` the modality
  transform, so that higher is brighter; the file's window centre is mirrored the same way.
  The VOI transform is never applied to the pixels: a linear window (VOILUTFunction LINEAR or
  LINEAR_EXACT) is passed on as ``window_hint``; a SIGMOID window or a VOI LUT Sequence alone is
  not (a CT series gets a warning).
  Colour images (RGB, YBR converted to RGB by pydicom, PALETTE COLOR through its lookup table)
  have 3 channels.
* **Masks.** A DICOM SEG is mapped onto the slices it references (by SOPInstanceUID and frame,
  else by ImagePositionPatient and ImageOrientationPatient), in the series' Frame of Reference; a
  NIfTI / NRRD / MHA label volume is aligned through its geometry and the series' (see
  :mod:`medgan.io.masks`).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
)
from pydicom.valuerep import DSfloat

from medgan import __version__
from medgan.errors import InputError, with_library_warnings
from medgan.io.atomic import atomic_write_bytes
from medgan.io.contract import Volume, as_chw
from medgan.io.limits import check_claim
from medgan.io.masks import align_labels_to_slices
from medgan.io.nifti import read_array
from medgan.paths import require_regular_file
from medgan.progress import progress

__all__ = ["SyntheticDicomMeta", "read_dicom_volumes", "write_dicom"]

#: Suffixes of label volumes read with SimpleITK instead of as DICOM SEG.
LABEL_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_NON_IMAGE_MODALITIES = {
    "SEG",
    "RTSTRUCT",
    "RTPLAN",
    "RTRECORD",
    "SR",
    "KO",
    "PR",
    "REG",
    "FID",
    "RWV",
    "DOC",
}
_SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DEFER_SIZE = 64 * 1024  # pixel data of unselected files stays on disk until decoded
_PLUGIN_HINT = "install a pydicom pixel-data plugin such as pylibjpeg / pylibjpeg-openjpeg / python-gdcm"
_TS_NAMES = {  # newer transfer syntaxes pydicom may not name yet
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


@dataclass
class _Slice:
    """One 2-D image: a single-frame file or one frame of a multi-frame file."""

    path: Path
    ds: Dataset
    frame: int | None  # 0-based frame number in a multi-frame file, else None
    position: np.ndarray | None
    orientation: np.ndarray | None
    instance: int | None


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------


def read_dicom_volumes(
    path: Path,
    series: str | None = None,
    mask: Path | None = None,
    segments: list[int] | None = None,
) -> list[Volume]:
    """Read a DICOM file, multi-frame file or folder into one :class:`Volume` per series.

    ``series`` keeps only that SeriesInstanceUID. ``mask`` is a DICOM SEG (frames mapped onto
    the slices they reference; ``segments`` picks segment numbers, default all, union) or a
    NIfTI / NRRD / MHA label volume (``segments`` picks label values, default every label > 0)
    for a single series. With a SEG, only the series it references are returned. Volumes are
    ordered by SeriesInstanceUID; every problem with the input raises a one-line
    :class:`~medgan.errors.InputError` naming the file.
    """
    path = Path(path)
    if segments is not None and mask is None:
        raise InputError(path, "'segments' needs a mask (a DICOM SEG or a label volume)")
    slices, skipped = _image_slices(path)
    groups = _series_groups(slices)
    if series is not None:
        if series not in groups:
            raise InputError(path, f"series {series} not found; available: {_describe_series(groups)}")
        groups = {series: groups[series]}
    volumes = [_build_volume(uid, groups[uid]) for uid in sorted(groups)]
    _note_skipped(volumes, skipped, series)
    if mask is not None:
        mask = Path(mask)
        if _is_label_volume(mask):
            _attach_label_volume(volumes, mask, segments, path)
        else:
            volumes = _attach_seg(volumes, mask, segments, series)
    return volumes


# ----------------------------------------------------------------------------------------------
# Finding and reading files
# ----------------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A dataset written without preamble starts with a little-endian group 0002 or 0008 tag."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    elem = int.from_bytes(head[2:4], "little")
    return elem < 0x1000


def _read_header(f: Path) -> Dataset | None:
    """The dataset of ``f`` (large pixel data deferred), or None when ``f`` is not DICOM."""
    require_regular_file(f)  # a device, FIFO or socket (also behind a link) would block or never end
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(f, f"cannot read file ({exc.strerror or _short(exc)})") from None
    magic = len(head) == 132 and head[128:132] == b"DICM"
    if not magic and not _looks_like_raw_dicom(head):
        return None
    if magic:
        _check_meta_lengths(f)
    notes: list[str] = []
    with _caught(notes):  # pydicom warns about bad values as elements are decoded
        ds = _parse(f, magic, notes)
    if ds is not None:
        _notes(ds).extend(notes)
    return ds


def _parse(f: Path, magic: bool, notes: list[str]) -> Dataset | None:
    """Read and check the dataset of ``f`` (see :func:`_read_header`)."""
    try:
        ds, truncated = _dcmread(f, not magic, notes)
        if not magic:
            # forced read: accept only what clearly is a DICOM dataset
            if "SOPClassUID" not in ds and not any(k in ds for k in _PIXEL_KEYWORDS):
                return None
            _set_transfer_syntax(ds)
        if truncated:
            raise InputError(f, f"not a readable DICOM file (file is truncated: {truncated})")
        _check_truncated(ds, f)
        _convert_elements(ds.file_meta)
        _convert_elements(ds)
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        if not magic:
            return None
        raise InputError(f, f"not a readable DICOM file ({_short(exc)})") from None
    return ds


# Library warnings (pydicom's on invalid values, numpy's on overflow) are never printed: a refused
# file carries them in its one-line error, a loaded one in Volume.warnings (counted per message).
_NOTES = "_medgan_notes"  # attribute of a Dataset: the warnings caught while reading and decoding it


def _notes(ds: Dataset) -> list[str]:
    """The library warnings caught for ``ds`` so far (a list kept on the dataset)."""
    notes = getattr(ds, _NOTES, None)
    if notes is None:
        notes = []
        object.__setattr__(ds, _NOTES, notes)  # not a DICOM element
    return notes


def _warning_line(w: warnings.WarningMessage) -> str:
    """One warning as one short line: ``pydicom: <message>`` (or its category for other libraries)."""
    text = " ".join(str(w.message).split())
    text = text.split(" Please see <", 1)[0]  # pydicom's pointer to the table of value representations
    if len(text) > 160:
        text = text[:157] + "..."
    origin = "pydicom" if "pydicom" in Path(str(w.filename)).parts else w.category.__name__
    return f"{origin}: {text}"


def _with_notes(exc: InputError, notes: list[str]) -> InputError:
    """``exc`` with the first library warning (and how many more) appended to its one line."""
    message = str(exc)
    if with_library_warnings(message, notes) == message:
        return exc
    prefix = f"{exc.path}: "
    problem = message[len(prefix) :] if exc.path is not None and message.startswith(prefix) else message
    return InputError(exc.path, with_library_warnings(problem, notes))


@contextmanager
def _caught(notes: list[str]) -> Iterator[None]:
    """Collect the warnings raised inside the block into ``notes`` instead of printing them; an
    :class:`InputError` raised inside carries the first of them (see :func:`_with_notes`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except InputError as exc:
            notes.extend(_warning_line(w) for w in caught)
            raise _with_notes(exc, notes) from None
        notes.extend(_warning_line(w) for w in caught)


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _check_meta_lengths(f: Path) -> None:
    """The file meta group (0002) is read without deferring large values, so pydicom would allocate
    whatever length an element claims; refuse an element that runs past the end of the file."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        pos = 132
        while pos + 8 <= size:
            fh.seek(pos)
            head = fh.read(12)
            if len(head) < 8 or head[:2] != b"\x02\x00":
                return  # end of the meta group
            vr = head[4:6]
            if vr in _LONG_VRS:
                if len(head) < 12:
                    return
                length, start = int.from_bytes(head[8:12], "little"), pos + 12
            elif vr.isalpha() and vr.isupper():
                length, start = int.from_bytes(head[6:8], "little"), pos + 8
            else:  # implicit VR (a broken but readable meta group)
                length, start = int.from_bytes(head[4:8], "little"), pos + 8
            if length == _UNDEFINED_LENGTH:
                return  # pydicom reads up to the delimiter
            if start + length > size:
                raise InputError(
                    f, "not a readable DICOM file (file meta element runs past the end of the file)"
                )
            pos = start + length


def _dcmread(f: Path, force: bool, notes: list[str]) -> tuple[Dataset, str | None]:
    """``pydicom.dcmread`` and its end-of-file warning, if any (pydicom then drops what it read);
    its other warnings go to ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(f, force=force, defer_size=_DEFER_SIZE)
        if str(ds.file_meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian:
            # pydicom re-reads a deferred value from the file at its offset in the *inflated*
            # stream, which is garbage for a deflated file: read everything now instead
            ds = pydicom.dcmread(f, force=force)
    truncated = None
    for w in caught:
        text = str(w.message)
        if "end of file" in text.lower() or "truncated" in text.lower():
            truncated = truncated or text
        else:
            notes.append(_warning_line(w))
    return ds, truncated


def _convert_elements(ds: Dataset, depth: int = 0) -> None:
    """Decode every element now (pydicom decodes lazily, on first access), so that a bad value
    representation or a broken sequence raises here, inside the per-file error handling, rather than
    wherever the element is first used. Deferred pixel data is left on disk; other deferred values
    are read (they lie inside the file: :func:`_check_truncated` has checked the last one)."""
    if depth > 16:
        raise ValueError("sequences nested more than 16 deep")
    for tag in list(ds.keys()):
        if depth == 0 and int(tag) in _PIXEL_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _convert_elements(item, depth + 1)


def _set_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta: record the encoding pydicom detected, so pixels can be decoded."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_truncated(ds: Dataset, f: Path) -> None:
    """pydicom silently keeps the short value of an element cut off by the end of the file, and
    defers a long value without checking that the file holds it (elements need not be in tag order)."""
    tags = list(ds.keys())
    if not tags:
        raise InputError(f, "not a readable DICOM file (no data elements; truncated or empty)")
    deflated = str(ds.file_meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian
    size = f.stat().st_size
    for tag in tags:
        # keep_deferred: reading a deferred value would allocate the length its (maybe broken) header claims
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED_LENGTH:
            continue
        if raw.value is None:  # deferred: its value must lie inside the file
            short = not deflated and raw.value_tell + raw.length > size
        else:
            short = len(raw.value) < raw.length
        if short:
            if int(raw.tag) in _PIXEL_TAGS:
                raise InputError(f, "pixel data is truncated or corrupt")
            raise InputError(f, "not a readable DICOM file (file is truncated)")


def _sop_class(ds: Dataset) -> UID:
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or ""
    return UID(str(uid))


def _non_image_kind(ds: Dataset, f: Path) -> str | None:
    """None for an image; else what the object is (SEG, SR, ...). Raises for a truncated image."""
    sop = _sop_class(ds)
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in _NON_IMAGE_MODALITIES or str(sop) in _SEG_SOP_CLASSES:
        return modality or sop.name
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if "Image Storage" in sop.name:
            raise _no_pixels(f)
        return f"{sop.name or modality or 'DICOM'} object without pixel data"
    return None


def _no_pixels(f: Path) -> InputError:
    return InputError(f, "pixel data is missing (the file is truncated or corrupt)")


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(Path(root) / name for name in sorted(files))
    return out


def _image_slices(path: Path) -> tuple[list[_Slice], list[tuple[str, Path]]]:
    """Every image slice under ``path`` (a file or a folder), and the (SeriesInstanceUID, file) of
    the image files of a folder that were skipped for lacking pixel data."""
    if not path.exists():
        raise InputError(path, "file or folder not found")
    if path.is_dir():
        return _folder_slices(path)
    ds = _read_header(path)
    if ds is None:
        raise InputError(path, "not a DICOM file")
    kind = _non_image_kind(ds, path)
    if kind is not None:
        raise InputError(path, f"is a DICOM {kind}, not an image (a SEG goes in 'mask')")
    return _file_slices(path, ds), []


def _folder_slices(path: Path) -> tuple[list[_Slice], list[tuple[str, Path]]]:
    """:func:`_image_slices` of a folder: non-image objects are left out quietly; image files
    without pixel data are skipped (a warning names them) unless nothing else is left."""
    files = _walk(path)
    if not files:
        raise InputError(path, "folder is empty")
    slices: list[_Slice] = []
    skipped: list[tuple[str, Path]] = []
    n_dicom = 0
    for f in progress(files, f"scanning {path.name}"):
        ds = _read_header(f)
        if ds is None:
            continue
        n_dicom += 1
        try:
            kind = _non_image_kind(ds, f)
        except InputError:  # an image (by its SOP class) without pixel data: skipped, named later
            skipped.append((str(ds.get("SeriesInstanceUID", "") or ""), f))
            continue
        if kind is None:
            slices.extend(_file_slices(f, ds))
    if not slices and skipped:
        raise _no_pixels(skipped[0][1])
    if not slices:
        what = f"{n_dicom} DICOM non-image object(s) and " if n_dicom else ""
        raise InputError(path, f"no DICOM images found ({what}{len(files) - n_dicom} other file(s))")
    return slices, skipped


def _note_skipped(volumes: list[Volume], skipped: list[tuple[str, Path]], series: str | None) -> None:
    """A warning on each volume naming the image files of its series skipped for lacking pixel
    data; those of a series that was not read go to the first volume (unless one series was picked)."""
    by_series: dict[str, list[Path]] = defaultdict(list)
    for uid, f in skipped:
        known = any((v.series_uid or "") == uid for v in volumes)
        if known or series is None:
            by_series[uid if known else (volumes[0].series_uid or "")].append(f)
    for vol in volumes:
        files = by_series.pop(vol.series_uid or "", [])
        if files:
            names = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
            n = len(files)
            vol.warnings.append(f"skipped {n} image file{'s' if n > 1 else ''} without pixel data: {names}")


# ----------------------------------------------------------------------------------------------
# Header values (top level or enhanced functional groups)
# ----------------------------------------------------------------------------------------------


def _values(value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _floats(value: Any, n: int) -> np.ndarray | None:
    """``n`` finite floats from a DS / FD value, else None."""
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in _values(value)], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.size != n or not np.all(np.isfinite(arr)):
        return None
    return arr


def _first_float(value: Any) -> float | None:
    """The first value of a (possibly multi-valued) number, when finite."""
    if value is None:
        return None
    try:
        out = float(_values(value)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def _n_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _group_value(ds: Dataset, frame: int | None, seq: str, keyword: str) -> Any:
    """``keyword`` from functional group ``seq``: per-frame first, then shared; None if absent."""
    places = []
    index = 0 if frame is None else frame  # a single-frame enhanced file keeps its group in item 0
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and index < len(per):
        places.append(per[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        places.append(shared[0])
    for item in places:
        inner = item.get(seq)
        if inner:
            value = inner[0].get(keyword)
            if value is not None and value != "":
                return value
    return None


def _attr(ds: Dataset, frame: int | None, seq: str, keyword: str) -> Any:
    """A functional-group value, else the top-level attribute of the same name."""
    value = _group_value(ds, frame, seq, keyword)
    if value is None:
        value = ds.get(keyword)
    return None if value == "" else value


def _normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def _pixel_length(ds: Dataset) -> int | None:
    """Bytes of the pixel data element as its header states them (None when absent or of undefined length)."""
    for tag in _PIXEL_TAGS:
        if tag in ds:
            elem = ds.get_item(tag, keep_deferred=True)  # never read a deferred value just to measure it
            if isinstance(elem, RawDataElement):
                if elem.length != _UNDEFINED_LENGTH:
                    return int(elem.length)
                return None if elem.value is None else len(elem.value)
            value = elem.value
            return len(value) if isinstance(value, bytes | bytearray) else None
    return None


def _check_claim(f: Path, ds: Dataset) -> None:
    """Refuse, before anything is allocated, a header whose frames x rows x columns x samples are
    more values than :func:`~medgan.io.limits.max_voxels` or more than its pixel data can hold."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
    except (TypeError, ValueError) as exc:  # e.g. a multi-valued or non-numeric Rows
        raise InputError(f, f"not a readable DICOM file (bad image size: {_short(exc)})") from None
    frames = _n_frames(ds)
    if min(rows, cols, spp) < 1:
        raise InputError(
            f, f"the DICOM header gives an empty image size ({rows}x{cols}, {spp} sample(s) per pixel)"
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    channels = 3 if photometric == "PALETTE COLOR" else spp
    check_claim(f, (frames, rows, cols, channels), what="the DICOM header")
    # Bound the frames by the bytes that could hold them, so that a few header bytes cannot make
    # the reader loop over billions of frames before the decoder finds the data missing.
    length = _pixel_length(ds)
    if length is None:
        length = f.stat().st_size
    ts = _transfer_syntax(ds)
    if not ts.is_transfer_syntax or ts.is_compressed:
        if frames > max(1, length // 8):  # every compressed frame needs at least one 8-byte item
            raise InputError(
                f, f"the DICOM header claims {frames} frames but the pixel data holds {length} bytes"
            )
        return
    per_value = max(bits, 1) / 8 * (2 / 3 if photometric == "YBR_FULL_422" and spp == 3 else 1)
    check_claim(f, (frames, rows, cols, spp), what="the DICOM header", itemsize=per_value, available=length)


def _file_slices(f: Path, ds: Dataset) -> list[_Slice]:
    """The slices of one image file: one, or one per frame of a multi-frame file."""
    _check_claim(f, ds)
    try:
        n = _n_frames(ds)
        instance = ds.get("InstanceNumber")
        instance = int(instance) if instance not in (None, "") else None
        out = []
        offsets = _floats(ds.get("GridFrameOffsetVector"), n) if n > 1 else None
        for i in range(n):
            frame = i if n > 1 else None
            orient = _floats(_attr(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            pos = _floats(_group_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
            if pos is None:
                top = _floats(ds.get("ImagePositionPatient"), 3)
                if n == 1:
                    pos = top
                elif top is not None and offsets is not None and orient is not None:
                    pos = top + offsets[i] * _normal(orient)
            out.append(_Slice(f, ds, frame, pos, orient, instance))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f, f"not a readable DICOM file ({_short(exc)})") from None
    return out


# ----------------------------------------------------------------------------------------------
# Series assembly
# ----------------------------------------------------------------------------------------------


def _series_groups(slices: list[_Slice]) -> dict[str, list[_Slice]]:
    # Not GDCM's GetGDCMSeriesIDs: it reads one folder, not subfolders, and parses every file again.
    groups: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[str(s.ds.get("SeriesInstanceUID", "") or "")].append(s)
    return dict(groups)


def _describe_series(groups: dict[str, list[_Slice]]) -> str:
    return ", ".join(
        f"{uid or '(no SeriesInstanceUID)'} ({len(groups[uid])} slices)" for uid in sorted(groups)
    )


def _sort_slices(items: list[_Slice]) -> tuple[list[_Slice], np.ndarray | None, np.ndarray | None]:
    """Slices in ascending order along the normal (see module doc), their projections on it
    (None without complete geometry) and the series orientation."""
    items = sorted(items, key=lambda s: (str(s.path), -1 if s.frame is None else s.frame))
    instances = [s.instance for s in items]
    if all(i is not None for i in instances):
        order = sorted(range(len(items)), key=lambda k: instances[k])  # type: ignore[arg-type,return-value]
        items = [items[k] for k in order]
    orient = next((s.orientation for s in items if s.orientation is not None), None)
    positions = [s.position for s in items]
    if orient is None or any(p is None for p in positions):
        return items, None, orient
    normal = _normal(orient)
    proj = [float(np.dot(p, normal)) for p in positions]  # type: ignore[arg-type]
    order = sorted(range(len(items)), key=lambda k: proj[k])
    return [items[k] for k in order], np.asarray([proj[k] for k in order]), orient


def _check_sizes(items: list[_Slice], uid: str) -> tuple[int, int, int]:
    first = items[0]
    ref = _size(first)
    for s in items[1:]:
        size = _size(s)
        if size != ref:
            raise InputError(
                s.path,
                f"has a different size ({size[1]}x{size[2]}, {size[0]} channel(s)) from {first.path.name} "
                f"({ref[1]}x{ref[2]}, {ref[0]} channel(s)) in series {uid or '(no SeriesInstanceUID)'}",
            )
    return ref


def _size(s: _Slice) -> tuple[int, int, int]:
    try:
        spp = int(s.ds.get("SamplesPerPixel", 1) or 1)
        if str(s.ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
            spp = 3
        return spp, int(s.ds.Rows), int(s.ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(s.path, f"not a readable DICOM file ({_short(exc)})") from None


def _transfer_syntax(ds: Dataset) -> UID:
    ts = ds.file_meta.get("TransferSyntaxUID")
    return UID(str(ts)) if ts else ImplicitVRLittleEndian


def _plugin_hint(ts: UID) -> str:
    """What to install to decode ``ts``: the plugins pydicom lists as missing for it (GDCM's Python
    package is python-gdcm), else the general hint."""
    try:
        missing = get_decoder(ts).missing_dependencies
    except Exception:  # no decoder at all for this transfer syntax (or not one pydicom knows)
        return _PLUGIN_HINT
    options = [re.sub(r"^gdcm\b", "python-gdcm", m.split(" - requires ", 1)[-1]) for m in missing]
    return f"install {' or '.join(options)}" if options else _PLUGIN_HINT


def _no_decoder(f: Path, ts: UID, detail: str = "") -> InputError:
    name = _TS_NAMES.get(str(ts), ts.name)
    return InputError(f, f"cannot decode transfer syntax {name} ({ts}){detail}; {_plugin_hint(ts)}")


def _check_decoder(ds: Dataset, f: Path, ts: UID) -> None:
    """Refuse a compressed file that no installed pydicom plugin can decode, before decoding."""
    try:
        decoder = get_decoder(ts)
        available = decoder.is_available
    except NotImplementedError:
        available = False
    if not available:
        raise _no_decoder(f, ts)
    bits = _first_float(ds.get("BitsStored")) or 0
    if ts == JPEGExtended12Bit and bits > 8 and set(decoder.available_plugins) <= {"pillow"}:
        # Pillow's libjpeg is built for 8-bit samples only
        raise _no_decoder(f, ts, f" with {int(bits)}-bit samples (Pillow decodes only 8-bit JPEG)")


def _decode(ds: Dataset, f: Path) -> np.ndarray:
    """``ds.pixel_array`` with one-line errors for missing decoders and broken pixel data."""
    ts = _transfer_syntax(ds)
    if not ts.is_transfer_syntax:
        raise _no_decoder(f, ts)
    if ts.is_compressed:
        _check_decoder(ds, f, ts)
    try:
        return np.asarray(ds.pixel_array)
    except NotImplementedError:
        raise _no_decoder(f, ts) from None
    except Exception as exc:  # decoders raise many types for damaged data
        if isinstance(exc, RuntimeError) and "missing dependencies" in str(exc):
            raise _no_decoder(f, ts) from None
        raise InputError(f, f"pixel data is truncated or corrupt ({_short(exc)})") from None


def _as_frames(arr: np.ndarray, f: Path, n: int, rows: int, cols: int, spp: int) -> np.ndarray:
    """Decoded pixels as (frames, rows, cols, samples); a header that does not describe them raises."""
    if arr.size != n * rows * cols * spp:
        raise InputError(
            f,
            f"decoded pixel data has shape {tuple(arr.shape)}, not the {n} frame(s) of {rows}x{cols} "
            f"with {spp} sample(s) the header describes",
        )
    return arr.reshape(n, rows, cols, spp)


def _stored_range(ds: Dataset, arr: np.ndarray) -> tuple[float, float]:
    """Smallest and largest value the stored pixels can take."""
    if np.issubdtype(arr.dtype, np.floating):
        return float(np.nanmin(arr)), float(np.nanmax(arr))
    bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    slope = _first_float(_attr(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first_float(_attr(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _modality_lut(ds: Dataset, frame: int | None) -> Dataset:
    """The Modality LUT module of one frame, as pydicom's ``apply_modality_lut`` reads it: the file's
    Modality LUT Sequence, else RescaleSlope / RescaleIntercept from the frame's functional group or
    the top level, where a missing or unusable value is 1 / 0 (pydicom would skip a lone intercept)."""
    if ds.get("ModalityLUTSequence"):
        return ds
    slope, intercept = _rescale(ds, frame)
    out = Dataset()
    out.add_new(0x00281053, "FD", slope)  # RescaleSlope as FD: the float itself, no 16-character DS
    out.add_new(0x00281052, "FD", intercept)  # RescaleIntercept
    return out


def _to_modality(f: Path, ds: Dataset, frame: int | None, stored: np.ndarray) -> np.ndarray:
    """Stored values of one frame in modality units (HU for CT), float64."""
    lut = _modality_lut(ds, frame)
    if lut is not ds and float(lut.RescaleSlope) == 0.0:
        where = "" if frame is None else f" (frame {frame + 1})"
        raise InputError(f, f"RescaleSlope is 0{where}: every pixel would be the same value")
    try:
        return np.asarray(apply_modality_lut(stored, lut), dtype=np.float64)
    except Exception as exc:  # a broken LUT descriptor or LUT data
        raise InputError(f, f"cannot apply the modality LUT ({_short(exc)})") from None


def _file_pixels(f: Path, ds: Dataset) -> tuple[np.ndarray, str, list[float | None]]:
    """Decoded frames of a file: (F, C, H, W) float32 in modality units, stored dtype, and per
    frame the MONOCHROME1 mirror sum (the smallest plus the largest representable value in
    modality units; None when not inverted). Library warnings go to the dataset's notes."""
    with _caught(_notes(ds)):
        return _pixels_of(f, ds)


def _pixels_of(f: Path, ds: Dataset) -> tuple[np.ndarray, str, list[float | None]]:
    arr = _decode(ds, f)
    n = _n_frames(ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        try:
            arr = np.asarray(apply_color_lut(arr, ds))
        except Exception as exc:
            raise InputError(f, f"cannot apply the palette colour lookup table ({_short(exc)})") from None
    raw_dtype = arr.dtype.name
    spp = 3 if photometric == "PALETTE COLOR" else int(ds.get("SamplesPerPixel", 1) or 1)
    arr = np.moveaxis(_as_frames(arr, f, n, int(ds.Rows), int(ds.Columns), spp), -1, 1)
    out = np.empty(arr.shape, dtype=np.float32)
    sums: list[float | None] = []
    for i in range(n):
        frame = i if n > 1 else None
        mirror: float | None = None
        if spp == 1:
            values = _to_modality(f, ds, frame, arr[i])
            if photometric == "MONOCHROME1":
                ends = np.asarray(_stored_range(ds, arr[i])).astype(arr.dtype)
                mirror = float(_to_modality(f, ds, frame, ends).sum())
                values = mirror - values
            out[i] = values
        else:
            out[i] = arr[i]
        sums.append(mirror)
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        raise InputError(
            f,
            f"{bad} pixel value(s) are NaN or infinite (in the file or after RescaleSlope/Intercept or the Modality LUT)",
        )
    return out, raw_dtype, sums


def _window_hint(s: _Slice, mirror: float | None, uid: str) -> tuple[tuple[float, float] | None, str | None]:
    """The file's window as (center, width) in the volume's units, which intensity ``auto`` maps
    linearly onto [-1, 1] (for CT), and for a CT series a warning when the file's display transform
    is not such a window: VOILUTFunction SIGMOID (or unknown), or a VOI LUT Sequence alone. Those
    are not used (pixels stay in modality units; ``auto`` falls back to percentiles)."""
    # Only the window's numbers: pydicom's apply_voi_lut would change the pixels out of modality units.
    center = _first_float(_attr(s.ds, s.frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_float(_attr(s.ds, s.frame, "FrameVOILUTSequence", "WindowWidth"))
    function = str(_attr(s.ds, s.frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    ct = str(s.ds.get("Modality", "") or "").upper() == "CT"
    series = uid or "(no SeriesInstanceUID)"
    if center is None or width is None:
        if ct and _attr(s.ds, s.frame, "FrameVOILUTSequence", "VOILUTSequence"):
            return None, (
                f"series {series}: its display window is a VOI LUT Sequence (a lookup table, not a "
                "linear window) and is not used; intensity 'auto' uses percentiles (set a window to choose)"
            )
        return None, None
    if function not in ("LINEAR", "LINEAR_EXACT"):
        return None, (
            f"series {series}: its window C {center:g} / W {width:g} has VOILUTFunction {function} (not "
            f"linear) and is not used; intensity 'auto' uses percentiles (window: {{center: {center:g}, "
            f"width: {width:g}}} gives its linear counterpart)"
        ) if ct else None
    center = mirror - center if mirror is not None else center
    if not (width > 0 and abs(center) + width < 1e30):  # an absurd window is ignored, not used
        return None, None
    return (center, width), None


#: Slices closer than this along the slice normal (mm) are at the same position.
_SAME_POSITION_MM = 1e-3


def _check_orientation(items: list[_Slice], uid: str) -> None:
    """Refuse a series whose slices do not share one orientation (ImageOrientationPatient): it is
    not one stack of parallel slices. The odd slice is the one off the most common orientation."""
    oriented = [s for s in items if s.orientation is not None]
    if len(oriented) < 2:
        return
    counts = Counter(tuple(np.round(s.orientation, 3) + 0.0) for s in oriented)  # type: ignore[arg-type]
    common, n = counts.most_common(1)[0]
    for s in oriented:
        if not np.allclose(s.orientation, common, atol=1e-3):  # type: ignore[arg-type]
            frame = "" if s.frame is None else f"frame {s.frame + 1}: "
            raise InputError(
                s.path,
                f"{frame}orientation ({_cosines(s.orientation)}) differs from the ({_cosines(common)}) of "
                f"{n} other slice(s) in series {uid or '(no SeriesInstanceUID)'}; a series must be one "
                "stack of parallel slices (remove this file from the folder)",
            )


def _cosines(values: Any) -> str:
    return ", ".join(f"{float(v):.3g}" for v in values)


def _slice_name(s: _Slice) -> str:
    return s.path.name if s.frame is None else f"{s.path.name} frame {s.frame + 1}"


def _duplicate_positions(uid: str, items: list[_Slice], proj: np.ndarray | None) -> str | None:
    """A warning when slices of the series share a position along the normal (two acquisitions,
    echoes or phases in one series?). All are kept, in the sort order of the module doc."""
    if proj is None or len(proj) < 2:
        return None
    groups: list[list[int]] = []  # runs of slices at one position, in sorted order
    for k in np.flatnonzero(np.abs(np.diff(proj)) <= _SAME_POSITION_MM):
        if groups and groups[-1][-1] == k:
            groups[-1].append(int(k) + 1)
        else:
            groups.append([int(k), int(k) + 1])
    if not groups:
        return None
    first = groups[0]
    names = ", ".join(_slice_name(items[i]) for i in first[:3]) + (", ..." if len(first) > 3 else "")
    at = f"position {proj[first[0]]:g} mm along the slice normal ({names})"
    where = at if len(groups) == 1 else f"{len(groups)} positions, the first at {at}"
    order = "InstanceNumber" if all(s.instance is not None for s in items) else "file-name"
    return (
        f"series {uid or '(no SeriesInstanceUID)'}: {sum(len(g) for g in groups)} slices share {where}; "
        f"kept all, in {order} order (two acquisitions in one series?)"
    )


def _library_warnings(items: list[_Slice]) -> list[str]:
    """The library warnings caught for the series' files: one line per message, naming its files."""
    files: dict[str, list[str]] = {}
    for path, ds in {s.path: s.ds for s in items}.items():
        for line in dict.fromkeys(_notes(ds)):
            files.setdefault(line, []).append(path.name)
    out = []
    for line, names in files.items():
        more = ", ..." if len(names) > 2 else ""
        where = names[0] if len(names) == 1 else f"{len(names)} files ({', '.join(names[:2])}{more})"
        out.append(f"{where}: {line}")
    return out


def _build_volume(uid: str, items: list[_Slice]) -> Volume:
    """Sort, decode and stack the slices of one series."""
    _, rows, cols = _check_sizes(items, uid)
    _check_orientation(items, uid)
    items, proj, orientation = _sort_slices(items)
    decoded: dict[Path, tuple[np.ndarray, str, list[float | None]]] = {}
    data = None
    for z, s in enumerate(items):
        if s.path not in decoded:
            decoded[s.path] = _file_pixels(s.path, s.ds)
        frames = decoded[s.path][0]
        if data is None:
            data = np.empty((len(items), frames.shape[1], rows, cols), dtype=np.float32)
        data[z] = frames[0 if s.frame is None else s.frame]
    assert data is not None
    first = items[0]
    ds = first.ds
    first_pixels = decoded[first.path]
    positions = np.stack([s.position for s in items]) if proj is not None else None  # type: ignore[misc]
    spacing_v = _floats(_attr(ds, first.frame, "PixelMeasuresSequence", "PixelSpacing"), 2)
    if spacing_v is None:
        spacing_v = _floats(ds.get("ImagerPixelSpacing"), 2)
    thickness = _first_float(_attr(ds, first.frame, "PixelMeasuresSequence", "SliceThickness"))
    if proj is not None and len(proj) > 1:
        steps = np.abs(np.diff(proj))
        steps = steps[steps > 1e-6]
        if steps.size:
            thickness = round(float(np.median(steps)), 6)
    patient = ds.get("PatientID")
    modality = ds.get("Modality")
    hint, voi_note = _window_hint(first, first_pixels[2][0 if first.frame is None else first.frame], uid)
    notes = [_duplicate_positions(uid, items, proj), voi_note, *_library_warnings(items)]
    return Volume(
        data=data,
        source_format="dicom",
        sources=[str(s.path) for s in items],
        slice_index=list(range(len(items))),
        patient_id=str(patient) if patient else "",
        positions=positions,
        orientation=orientation,
        spacing=None if spacing_v is None else (float(spacing_v[0]), float(spacing_v[1])),
        thickness=thickness,
        modality=str(modality) if modality else None,
        series_uid=uid or None,
        sop_uids=[str(s.ds.get("SOPInstanceUID")) if s.ds.get("SOPInstanceUID") else None for s in items],
        frames=[s.frame for s in items],
        window_hint=hint,
        raw_dtype=first_pixels[1],
        warnings=[n for n in notes if n],
    )


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------


def _is_label_volume(mask: Path) -> bool:
    name = mask.name.lower()
    return any(name.endswith(sfx) for sfx in LABEL_VOLUME_SUFFIXES)


#: RAS (nibabel's world) -> LPS (DICOM's patient coordinates).
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _attach_label_volume(volumes: list[Volume], mask: Path, segments: list[int] | None, path: Path) -> None:
    """A NIfTI / NRRD / MHA label volume for the single series, aligned through both geometries."""
    if len(volumes) != 1:
        raise InputError(
            mask,
            f"a label volume needs exactly one series, but {path} has {len(volumes)}; pick one with 'series'",
        )
    vol = volumes[0]
    if not mask.is_file():
        raise InputError(mask, "mask file not found")
    labels, ras_affine, _ = read_array(mask)  # (x, y, z); header checked against the voxel limit first
    while labels.ndim > 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim == 2:
        labels = labels[:, :, None]
    if labels.ndim != 3:
        raise InputError(
            mask,
            f"label volume has shape {tuple(labels.shape)} of {labels.dtype}; expected 3-D integer labels",
        )
    present = None
    if segments is not None:
        present = np.unique(labels)
        present = present[present != 0]
        unknown = sorted(set(segments) - {int(v) for v in present})
        if unknown:
            avail = ", ".join(str(int(v)) for v in present[:20]) or "none"
            raise InputError(mask, f"unknown label value(s) {unknown}; available: {avail}")
    on_series = _label_volume_on_series(vol, labels, _RAS_TO_LPS @ ras_affine, mask)
    binary = on_series > 0 if segments is None else np.isin(on_series, segments)
    vol.mask = binary.astype(np.uint8)
    vol.mask_source = str(mask)


def _label_volume_on_series(
    vol: Volume, labels: np.ndarray, lps_affine: np.ndarray, mask: Path
) -> np.ndarray:
    """Labels (x, y, z) with their LPS affine as (Z, rows, cols) on the series' slices; without the
    series' geometry, in stored order (ITK's order for a DICOM series) with a named warning."""
    rows, cols = vol.data.shape[2:]
    if vol.positions is None or vol.orientation is None or vol.spacing is None:
        stored = np.ascontiguousarray(np.transpose(labels))  # (z, y, x)
        expected = (vol.data.shape[0], rows, cols)
        if stored.shape != expected:
            raise InputError(mask, f"mask shape {tuple(stored.shape)} does not match image shape {expected}")
        vol.warnings.append(
            f"mask {mask.name}: the series has no complete geometry (position, orientation, pixel spacing); "
            "the label volume is used in its stored voxel order"
        )
        return stored
    row_dir, col_dir = vol.orientation[:3], vol.orientation[3:]
    out, note = align_labels_to_slices(
        labels,
        lps_affine,
        vol.positions,
        row_step=vol.spacing[0] * col_dir,  # from one row to the next: down a column
        col_step=vol.spacing[1] * row_dir,
        shape=(rows, cols),
        mask=mask,
        image=f"series {vol.series_uid or Path(vol.sources[0]).parent.name}",
    )
    if note:
        vol.warnings.append(note)
    return out


def _read_seg(mask: Path) -> Dataset:
    if not mask.is_file():
        raise InputError(mask, "mask file not found")
    ds = _read_header(mask)
    if ds is None:
        raise InputError(mask, f"not a DICOM SEG nor a label volume ({', '.join(LABEL_VOLUME_SUFFIXES)})")
    modality = str(ds.get("Modality", "") or "")
    if modality != "SEG" and str(_sop_class(ds)) not in _SEG_SOP_CLASSES:
        raise InputError(
            mask, f"is a DICOM {modality or _sop_class(ds).name} object, not a segmentation (SEG)"
        )
    _check_claim(mask, ds)
    return ds


def _seg_frames(seg: Dataset, mask: Path, selected: set[int]) -> np.ndarray:
    """SEG frames as (F, rows, cols) bool, True where the frame's segment is selected and set."""
    arr = _decode(seg, mask)
    n = _n_frames(seg)
    arr = _as_frames(arr, mask, n, int(seg.get("Rows", 0) or 0), int(seg.get("Columns", 0) or 0), 1)[..., 0]
    kind = str(seg.get("SegmentationType", "BINARY")).upper()
    if kind == "FRACTIONAL":
        top = _first_float(seg.get("MaximumFractionalValue")) or 255.0
        return arr > 0.5 * top
    if kind == "LABELMAP":
        return np.isin(arr, sorted(selected))
    return arr > 0


def _seg_segment(seg: Dataset, frame: int, numbers: list[int]) -> int | None:
    value = _group_value(seg, frame, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
    if value is None:
        return numbers[0] if len(numbers) == 1 else None
    return int(_first_float(value) or 0)


def _seg_reference(seg: Dataset, frame: int) -> tuple[str | None, list[int] | None]:
    """Referenced source SOPInstanceUID and 0-based frame numbers of one SEG frame."""
    per = seg.get("PerFrameFunctionalGroupsSequence")
    if not per or frame >= len(per):
        return None, None
    for group in (per[frame].get("DerivationImageSequence") or [])[:1]:
        for src in (group.get("SourceImageSequence") or [])[:1]:
            uid = src.get("ReferencedSOPInstanceUID")
            ref = src.get("ReferencedFrameNumber")
            frames = None
            if ref not in (None, ""):
                frames = [int(v) - 1 for v in _values(ref)]
            return (str(uid) if uid else None), frames
    return None, None


def _match_frame(
    vol: Volume,
    by_sop: dict[str, list[int]],
    frame: _SegFrame,
    by_position: bool = True,
) -> list[int]:
    """Slices of ``vol`` one SEG frame belongs to: by SOPInstanceUID (and frame), else, when
    ``by_position``, by ImagePositionPatient on a slice of the same ImageOrientationPatient."""
    frames = vol.frames or [None] * vol.data.shape[0]
    uid, ref_frames, pos = frame.uid, frame.ref_frames, frame.position
    if uid is not None and uid in by_sop:
        cands = by_sop[uid]
        if ref_frames is not None:
            cands = [i for i in cands if (frames[i] if frames[i] is not None else 0) in ref_frames]
        if len(cands) == 1 or (ref_frames is not None and cands):
            return cands
    if not by_position or pos is None or vol.positions is None:
        return []
    if not _seg_same_orientation(frame.orientation, vol.orientation):
        return []  # a plane through the same corner point, cut another way
    step = min(vol.spacing) if vol.spacing else 1.0
    dist = np.linalg.norm(vol.positions - pos[None, :], axis=1)
    return [int(i) for i in np.flatnonzero(dist <= 1e-3 * step)]


@dataclass
class _SegFrame:
    """Where one SEG frame lies: its referenced image and its plane."""

    uid: str | None  # referenced SOPInstanceUID
    ref_frames: list[int] | None  # referenced 0-based frame numbers
    position: np.ndarray | None  # ImagePositionPatient
    orientation: np.ndarray | None  # ImageOrientationPatient
    spacing: np.ndarray | None  # PixelSpacing (between rows, between columns)


@dataclass
class _SegFrames:
    """The frames of a DICOM SEG and what each one is about."""

    pixels: np.ndarray  # (F, rows, cols) bool: set (LABELMAP: one of the selected labels)
    frames: list[_SegFrame]
    segments: list[int | None]  # segment number of each frame (None: unknown)
    selected: set[int]
    labelmap: bool
    frame_of_reference: str | None  # the SEG's FrameOfReferenceUID


def _seg_labels(seg: Dataset, mask: Path) -> dict[int, str]:
    """SegmentNumber -> SegmentLabel of every segment the SEG describes."""
    try:
        labels: dict[int, str] = {}
        for item in seg.get("SegmentSequence") or []:
            if item.get("SegmentNumber") is not None:
                labels[int(item.SegmentNumber)] = str(item.get("SegmentLabel", "") or "")
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(mask, f"not a readable DICOM SEG (bad SegmentSequence: {_short(exc)})") from None
    return labels


def _seg_frame(seg: Dataset, i: int) -> _SegFrame:
    uid, ref_frames = _seg_reference(seg, i)
    return _SegFrame(
        uid,
        ref_frames,
        _floats(_group_value(seg, i, "PlanePositionSequence", "ImagePositionPatient"), 3),
        _floats(_attr(seg, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
        _floats(_group_value(seg, i, "PixelMeasuresSequence", "PixelSpacing"), 2),
    )


def _seg_table(seg: Dataset, mask: Path, segments: list[int] | None) -> _SegFrames:
    """Decode the SEG's frames and read, per frame, its reference, plane and segment."""
    labels = _seg_labels(seg, mask)
    numbers = sorted(labels)
    if segments is not None:
        unknown = sorted(set(segments) - set(numbers))
        if unknown:
            avail = ", ".join(f"{k} ({labels[k] or 'no label'})" for k in numbers) or "none"
            raise InputError(mask, f"unknown segment number(s) {unknown}; available: {avail}")
    selected = set(numbers if segments is None else segments)
    pixels = _seg_frames(seg, mask, selected)
    n = pixels.shape[0]
    try:
        frames = [_seg_frame(seg, i) for i in range(n)]
        segs = [_seg_segment(seg, i, numbers) for i in range(n)]
    except (TypeError, ValueError, AttributeError, IndexError) as exc:  # malformed functional groups
        raise InputError(
            mask, f"not a readable DICOM SEG (bad per-frame references: {_short(exc)})"
        ) from None
    labelmap = str(seg.get("SegmentationType", "BINARY")).upper() == "LABELMAP"
    frame_of_reference = str(seg.get("FrameOfReferenceUID", "") or "") or None
    return _SegFrames(pixels, frames, segs, selected, labelmap, frame_of_reference)


def _seg_same_orientation(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Two ImageOrientationPatient values agree (or one is unknown)."""
    return a is None or b is None or bool(np.allclose(a, b, atol=1e-4))


def _seg_check_frame(vol: Volume, table: _SegFrames, i: int, mask: Path) -> None:
    """A SEG frame on ``vol``'s slices must have their pixel grid: size, spacing and orientation."""
    rows, cols = table.pixels.shape[1:]
    series = vol.series_uid
    if (rows, cols) != tuple(vol.data.shape[2:]):
        raise InputError(
            mask,
            f"SEG frame size {rows}x{cols} is different from the image size "
            f"{vol.data.shape[2]}x{vol.data.shape[3]} of series {series}",
        )
    frame = table.frames[i]
    if (
        frame.spacing is not None
        and vol.spacing is not None
        and not np.allclose(frame.spacing, vol.spacing, rtol=1e-3)
    ):
        raise InputError(
            mask,
            f"SEG pixel spacing {frame.spacing[0]:g}x{frame.spacing[1]:g} mm is different from the image's "
            f"{vol.spacing[0]:g}x{vol.spacing[1]:g} mm (series {series})",
        )
    theirs, ours = frame.orientation, vol.orientation
    if theirs is not None and ours is not None and not _seg_same_orientation(theirs, ours):
        a, b = (" ".join(f"{float(v):.4g}" for v in o) for o in (theirs, ours))
        raise InputError(
            mask, f"SEG frame {i + 1} orientation ({a}) is different from the image's ({b}) (series {series})"
        )


def _seg_volume_mask(
    vol: Volume, table: _SegFrames, mask: Path, claimed: set[str], same_frame_of_reference: bool = True
) -> np.ndarray | None:
    """The mask the SEG gives ``vol`` as (Z, rows, cols) uint8; None when no SEG frame is on it.

    A frame referencing an image of ``claimed`` (the SOPInstanceUIDs of every series read) goes
    only there; frames are placed by position only in the same Frame of Reference."""
    by_sop: dict[str, list[int]] = defaultdict(list)
    for i, uid in enumerate(vol.sop_uids or []):
        if uid is not None:
            by_sop[uid].append(i)
    out = np.zeros((vol.data.shape[0], *vol.data.shape[2:]), dtype=np.uint8)
    matched = False
    for i, frame in enumerate(table.pixels):
        ref = table.frames[i]
        by_position = same_frame_of_reference and (ref.uid is None or ref.uid not in claimed)
        targets = _match_frame(vol, by_sop, ref, by_position)
        if not targets:
            continue
        matched = True
        _seg_check_frame(vol, table, i, mask)
        if table.labelmap or table.segments[i] in table.selected:
            out[targets] |= frame.astype(np.uint8)
    return out if matched else None


def _seg_series_frame_of_reference(vol: Volume) -> str | None:
    """The FrameOfReferenceUID of a series (from its first file), None when it has none."""
    if not vol.sources:
        return None
    ds = _read_header(Path(vol.sources[0]))
    return None if ds is None else (str(ds.get("FrameOfReferenceUID", "") or "") or None)


# Own mapping, not highdicom's Segmentation: it refuses SEGs without coded segment properties, a
# DimensionIndexSequence or a ReferencedSeriesSequence (older tools write such files, and the tests
# pin them), and it cannot place frames that reference no source image by their position.
def _attach_seg(
    volumes: list[Volume], mask: Path, segments: list[int] | None, series: str | None
) -> list[Volume]:
    """Map a DICOM SEG onto the series it references; returns those volumes.

    Where both the SEG and a series carry a FrameOfReferenceUID and they differ, the SEG's
    positions mean nothing there: a frame referencing one of its images is refused, and no
    frame is placed on it by position."""
    table = _seg_table(_read_seg(mask), mask, segments)
    claimed = {uid for vol in volumes for uid in (vol.sop_uids or []) if uid is not None}
    kept: list[Volume] = []
    other_frames: list[tuple[Volume, str]] = []
    for vol in volumes:
        theirs = _seg_series_frame_of_reference(vol) if table.frame_of_reference else None
        same = theirs is None or theirs == table.frame_of_reference
        out = _seg_volume_mask(vol, table, mask, claimed, same)
        if out is not None and not same:
            raise _seg_other_frame(mask, table, vol, theirs)
        if not same:
            other_frames.append((vol, str(theirs)))
        if out is not None:
            vol.mask = out
            vol.mask_source = str(mask)
            kept.append(vol)
    if not kept and other_frames:
        raise _seg_other_frame(mask, table, *other_frames[0])
    if not kept:
        which = f"series {series}" if series else ", ".join(str(v.series_uid) for v in volumes)
        raise InputError(mask, f"SEG references no slice of the series ({which})")
    return kept


def _seg_other_frame(mask: Path, table: _SegFrames, vol: Volume, theirs: str | None) -> InputError:
    return InputError(
        mask,
        f"SEG FrameOfReferenceUID {table.frame_of_reference} is different from {theirs} of series "
        f"{vol.series_uid}: its positions are in another coordinate system",
    )


# ----------------------------------------------------------------------------------------------
# Writing synthetic DICOM
# ----------------------------------------------------------------------------------------------

#: Fixed implementation identity of files medgan writes (a UUID-derived UID, so no org root is needed).
MEDGAN_IMPLEMENTATION_UID = "2.25.285642182881148487020895657601053598530"
#: ImplementationVersionName (SH, at most 16 characters).
MEDGAN_IMPLEMENTATION_VERSION = f"MEDGAN_{__version__}"[:16]

SYNTHETIC_PATIENT_NAME = "SYNTHETIC^MEDGAN"
SYNTHETIC_PATIENT_ID = "SYNTHETIC"
SYNTHETIC_COMMENT = "Synthetic image generated by medgan; not a real patient"

_GREY_BITS = 12
_DATETIME = re.compile(r"\d{14}")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


@dataclass(frozen=True)
class SyntheticDicomMeta:
    """Identity and annotations of one synthetic DICOM image (see :func:`write_dicom`).

    UIDs must be freshly generated for the synthetic output (never copied from real data).
    ``spacing`` is (row, column) in mm; ``intensity`` the raw interval ``(lo, hi)`` that was
    mapped onto [-1, 1] (e.g. an HU window); ``derivation`` describes how the image was made
    (model, checkpoint sha256, seed); ``content_datetime`` is ``YYYYMMDDHHMMSS``, chosen by
    the caller (the same for a whole run); ``source_images`` are the
    (ReferencedSOPClassUID, ReferencedSOPInstanceUID) of real source slices (image translation).
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int
    series_number: int = 1
    modality: str = "OT"
    spacing: tuple[float, float] | None = None
    intensity: tuple[float, float] | None = None
    derivation: str = ""
    series_description: str = "medgan synthetic"
    content_datetime: str = "20260101000000"
    source_images: tuple[tuple[str, str], ...] = ()


def _check_uid(value: str, what: str) -> str:
    text = str(value)
    if len(text) > 64 or not _UID.fullmatch(text):
        raise ValueError(f"{what} {value!r} is not a valid DICOM UID")
    return text


def _ds(value: float) -> DSfloat:
    """A decimal string of at most 16 characters."""
    return DSfloat(float(value), auto_format=True)


def _check_meta(meta: SyntheticDicomMeta) -> None:
    for what, uid in (
        ("study_uid", meta.study_uid),
        ("series_uid", meta.series_uid),
        ("sop_uid", meta.sop_uid),
    ):
        _check_uid(uid, what)
    for cls, inst in meta.source_images:
        _check_uid(cls, "source ReferencedSOPClassUID")
        _check_uid(inst, "source ReferencedSOPInstanceUID")
    if not _DATETIME.fullmatch(meta.content_datetime or ""):
        raise ValueError(f"content_datetime must be YYYYMMDDHHMMSS, got {meta.content_datetime!r}")
    if not re.fullmatch(r"[A-Z0-9_ ]{1,16}", meta.modality or ""):
        raise ValueError(f"modality must be a DICOM modality code such as OT or CT, got {meta.modality!r}")
    for what, n in (("instance_number", meta.instance_number), ("series_number", meta.series_number)):
        if int(n) != n or not 1 <= int(n) < 2**31:
            raise ValueError(f"{what} must be a positive 32-bit integer, got {n!r}")
    if meta.spacing is not None and (
        len(meta.spacing) != 2 or not all(np.isfinite(v) and v > 0 for v in meta.spacing)
    ):
        raise ValueError(f"spacing must be (row, column) positive millimetres, got {meta.spacing}")
    if meta.intensity is not None:
        lo, hi = (float(v) for v in meta.intensity)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"intensity must be (lo, hi) with lo < hi, got {meta.intensity}")


def _pixels(image: np.ndarray) -> np.ndarray:
    """A generated slice as float64 (C, H, W) (see :func:`~medgan.io.contract.as_chw`), within DICOM's size limit."""
    arr = as_chw(image)
    if arr.shape[1] > 65535 or arr.shape[2] > 65535:
        raise ValueError(f"image of {arr.shape[1]}x{arr.shape[2]} pixels is too large for DICOM")
    return arr


def _stored_pixels(arr: np.ndarray) -> np.ndarray:
    """A (C, H, W) slice in [-1, 1] as stored values: 12-bit grey (H, W) uint16, or 8-bit RGB (H, W, 3)."""
    if arr.shape[0] == 1:
        top = 2**_GREY_BITS - 1
        return np.clip(np.rint((arr[0] + 1.0) / 2.0 * top), 0, top).astype(np.uint16)
    stored8 = np.clip(np.rint((arr + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(stored8, 0, -1))


def _grey_luts(ds: Dataset, meta: SyntheticDicomMeta) -> None:
    """12-bit grey: BitsStored, the Modality LUT back to raw units and a window over them."""
    top = 2**_GREY_BITS - 1
    ds.BitsStored, ds.HighBit = _GREY_BITS, _GREY_BITS - 1
    if meta.intensity is not None:
        lo, hi = (float(v) for v in meta.intensity)
        ds.WindowCenter = _ds((lo + hi) / 2.0)
        ds.WindowWidth = _ds(hi - lo)
        ds.RescaleIntercept = _ds(lo)
        ds.RescaleSlope = _ds((hi - lo) / top)
        ds.RescaleType = "HU" if meta.modality == "CT" else "US"
    else:
        ds.WindowCenter = _ds((top + 1) / 2.0)
        ds.WindowWidth = _ds(top + 1)


def _synthetic_dataset(arr: np.ndarray, meta: SyntheticDicomMeta) -> Dataset:
    from highdicom.sc import SCImage  # imported here: reading DICOM does not need it

    date, time = meta.content_datetime[:8], meta.content_datetime[8:]
    grey = arr.shape[0] == 1
    ds = SCImage(
        pixel_array=_stored_pixels(arr),
        photometric_interpretation="MONOCHROME2" if grey else "RGB",
        bits_allocated=16 if grey else 8,
        coordinate_system="PATIENT",
        study_instance_uid=meta.study_uid,
        series_instance_uid=meta.series_uid,
        series_number=int(meta.series_number),
        sop_instance_uid=meta.sop_uid,
        instance_number=int(meta.instance_number),
        manufacturer="medgan",
        # Patient: a fixed marker, never real data
        patient_id=SYNTHETIC_PATIENT_ID,
        patient_name=SYNTHETIC_PATIENT_NAME,
        accession_number="",
        study_id="MEDGAN",
        study_date=date,
        study_time=time,
        referring_physician_name="",
        pixel_spacing=None if meta.spacing is None else (float(meta.spacing[0]), float(meta.spacing[1])),
        patient_orientation=("L", "P"),  # required by highdicom; emptied below
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=meta.series_description[:64],
        manufacturer_model_name="medgan",
        software_versions=__version__,
        content_date=date,
        content_time=time,
        series_date=date,
        series_time=time,
        specific_character_set="ISO_IR 192",
    )
    # Below: what SCImage cannot express, set on the dataset it returns.
    # medgan's implementation identity, not highdicom's
    ds.file_meta.ImplementationClassUID = MEDGAN_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = MEDGAN_IMPLEMENTATION_VERSION
    # SCImage stamps the clock time here; medgan's files carry only content_datetime (same input, same bytes)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    if "ContributingEquipmentSequence" in ds:  # highdicom's entry for itself holds the clock time
        del ds.ContributingEquipmentSequence
    # synthetic markers: SCImage fixes ImageType DERIVED\SECONDARY\OTHER, ConversionType DI, Modality OT
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "SYN"
    ds.Modality = meta.modality
    ds.ImageComments = SYNTHETIC_COMMENT
    if meta.derivation:
        ds.DerivationDescription = meta.derivation[:1024]
    if meta.source_images:
        ds.SourceImageSequence = Sequence([_source_item(cls, inst) for cls, inst in meta.source_images])
    ds.PatientOrientation = ""  # SCImage needs an orientation; a generated image has none
    # type-2 and optional attributes SCImage has no parameter for (empty Laterality, as before)
    ds.Laterality = ""
    ds.StudyDescription = "medgan synthetic images"
    ds.SecondaryCaptureDeviceManufacturer = "medgan"
    ds.SecondaryCaptureDeviceManufacturerModelName = "medgan"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if grey:
        _grey_luts(ds, meta)  # SCImage has no 12-bit grey nor Modality / VOI LUT
    return ds


def _source_item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def write_dicom(path: Path, image: np.ndarray, meta: SyntheticDicomMeta) -> Path:
    """Write a generated slice (C, H, W) in [-1, 1] as a Secondary Capture DICOM file; returns ``path``.

    The dataset is highdicom's :class:`~highdicom.sc.SCImage`, with medgan's markers set on it.
    Grey images are 12-bit MONOCHROME2 (stored ``rint((x + 1) / 2 * 4095)``); with
    ``meta.intensity = (lo, hi)`` RescaleSlope / RescaleIntercept map stored values back to raw
    units (HU for CT) and the window covers ``[lo, hi]``. RGB images are 8-bit interleaved RGB.
    Instance and series numbers must be positive (highdicom's rule). The file is Explicit VR Little Endian with a file meta header, is marked as synthetic
    (ImageType DERIVED\\SECONDARY, ConversionType SYN, patient SYNTHETIC^MEDGAN / SYNTHETIC,
    ImageComments, DerivationDescription) and carries no date or time but
    ``meta.content_datetime``, so the same input gives the same bytes. The write is atomic.
    """
    _check_meta(meta)
    arr = _pixels(image)
    ds = _synthetic_dataset(arr, meta)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return atomic_write_bytes(path, buf.getvalue())
