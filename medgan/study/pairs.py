"""Paired comparisons of each cell with the reference arms on the same seed (same subset, same init)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medgan.classifier.metrics import delong_test


def compare_cells(
    rows: list[dict[str, Any]],
    probas: dict[tuple, np.ndarray],
    sy: np.ndarray,
    pos: int | None,
    done: dict[tuple, dict[str, float]],
) -> None:
    """Pair each arm with ``real`` (and synthetic arms with ``classical``) on the same seed: DeLong.

    ``done`` keeps each pair's test across calls (the driver rewrites ``results.csv`` after every cell).
    """
    if pos is None:
        return
    for r in rows:
        cell = (r["arm"], r["ratio"], r["fraction"], r["seed"])
        for ref in ("real", "classical"):
            base = probas.get((ref, None, r["fraction"], r["seed"]))
            if r["arm"] in (ref, "real") or base is None:  # real is compared with nothing
                continue
            if (cell, ref) not in done:
                done[(cell, ref)] = delong_test(sy, base[:, pos], probas[cell][:, pos])
            dl = done[(cell, ref)]
            sfx = "" if ref == "real" else "_vs_classical"
            r[f"auc_diff_vs_{ref}"] = -dl["diff"]  # arm - reference
            r[f"delong_p{sfx}"] = dl["p_value"]
