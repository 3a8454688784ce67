"""Diagnostic metrics: hand-computed values, references (torchmetrics, MONAI), DeLong, bootstraps, errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc
from scipy import stats
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

from medgan.classifier.metrics import (
    bootstrap_metrics,
    delong_test,
    diagnostic_metrics,
    paired_bootstrap_diff,
    summarize_over_seeds,
)
from medgan.classifier.train import val_metrics
from medgan.errors import InputError

# 5 negatives, 3 positives; one positive (0.3) ties with one negative (0.3)
Y8 = np.array([0, 0, 0, 0, 0, 1, 1, 1])
S8 = np.array([0.1, 0.3, 0.35, 0.8, 0.2, 0.7, 0.3, 0.9])


def as_proba(s: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - s, s], axis=1)


def scored_set(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced binary labels and P(positive) scores with a class shift ``signal``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    s = 1.0 / (1.0 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=n))))
    return y, s


def slow_delong_var(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """O(N^2) DeLong: placement values from the Mann-Whitney kernel; returns (auc_a, auc_b, var(a - b))."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10, v01, aucs = [], [], []
    for s in (a, b):
        x, z = s[pos], s[neg]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
    s10 = np.cov(np.stack(v10))
    s01 = np.cov(np.stack(v01))
    s = s10 / m + s01 / n
    return aucs[0], aucs[1], float(s[0, 0] + s[1, 1] - 2 * s[0, 1])


# ------------------------------------------------------------------ point estimates


