"""NPZ shards written deterministically (fixed zip timestamps) and atomically; read without pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medgan.errors import InputError
from medgan.io.atomic import atomic_path

_EPOCH = (1980, 1, 1, 0, 0, 0)


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


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``); one-line error for unreadable files."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(path, f"not a readable .npz file ({exc.__class__.__name__})") from None
