"""Intensity normalisation to [-1, 1]: CT windows, percentiles, min-max and dtype ranges (leaf module).

Every slice records the raw range ``(lo, hi)`` that was mapped linearly onto ``[-1, 1]``
(values outside are clipped), so outputs can be mapped back to raw units with
:func:`denormalize`. A leaf module (numpy only): the config validates window names against
:data:`WINDOW_PRESETS`, the data layer normalises with it and the NIfTI writer denormalises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: CT window presets as (center, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (400.0, 1800.0),
}


@dataclass(frozen=True)
class IntensityRange:
    """The raw interval mapped onto [-1, 1] and a short description of how it was chosen."""

    lo: float
    hi: float
    mode: str

    def describe(self) -> str:
        """Human-readable form, e.g. ``window:abdomen[-160,240]``."""
        return f"{self.mode}[{self.lo:g},{self.hi:g}]"


def window_range(center: float, width: float, name: str | None = None) -> IntensityRange:
    """The interval ``[center - width/2, center + width/2]`` of a display window."""
    label = f"window:{name}" if name else f"window:C{center:g}/W{width:g}"
    return IntensityRange(center - width / 2.0, center + width / 2.0, label)


def percentile_range(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> IntensityRange:
    """The ``[low, high]`` percentile interval of ``values`` (finite values only)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(x) for x in np.percentile(v, [low, high])) if v.size else (0.0, 1.0)
    return IntensityRange(lo, hi, f"percentile:{low:g}-{high:g}")


def minmax_range(values: np.ndarray) -> IntensityRange:
    """The full ``[min, max]`` interval of ``values``."""
    v = np.asarray(values)
    return IntensityRange(float(np.nanmin(v)), float(np.nanmax(v)), "minmax")


def dtype_range(dtype: np.dtype | type) -> IntensityRange:
    """The full range of an integer dtype (uint8 -> [0, 255]); [0, 1] for floats."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return IntensityRange(float(info.min), float(info.max), f"dtype:{dt.name}")
    return IntensityRange(0.0, 1.0, f"dtype:{dt.name}")


def normalize(x: np.ndarray, r: IntensityRange) -> np.ndarray:
    """Map ``[r.lo, r.hi]`` linearly onto ``[-1, 1]`` and clip; float32 out."""
    span = r.hi - r.lo
    if not np.isfinite(span) or span <= 0:
        return np.zeros(np.shape(x), dtype=np.float32)
    scale = 2.0 / span
    if scale > float(np.finfo(np.float32).max) / 4:
        # a tiny span (e.g. denormal voxels): in float32 the scale would be inf, and inf * 0 NaN
        out64 = (np.asarray(x, dtype=np.float64) - r.lo) / span * 2.0 - 1.0
        return np.clip(out64, -1.0, 1.0).astype(np.float32)
    out = (np.asarray(x, dtype=np.float32) - np.float32(r.lo)) * np.float32(scale) - np.float32(1.0)
    return np.clip(out, -1.0, 1.0, out=out)


def denormalize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse of :func:`normalize` (for values that were not clipped)."""
    return (np.asarray(x, dtype=np.float64) + 1.0) * (hi - lo) / 2.0 + lo