def test_binary_hand_computed() -> None:
    r = diagnostic_metrics(Y8, as_proba(S8))
    # predictions at 0.5: [0 0 0 1 0 | 1 0 1] -> TP 2, FN 1, TN 4, FP 1
    assert r["acc"] == pytest.approx(6 / 8)
    assert r["sensitivity"] == pytest.approx(2 / 3)
    assert r["specificity"] == pytest.approx(4 / 5)
    assert r["ppv"] == pytest.approx(2 / 3)
    assert r["npv"] == pytest.approx(4 / 5)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["balanced_acc"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    # pairs won: 0.7 -> 4, 0.3 -> 2 + 0.5 (tie), 0.9 -> 5; out of 15
    assert r["auc"] == pytest.approx(11.5 / 15)
    assert r["n"] == 8 and r["n_positive"] == 3


def test_binary_auc_matches_torchmetrics_and_monai() -> None:
    r = diagnostic_metrics(Y8, as_proba(S8))
    tm = float(binary_auroc(torch.tensor(S8), torch.tensor(Y8)))
    mo = float(compute_roc_auc(torch.tensor(S8), torch.tensor(Y8)))
    assert r["auc"] == pytest.approx(tm) and r["auc"] == pytest.approx(mo)
    y, s = scored_set(157, 0.7, seed=3)
    s = np.round(s, 2)  # many ties
    r = diagnostic_metrics(y, as_proba(s))
    assert r["auc"] == pytest.approx(float(binary_auroc(torch.tensor(s), torch.tensor(y))))
    assert r["auc"] == pytest.approx(float(compute_roc_auc(torch.tensor(s), torch.tensor(y))))


def test_positive_and_threshold() -> None:
    r0 = diagnostic_metrics(Y8, as_proba(S8), positive=0)
    r1 = diagnostic_metrics(Y8, as_proba(S8))
    assert r0["auc"] == pytest.approx(r1["auc"])  # AUC of class 0 on P(class 0)
    assert r0["sensitivity"] == pytest.approx(r1["specificity"])
    assert r0["n_positive"] == 5
    high = diagnostic_metrics(Y8, as_proba(S8), threshold=0.85)  # only 0.9 predicted positive
    assert high["sensitivity"] == pytest.approx(1 / 3) and high["ppv"] == 1.0


def test_multiclass_macro_auc() -> None:
    rng = np.random.default_rng(1)
    n, c = 120, 4
    y = np.arange(n) % c
    logits = rng.normal(size=(n, c)) + 1.2 * np.eye(c)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    r = diagnostic_metrics(y, p)
    ovr = [diagnostic_metrics((y == k).astype(int), as_proba(p[:, k]))["auc"] for k in range(c)]
    assert r["auc"] == pytest.approx(np.mean(ovr))
    assert [r["per_class"][str(k)]["auc"] for k in range(c)] == pytest.approx(ovr)
    tm = float(multiclass_auroc(torch.tensor(p), torch.tensor(y), num_classes=c, average="macro"))
    assert r["auc"] == pytest.approx(tm)
    assert r["auc"] == pytest.approx(val_metrics(p, y)[0])
    pred = p.argmax(1)
    assert r["acc"] == pytest.approx((pred == y).mean())
    recalls = [(pred[y == k] == k).mean() for k in range(c)]
    assert r["balanced_acc"] == pytest.approx(np.mean(recalls))
    f1s = []
    for k in range(c):
        tp, fp, fn = (
            ((pred == k) & (y == k)).sum(),
            ((pred == k) & (y != k)).sum(),
            ((pred != k) & (y == k)).sum(),
        )
        f1s.append(2 * tp / (2 * tp + fp + fn))
        e = r["per_class"][str(k)]
        assert e["sensitivity"] == pytest.approx(recalls[k]) and e["n"] == n // c
        assert e["specificity"] == pytest.approx(((pred != k) & (y != k)).sum() / (y != k).sum())
    assert r["f1"] == pytest.approx(np.mean(f1s))
    assert "ppv" not in r and r["n"] == n


def test_multiclass_absent_class_skipped() -> None:
    rng = np.random.default_rng(2)
    y = np.array([0, 1, 2] * 10)  # class 3 never occurs
    p = rng.dirichlet(np.ones(4), size=len(y))
    r = diagnostic_metrics(y, p)
    assert math.isnan(r["per_class"]["3"]["auc"]) and math.isnan(r["per_class"]["3"]["sensitivity"])
    assert r["per_class"]["3"]["n"] == 0
    assert r["auc"] == pytest.approx(np.mean([r["per_class"][str(k)]["auc"] for k in range(3)]))


def test_perfect_classifier() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    r = diagnostic_metrics(y, np.eye(2)[y] * 0.9 + 0.05)
    for key in ("acc", "balanced_acc", "auc", "sensitivity", "specificity", "f1", "ppv", "npv"):
        assert r[key] == 1.0, key
    y3 = np.array([0, 1, 2, 2, 1, 0])
    r3 = diagnostic_metrics(y3, np.eye(3)[y3] * 0.7 + 0.1)
    for key in ("acc", "balanced_acc", "auc", "f1"):
        assert r3[key] == 1.0, key


def test_constant_scores_and_degenerate_cases() -> None:
    r = diagnostic_metrics(Y8, np.full((8, 2), 0.5))
    assert r["auc"] == 0.5
    low = diagnostic_metrics(Y8, as_proba(np.full(8, 0.2)))  # nothing predicted positive
    assert low["auc"] == 0.5 and math.isnan(low["ppv"]) and low["sensitivity"] == 0.0
    assert low["f1"] == 0.0 and low["npv"] == pytest.approx(5 / 8)
    one = diagnostic_metrics(np.zeros(5, int), as_proba(np.linspace(0.1, 0.9, 5)))
    assert math.isnan(one["auc"]) and math.isnan(one["sensitivity"])
    assert one["specificity"] == pytest.approx(2 / 5) and one["balanced_acc"] == pytest.approx(
        2 / 5
    )  # 0.5 counts positive


# ------------------------------------------------------------------ DeLong


def test_delong_identical_scores() -> None:
    y, s = scored_set(60, 0.5, seed=0)
    r = delong_test(y, s, s.copy())
    assert r["diff"] == 0.0 and r["se"] == 0.0
    assert r["p_value"] == 1.0 and r["ci"] == (0.0, 0.0) and r["z"] == 0.0


def test_delong_matches_slow_reference() -> None:
    rng = np.random.default_rng(7)
    y = np.array([0] * 13 + [1] * 9)
    a = np.round(rng.uniform(size=22) + 0.4 * y, 1)  # rounded: ties within and across classes
    b = np.round(rng.uniform(size=22) + 0.2 * y, 1)
    auc_a, auc_b, var = slow_delong_var(y, a, b)
    r = delong_test(y, a, b)
    assert r["auc_a"] == pytest.approx(auc_a) and r["auc_b"] == pytest.approx(auc_b)
    assert r["se"] ** 2 == pytest.approx(var, rel=1e-10)
    assert r["z"] == pytest.approx((auc_a - auc_b) / math.sqrt(var))
    assert r["p_value"] == pytest.approx(2 * stats.norm.sf(abs(r["z"])))
    lo, hi = r["ci"]
    assert (lo + hi) / 2 == pytest.approx(r["diff"]) and hi - lo == pytest.approx(2 * 1.959964 * r["se"])
    # (N, 2) probabilities give the same result as the 1-D scores
    r2 = delong_test(y, as_proba(a), as_proba(b))
    assert r2["se"] == pytest.approx(r["se"]) and r2["diff"] == pytest.approx(r["diff"])
    assert r["auc_a"] == pytest.approx(diagnostic_metrics(y, as_proba(a))["auc"])


def test_delong_better_vs_random() -> None:
    y, good = scored_set(300, 1.5, seed=11)
    rand = np.random.default_rng(12).uniform(size=300)
    r = delong_test(y, good, rand)
    assert r["diff"] > 0.2 and r["p_value"] < 0.01 and r["ci"][0] > 0


def test_paired_bootstrap_agrees_with_delong() -> None:
    y, a = scored_set(200, 1.0, seed=4)
    _, b = scored_set(200, 0.4, seed=5)
    d = delong_test(y, a, b)
    r = paired_bootstrap_diff(y, as_proba(a), as_proba(b), n_boot=500, seed=1)
    assert np.sign(r["diff"]) == np.sign(d["diff"]) and r["diff"] == pytest.approx(d["diff"])
    assert r["ci"][0] <= r["diff"] <= r["ci"][1]
    assert r["p_value"] < 0.05 and d["p_value"] < 0.05
    assert r == paired_bootstrap_diff(y, a, b, n_boot=500, seed=1)  # 1-D scores accepted, deterministic
    same = paired_bootstrap_diff(y, a, a, n_boot=200)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0
    acc = paired_bootstrap_diff(y, a, b, metric="acc", n_boot=200)
    assert acc["ci"][0] <= acc["diff"] <= acc["ci"][1]


# ------------------------------------------------------------------ bootstrap CIs, seeds


def test_bootstrap_binary_contains_point_and_deterministic() -> None:
    y, s = scored_set(156, 0.8, seed=9)
    p = as_proba(s)
    point = diagnostic_metrics(y, p)
    t0 = time.perf_counter()
    ci = bootstrap_metrics(y, p, n_boot=1000, seed=3)
    assert time.perf_counter() - t0 < 2.0
    assert set(ci) == {"acc", "balanced_acc", "auc", "sensitivity", "specificity", "f1", "ppv", "npv"}
    for key, (lo, hi) in ci.items():
        assert lo <= point[key] <= hi, key
    assert ci == bootstrap_metrics(y, p, n_boot=1000, seed=3)
    assert ci != bootstrap_metrics(y, p, n_boot=1000, seed=4)
    wider = bootstrap_metrics(y, p, n_boot=1000, seed=3, level=0.99)
    assert wider["auc"][0] <= ci["auc"][0] and wider["auc"][1] >= ci["auc"][1]


def test_bootstrap_multiclass_and_single_class() -> None:
    rng = np.random.default_rng(5)
    y = np.arange(90) % 3
    p = rng.dirichlet(np.ones(3), size=90) + np.eye(3)[y]
    p /= p.sum(1, keepdims=True)
    point = diagnostic_metrics(y, p)
    ci = bootstrap_metrics(y, p, n_boot=300)
    for key in ("acc", "balanced_acc", "auc", "f1"):
        assert ci[key][0] <= point[key] <= ci[key][1], key
    assert ci["per_class.2.auc"][0] <= point["per_class"]["2"]["auc"] <= ci["per_class.2.auc"][1]
    one = bootstrap_metrics(np.ones(10, int), as_proba(np.linspace(0, 1, 10)), n_boot=50)
    assert all(math.isnan(v) for v in one["auc"]) and not math.isnan(one["sensitivity"][0])


def test_summarize_over_seeds() -> None:
    r = summarize_over_seeds([0.8, 0.82, 0.84])
    assert r["mean"] == pytest.approx(0.82) and r["n"] == 3
    sd = np.std([0.8, 0.82, 0.84], ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert r["std"] == pytest.approx(sd)
    assert r["ci"] == pytest.approx((0.82 - half, 0.82 + half))
    assert summarize_over_seeds([0.8, float("nan"), 0.82, 0.84]) == r
    single = summarize_over_seeds([0.9, float("nan")])
    assert single["n"] == 1 and single["mean"] == 0.9 and all(math.isnan(v) for v in single["ci"])
    assert summarize_over_seeds([])["n"] == 0
    # a sensitivity near 1 over 3 seeds: the raw t-interval passes 1, the bounded one stops there
    sens = [0.94, 1.0, 1.0]
    assert summarize_over_seeds(sens)["ci"][1] > 1.0
    lo, hi = summarize_over_seeds(sens, bounds=(0.0, 1.0))["ci"]
    assert hi == 1.0 and lo == pytest.approx(summarize_over_seeds(sens)["ci"][0])


# ------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        (Y8[:7], as_proba(S8), "shape mismatch"),
        (Y8, S8, "2-D"),
        (np.r_[Y8[:7], 2], as_proba(S8), "labels outside 0..1"),
        (Y8, np.where(np.arange(16).reshape(8, 2) == 3, np.nan, as_proba(S8)), "NaN"),
        (np.array([], int), np.zeros((0, 2)), "empty"),
        (Y8 + 0.5, as_proba(S8), "integer labels"),
        (Y8, S8[:, None], "at least 2 class columns"),
    ],
)
def test_bad_inputs(y: np.ndarray, p: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        diagnostic_metrics(y, p)
    assert str(err.value).startswith("metrics: ") and "\n" not in str(err.value)


def test_bad_inputs_other_functions() -> None:
    p = as_proba(S8)
    with pytest.raises(InputError, match="level"):
        bootstrap_metrics(Y8, p, level=1.5)
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_metrics(Y8, p, n_boot=0)
    with pytest.raises(InputError, match="unknown metric"):
        paired_bootstrap_diff(Y8, p, p, metric="dice")
    with pytest.raises(InputError, match="proba_b"):
        paired_bootstrap_diff(Y8, p, p[:6])
    with pytest.raises(InputError, match="binary"):
        delong_test(np.arange(9) % 3, np.full((9, 3), 1 / 3), np.full((9, 3), 1 / 3))
    with pytest.raises(InputError, match="at least 2 positives"):
        delong_test(np.r_[np.zeros(7, int), 1], S8, S8)
    with pytest.raises(InputError, match="NaN"):
        delong_test(Y8, S8, np.r_[S8[:7], np.nan])
    with pytest.raises(InputError, match="positive"):
        diagnostic_metrics(Y8, p, positive=2)
