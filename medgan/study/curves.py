"""The real-data learning curve (test AUC against the number of real training slices) and what a
synthetic arm's gain is worth in real slices.

Every classifier trained on real slices only (``real`` at each fraction, ``real+`` with its extra
real slices) is a point (N, AUC). :class:`LearningCurve` fits them with an isotonic (non-decreasing)
regression and interpolates linearly in log N; :func:`worth_real_slices` reads a synthetic arm's
paired AUC gain off that curve as a number of extra real slices, with a paired bootstrap CI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LearningCurve", "isotonic", "worth_real_slices"]


def isotonic(
    y: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``y`` (x already sorted): pool adjacent violators."""
    yv = np.asarray(y, dtype=np.float64).ravel()
    wv = np.ones_like(yv) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if wv.shape != yv.shape:
        raise ValueError(f"weights has {wv.size} values for {yv.size} points")
    if yv.size and (not np.all(np.isfinite(yv)) or not np.all(wv > 0)):
        raise ValueError("isotonic needs finite values and positive weights")
    means: list[float] = []
    wsum: list[float] = []
    sizes: list[int] = []
    for v, w in zip(yv.tolist(), wv.tolist(), strict=True):
        means.append(v)
        wsum.append(w)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:  # a violation: pool the last two blocks
            w2 = wsum[-2] + wsum[-1]
            means[-2] = (means[-2] * wsum[-2] + means[-1] * wsum[-1]) / w2
            wsum[-2] = w2
            sizes[-2] += sizes[-1]
            del means[-1], wsum[-1], sizes[-1]
    return np.repeat(np.asarray(means, dtype=np.float64), sizes)


@dataclass(frozen=True)
class LearningCurve:
    """A fitted learning curve: distinct real training-set sizes ``n`` (ascending) and their fitted,
    non-decreasing test AUC ``auc``; linear in log N between them, flat beyond the ends."""

    n: np.ndarray
    auc: np.ndarray

    @classmethod
    def fit(cls, n: Sequence[float] | np.ndarray, auc: Sequence[float] | np.ndarray) -> LearningCurve:
        """Fit points (real N, test AUC): the mean AUC per distinct N, then an isotonic regression
        in N weighted by the number of points per N. Non-finite points and N <= 0 are ignored."""
        nv = np.asarray(n, dtype=np.float64).ravel()
        av = np.asarray(auc, dtype=np.float64).ravel()
        if nv.shape != av.shape:
            raise ValueError(f"{nv.size} sizes for {av.size} AUCs")
        ok = np.isfinite(nv) & np.isfinite(av) & (nv > 0)
        if not ok.any():
            raise ValueError("a learning curve needs at least one point with a finite AUC and N > 0")
        levels, inv, counts = np.unique(nv[ok], return_inverse=True, return_counts=True)
        means = np.bincount(inv, weights=av[ok]) / counts
        return cls(levels, isotonic(means, counts))

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> LearningCurve:
        """The curve of :meth:`to_dict` (``{"n": [...], "auc": [...]}``, already fitted)."""
        return cls(np.asarray(d["n"], dtype=np.float64), np.asarray(d["auc"], dtype=np.float64))

    def to_dict(self) -> dict[str, list[float]]:
        """The fitted knots, for JSON: ``{"n": [...], "auc": [...]}``."""
        return {"n": [float(x) for x in self.n], "auc": [float(x) for x in self.auc]}

    def auc_at(self, n: float) -> float:
        """The fitted AUC at ``n`` real slices (linear in log N; the end values beyond the ends)."""
        if not n > 0:
            return float(self.auc[0])
        return float(np.interp(math.log(n), np.log(self.n), self.auc))

    def n_at(self, auc: float) -> tuple[float, str | None]:
        """The smallest N whose fitted AUC reaches ``auc``, and a censor flag.

        Inside the curve the N is linear in log N within its segment (a flat segment gives its left
        end). ``"below"``: ``auc`` is at or below the curve's first value (returns the first N: the
        true N is at most that); ``"above"``: beyond its last value (returns the last N: at least that).
        """
        a = self.auc
        if not auc > a[0]:  # NaN lands here too, as the first N
            return float(self.n[0]), "below"
        if auc > a[-1]:
            return float(self.n[-1]), "above"
        i = int(np.argmax(a >= auc))  # >= 1: a[0] < auc
        if auc == a[i]:  # a knot (or the left end of a flat segment): exactly its N
            return float(self.n[i]), None
        t = (auc - a[i - 1]) / (a[i] - a[i - 1])
        lo, hi = math.log(self.n[i - 1]), math.log(self.n[i])
        return float(math.exp(lo + t * (hi - lo))), None


def _worth(curve: LearningCurve, n_base: float, diff: float) -> tuple[float, str | None]:
    """Extra real slices the gain ``diff`` at ``n_base`` real slices is worth, and the censor flag."""
    n, flag = curve.n_at(curve.auc_at(n_base) + diff)
    return n - n_base, flag


