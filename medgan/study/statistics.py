"""Over-seed statistics of paired differences: intervals, p-values, power (MDE), Holm, verdict words.

Pure functions on numbers (numpy / scipy): the study calls them per (arm, ratio, fraction) on the
per-seed paired AUC differences against ``real`` (or ``classical``), the report words their results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["detectable_line", "holm", "paired_summary", "verdict"]


def _finite(values: Iterable[Any]) -> np.ndarray:
    """The finite values of ``values`` as a float array (None and NaN dropped)."""
    v = np.array([math.nan if x is None else x for x in values], dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def paired_summary(
    values: Sequence[float],
    level: float = 0.95,
    power: float = 0.8,
    bounds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Over-seed summary of paired differences (one per seed, e.g. arm AUC - real AUC).

    Returns ``mean``, ``std`` (ddof=1), ``n`` (finite values; others are ignored), ``ci`` (the
    ``level`` t-interval ``mean ± t_{n-1} * std / sqrt(n)``, clipped to ``bounds`` when given),
    ``p_value`` (two-sided one-sample t-test of mean 0; with zero variance 1 when the mean is 0,
    else 0) and ``mde``, the smallest true mean difference that ``n`` paired repeats with this
    spread detect with probability ``power`` at two-sided alpha = 1 - ``level``:
    ``(t_{1-alpha/2, n-1} + t_{power, n-1}) * std / sqrt(n)``. With ``n < 2`` the std, CI, p-value
    and MDE are NaN (the mean too when ``n == 0``).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    v = _finite(values)
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return {
            "mean": mean,
            "std": math.nan,
            "n": n,
            "ci": (math.nan, math.nan),
            "p_value": math.nan,
            "mde": math.nan,
        }
    std = float(v.std(ddof=1))
    se = std / math.sqrt(n)
    alpha = 1.0 - level
    t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1))
    lo, hi = mean - t_crit * se, mean + t_crit * se
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    if std == 0.0 or se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = float(2.0 * stats.t.sf(abs(mean) / se, n - 1))
    mde = (t_crit + float(stats.t.ppf(power, n - 1))) * se
    return {"mean": mean, "std": std, "n": n, "ci": (float(lo), float(hi)), "p_value": p, "mde": float(mde)}


def verdict(ci: Sequence[float] | None, better: str = "helped", worse: str = "hurt") -> str:
    """``better`` when the interval lies above 0, ``worse`` below, else ``"no clear difference"``;
    ``"not computed"`` when the interval is missing or NaN (fewer than 2 seeds)."""
    if ci is None or len(ci) != 2:
        return "not computed"
    lo, hi = (math.nan if c is None else float(c) for c in ci)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not computed"
    return better if lo > 0 else (worse if hi < 0 else "no clear difference")


def holm(p_values: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order.

    The family is the finite entries (m of them): the k-th smallest p becomes
    ``max_{j <= k} min(1, (m - j + 1) * p_(j))`` (monotone in p, capped at 1). None / NaN entries
    stay NaN and do not count in m.
    """
    p = np.array([math.nan if x is None else float(x) for x in p_values], dtype=np.float64)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()


def detectable_line(mde: float | None) -> str:
    """The power sentence of a no-clear-difference comparison, e.g. ``"this study could detect >= +0.031"``.

    NaN / None: not computed (fewer than 2 seeds); 0: the differences did not vary over seeds, so
    their spread gives no estimate (rather than the claim that any difference was detectable).
    """
    if mde is None or not math.isfinite(float(mde)):
        return "the smallest detectable difference was not computed (fewer than 2 seeds)"
    if float(mde) <= 0.0:
        return (
            "the paired differences did not vary over seeds, so the smallest detectable difference is unknown"
        )
    return f"this study could detect >= {float(mde):+.3f}"
