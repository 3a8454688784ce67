"""The slice manifest: one row per slice, enough to trace every slice back to its file and geometry."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from medgan.errors import InputError
from medgan.io.atomic import atomic_write_text
from medgan.paths import require_regular_file

#: Columns of ``manifest.csv``, in order. Geometry follows DICOM's patient (LPS) convention:
#: ``position`` is the centre of the first pixel (x\\y\\z mm), ``orientation`` the row and column
#: direction cosines (6 values), ``spacing_row`` / ``spacing_col`` the distance between rows /
#: columns in mm. ``intensity_lo`` / ``intensity_hi`` are the raw values mapped to -1 / +1.
MANIFEST_COLUMNS: list[str] = [
    "slice_id",
    "label",
    "label_name",
    "split",
    "patient_id",
    "source",
    "source_format",
    "slice_index",
    "frame",
    "series_uid",
    "sop_instance_uid",
    "modality",
    "rows",
    "cols",
    "spacing_row",
    "spacing_col",
    "slice_thickness",
    "position",
    "orientation",
    "intensity_mode",
    "intensity_lo",
    "intensity_hi",
    "mask_source",
    "mask_px",
    "sha1",
]

_DTYPES = {
    "slice_id": "int64",
    "label": "int64",
    "slice_index": "Int64",
    "frame": "Int64",
    "rows": "Int64",
    "cols": "Int64",
    "mask_px": "Int64",
    "spacing_row": "float64",
    "spacing_col": "float64",
    "slice_thickness": "float64",
    "intensity_lo": "float64",
    "intensity_hi": "float64",
}


def make_manifest(rows: list[dict]) -> pd.DataFrame:
    """Build a manifest frame with every column present, in order, with stable dtypes."""
    df = pd.DataFrame(rows)
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    df = df[MANIFEST_COLUMNS + [c for c in df.columns if c not in MANIFEST_COLUMNS]]
    for col, dt in _DTYPES.items():
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(dt) if len(df) else df[col].astype(dt)
    str_cols = [c for c in MANIFEST_COLUMNS if c not in _DTYPES]
    for col in str_cols:
        df[col] = df[col].astype("string")
    return df.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest as CSV atomically."""
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "manifest not found")
    require_regular_file(p, expected="a manifest CSV file")
    try:
        df = pd.read_csv(
            p, dtype={"patient_id": "string", "series_uid": "string", "sop_instance_uid": "string"}
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a readable manifest CSV ({exc.__class__.__name__})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(p, f"manifest lacks columns {missing}")
    return make_manifest(df.to_dict("records"))