def _percentile(x: np.ndarray, level: float) -> list[float]:
    """The central ``level`` percentile interval of the finite values of ``x`` (NaN when none)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [math.nan, math.nan]
    a = (1.0 - level) / 2.0
    return [float(np.quantile(x, a)), float(np.quantile(x, 1.0 - a))]


def worth_real_slices(
    curve_cells: pd.DataFrame,
    fraction: float,
    n_base: float,
    diffs: Mapping[Any, float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """What an arm's paired AUC gain is worth in extra real slices, with a paired bootstrap CI.

    ``curve_cells``: columns ``fraction, seed, n, auc``, one row per classifier trained on real
    slices only (``real`` at every fraction, and ``real+`` whose ``n`` counts the subset and its
    extra real slices). ``fraction`` / ``n_base``: the arm's real fraction and its mean real N;
    ``diffs``: seed -> the arm's AUC difference vs ``real`` at that fraction (same seed, same subset).

    ``worth = curve.n_at(curve.auc_at(n_base) + mean(diffs)) - n_base``: negative when the arm hurt
    (it is worth fewer than 0 extra real slices). Each bootstrap replicate resamples the seeds with
    replacement within each fraction of ``curve_cells`` (every row of a drawn seed at that fraction
    comes along), and at the arm's own fraction uses the same drawn seeds for ``diffs`` (paired);
    the curve is refitted and the ``level`` percentile interval taken. Deterministic for ``seed``.

    Returns ``{"worth", "ci": [lo, hi], "censored", "n_base"}``. ``censored`` is the point
    estimate's flag: ``"above"`` when the arm's AUC lies beyond the largest N measured (the worth
    is then *at least* the value given), ``"below"`` when at or below the smallest N's fitted AUC
    (the worth is *at most* the value given), else None.
    """
    cols = {"fraction", "seed", "n", "auc"}
    if missing := cols - set(curve_cells.columns):
        raise ValueError(f"curve_cells lacks the columns {sorted(missing)}")
    cells = curve_cells.loc[
        np.isfinite(curve_cells["n"].astype(float)) & np.isfinite(curve_cells["auc"].astype(float)),
        ["fraction", "seed", "n", "auc"],
    ].reset_index(drop=True)
    d = {s: float(v) for s, v in diffs.items() if v is not None and math.isfinite(float(v))}
    out: dict[str, Any] = {"worth": math.nan, "ci": [math.nan, math.nan], "censored": None, "n_base": n_base}
    if cells.empty or not d:
        return out
    curve = LearningCurve.fit(cells["n"].to_numpy(float), cells["auc"].to_numpy(float))
    out["worth"], out["censored"] = _worth(curve, n_base, float(np.mean(list(d.values()))))

    # the bootstrap: per fraction, a (seeds x rows) indicator so a replicate's seed counts weight the rows
    levels, group = np.unique(cells["n"].to_numpy(float), return_inverse=True)
    auc = cells["auc"].to_numpy(float)
    by_frac = []  # (seeds of that fraction, one-hot seed -> row matrix, row indices)
    own = None
    for f, g in cells.groupby("fraction", sort=True):
        seeds = sorted(g["seed"].unique().tolist())
        pos = {s: k for k, s in enumerate(seeds)}
        rows = g.index.to_numpy()
        onehot = np.zeros((len(seeds), rows.size))
        onehot[[pos[s] for s in g["seed"]], np.arange(rows.size)] = 1.0
        by_frac.append((seeds, onehot, rows))
        if math.isclose(float(f), float(fraction)):
            own = len(by_frac) - 1
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(cells)))
    diff_mean = np.full(n_boot, math.nan)
    for k, (seeds, onehot, rows) in enumerate(by_frac):
        draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        counts = np.zeros((n_boot, len(seeds)))
        np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
        weights[:, rows] = counts @ onehot
        if k == own:
            dv = np.array([d.get(s, math.nan) for s in seeds])
            has = np.isfinite(dv)
            num = counts[:, has] @ dv[has]
            den = counts[:, has].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                diff_mean = np.where(den > 0, num / np.where(den > 0, den, 1.0), math.nan)
    if own is None:  # the arm's fraction has no real-only cells: resample its seeds on their own
        dv = np.array(list(d.values()))
        diff_mean = dv[rng.integers(0, dv.size, size=(n_boot, dv.size))].mean(axis=1)
    onehot_n = np.zeros((len(cells), levels.size))
    onehot_n[np.arange(len(cells)), group] = 1.0
    wsum = weights @ onehot_n  # replicate x distinct N: how many points
    asum = (weights * auc) @ onehot_n
    worth = np.full(n_boot, math.nan)
    for b in range(n_boot):
        if not math.isfinite(diff_mean[b]):
            continue
        keep = wsum[b] > 0
        means = asum[b, keep] / wsum[b, keep]
        rep = LearningCurve(levels[keep], isotonic(means, wsum[b, keep]))
        worth[b] = _worth(rep, n_base, float(diff_mean[b]))[0]
    out["ci"] = _percentile(worth, level)
    return out
