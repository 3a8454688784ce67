"""NPZ shards written deterministically (fixed zip timestamps) and atomically; read without pickles."""

from __future__ import annotations

import lzma
import struct
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from medgan.errors import InputError
from medgan.io.atomic import atomic_path
from medgan.io.limits import check_claim
from medgan.paths import require_regular_file

_EPOCH = (1980, 1, 1, 0, 0, 0)
#: What zipfile, zlib and numpy's .npy parser raise for damaged archives and members.
_NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # an unsupported compression method
    struct.error,
    OverflowError,
)


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write arrays like ``np.savez`` (uncompressed) but byte-identical for identical inputs, atomically."""
    path = Path(path)
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return path


def _shown(name: str) -> str:
    """A member name for an error message: quoted, escaped, at most 60 characters."""
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> None:
    """Refuse a member that holds Python objects, or whose .npy header claims more than it can hold."""
    if info.flag_bits & 0x1:
        raise InputError(path, f"array {_shown(key)} is encrypted")
    with zf.open(info) as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise InputError(path, f"member {_shown(info.filename)} is not a .npy array")
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # (3, 0) is for non-Latin-1 field names, never used for images or labels
            raise InputError(path, f"array {_shown(key)} uses .npy format version {version[0]}.{version[1]}")
        header_len = fh.tell()
    if dtype.hasobject:
        raise InputError(path, f"array {_shown(key)} holds Python objects (pickles are never loaded)")
    archive = path.stat().st_size
    available = info.file_size - header_len
    compressed = None
    if info.compress_type == zipfile.ZIP_STORED:
        available = min(available, info.compress_size - header_len, archive)
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        compressed = min(info.compress_size, archive)
    check_claim(
        path,
        shape,
        what=f"array {_shown(key)}",
        itemsize=dtype.itemsize,
        available=available,
        compressed=compressed,
    )


def read_npz(path: str | Path, keys: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` (all, or only ``keys``) without pickles; one-line error for unreadable files.

    Every array's ``.npy`` header is checked before its data is allocated: object arrays are
    refused, and the claimed shape must fit in the archive and under
    :func:`~medgan.io.limits.max_voxels` (see :mod:`medgan.io.limits`). Only a regular file is
    opened (a device, FIFO or socket is refused first).
    """
    path = require_regular_file(path, expected="an .npz file")
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {}
            for info in zf.infolist():  # like np.load: the key is the name without ".npy"; later wins
                if not info.filename.endswith("/"):  # (ZipInfo.is_dir fails on an empty name)
                    members[info.filename.removesuffix(".npy")] = info
            for key, info in members.items():
                if keys is not None and key not in keys:
                    continue
                _check_member(path, zf, info, key)
                with zf.open(info) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
    except InputError:
        raise
    except _NPZ_ERRORS as exc:
        raise InputError(path, f"not a readable .npz file ({exc.__class__.__name__})") from None
    return out


def read_npz_keys(path: str | Path) -> list[str]:
    """The array names of an ``.npz`` (member names without ``.npy``), without reading any array."""
    path = require_regular_file(path, expected="an .npz file")
    try:
        with zipfile.ZipFile(path) as zf:
            return list(
                dict.fromkeys(
                    i.filename.removesuffix(".npy") for i in zf.infolist() if not i.filename.endswith("/")
                )
            )
    except _NPZ_ERRORS as exc:
        raise InputError(path, f"not a readable .npz file ({exc.__class__.__name__})") from None
