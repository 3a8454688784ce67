"""Paired comparisons of each cell with the reference arms on the same seed (same subset, same init).

Every arm but ``real`` is paired with ``real``; every synthetic arm also with ``classical`` (when
that arm ran). Per pair: the differences of the test metrics (``auc``, ``balanced_acc``, and
``kappa`` for ordinal labels; arm minus reference) and one test of the AUC difference on this
test set: DeLong's for two classes (``delong_p``), a paired stratified bootstrap of the macro
one-vs-rest AUC for more (``bootstrap_p``). The verdicts over seeds are :mod:`medgan.study.summary`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medgan.classifier.metrics import delong_test, paired_bootstrap_diff
from medgan.config.study import REAL_ARMS

#: Test metrics whose paired differences every comparison carries (when the cells have them).
PAIRED_METRICS = ("auc", "balanced_acc", "kappa")


def _refs(arm: str) -> tuple[str, ...]:
    """The reference arms ``arm`` is paired with."""
    if arm == "real":
        return ()
    return ("real",) if arm in REAL_ARMS else ("real", "classical")


def compare_cells(
    rows: list[dict[str, Any]],
    probas: dict[tuple, np.ndarray],
    sy: np.ndarray,
    done: dict[tuple, dict[str, float]],
    n_boot: int = 1000,
) -> None:
    """Set each row's paired differences and test against its reference arms on the same seed.

    ``done`` keeps each pair's test across calls (the driver rewrites ``results.csv`` after every cell).
    """
    by_cell = {(r["arm"], r["ratio"], r["fraction"], r["seed"]): r for r in rows}
    for r in rows:
        cell = (r["arm"], r["ratio"], r["fraction"], r["seed"])
        for ref in _refs(r["arm"]):
            ref_cell = (ref, None, r["fraction"], r["seed"])
            base, ref_row = probas.get(ref_cell), by_cell.get(ref_cell)
            if base is None or ref_row is None:
                continue
            for metric in PAIRED_METRICS:
                a, b = r.get(metric), ref_row.get(metric)
                if a is not None and b is not None:
                    r[f"{metric}_diff_vs_{ref}"] = float(a) - float(b)
            sfx = "" if ref == "real" else "_vs_classical"
            if (cell, ref) not in done:
                if base.shape[1] == 2:
                    dl = delong_test(sy, base[:, 1], probas[cell][:, 1])
                    done[(cell, ref)] = {"diff": -dl["diff"], "p": dl["p_value"], "test": "delong"}
                else:
                    bs = paired_bootstrap_diff(
                        sy, probas[cell], base, "auc", n_boot=n_boot, seed=int(r["seed"])
                    )
                    done[(cell, ref)] = {"diff": bs["diff"], "p": bs["p_value"], "test": "bootstrap"}
            t = done[(cell, ref)]
            r[f"auc_diff_vs_{ref}"] = t["diff"]  # arm - reference
            r[f"{t['test']}_p{sfx}"] = t["p"]
