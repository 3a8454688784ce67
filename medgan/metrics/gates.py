"""Quality gates: does a synthesizer meet the minimum bar before its samples go into a classifier?

:func:`check_gates` compares a ``metrics.json`` dict (``medgan evaluate``, ``medgan run``, or the
study's own evaluation of a synthesizer) with :class:`~medgan.config.GatesConfig` and says, per
gate, the value, the threshold, whether it passed and why, in one plain sentence. A gate whose
metric was not measured (e.g. label scores off, or memorization for CycleGAN translations, which
start from real slices) has ``passed = None``: it neither passes nor fails. A gate set to ``null``
in the config is off and not listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from medgan.config import GatesConfig


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome."""

    gate: str  # the config key, e.g. ``recall_min``
    metric: str  # what is compared, in words
    value: float | None  # None: not measured
    threshold: float
    passed: bool | None  # None: not measured
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _get(metrics: Mapping[str, Any], *path: str) -> Any:
    node: Any = metrics
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def _not_measured(gate: str, metric: str, threshold: float, why: str) -> GateResult:
    """A gate whose metric is missing: no value, neither passed nor failed."""
    return GateResult(gate, metric, None, threshold, None, f"{metric} was not measured ({why}).")


def _fid_ratio_gate(metrics: Mapping[str, Any], t: float) -> GateResult:
    """``fid_ratio_max``: FID over the real-real floor FID at most ``t``."""
    f, floor = _num(metrics.get("fid")), _num(metrics.get("floor_fid"))
    if f is None or floor is None or floor <= 0:
        return _not_measured("fid_ratio_max", "FID / real-real floor", t, "no FID or no real-real floor")
    r = f / floor
    ok = r <= t
    return GateResult(
        "fid_ratio_max",
        "FID / real-real floor",
        r,
        t,
        ok,
        f"FID is {r:.2f}x the real-real floor ({f:.1f} vs {floor:.1f}); the gate allows at most {t:g}x"
        + (
            ": passed."
            if ok
            else ": failed, the samples are much further from real slices than real data gets."
        ),
    )


def _at_least_gate(
    metrics: Mapping[str, Any], gate: str, key: str, label: str, good: str, bad: str, t: float
) -> GateResult:
    """``precision_min`` / ``recall_min``: ``metrics[key]`` >= ``t``; ``good`` / ``bad`` end its sentence."""
    v = _num(metrics.get(key))
    if v is None:
        return _not_measured(gate, label, t, "too few slices, or not computed")
    ok = v >= t
    return GateResult(
        gate,
        label,
        v,
        t,
        ok,
        f"{label.capitalize()} is {v:.2f}; the gate needs at least {t:.2f}: "
        + (f"passed, {good}." if ok else f"failed, {bad}"),
    )


def _ms_ssim_gate(metrics: Mapping[str, Any], t: float) -> GateResult:
    """``ms_ssim_max``: within-class MS-SSIM of the samples at most ``t`` (the real slices' value quoted)."""
    v = _num(metrics.get("ms_ssim"))
    if v is None:
        return _not_measured("ms_ssim_max", "within-class MS-SSIM", t, "not computed for this synthesizer")
    ok = v <= t
    real = _num(metrics.get("ms_ssim_real"))
    ref = f" (real slices: {real:.2f})" if real is not None else ""
    return GateResult(
        "ms_ssim_max",
        "within-class MS-SSIM",
        v,
        t,
        ok,
        f"Same-class samples have MS-SSIM {v:.2f}{ref}; the gate allows at most {t:.2f}: "
        + ("passed." if ok else "failed, the samples of a class are too alike (low diversity)."),
    )


def _label_agreement_gate(metrics: Mapping[str, Any], m: float) -> GateResult:
    """``label_agreement_margin``: label agreement at least the real classifier's test accuracy - ``m``."""
    v = _num(_get(metrics, "label_agreement", "agreement"))
    acc = _num(_get(metrics, "label_agreement", "real_test_acc"))
    if v is None or acc is None:
        return _not_measured("label_agreement_margin", "label agreement", m, "label scores were off")
    t = acc - m
    ok = v >= t
    return GateResult(
        "label_agreement_margin",
        "label agreement",
        v,
        t,
        ok,
        f"A classifier trained on real slices gives {v:.1%} of the samples their intended class; "
        f"it is right on {acc:.1%} of real test slices, so the gate needs at least {t:.1%}: "
        + ("passed." if ok else "failed, many samples do not show the class they were made for."),
    )


def _cas_auc_gate(metrics: Mapping[str, Any], t: float) -> GateResult:
    """``cas_auc_min``: test AUC of a classifier trained on samples only at least ``t``."""
    v = _num(_get(metrics, "cas", "auc"))
    if v is None:
        return _not_measured(
            "cas_auc_min", "CAS AUC", t, "label scores were off, or this synthesizer has no CAS"
        )
    ok = v >= t
    real = _num(_get(metrics, "cas", "real_auc"))
    ref = f" (trained on real slices: {real:.2f})" if real is not None else ""
    return GateResult(
        "cas_auc_min",
        "CAS AUC",
        v,
        t,
        ok,
        f"A classifier trained on samples only reaches test AUC {v:.2f}{ref}; the gate needs at least {t:.2f}: "
        + ("passed." if ok else "failed, the samples do not teach the diagnostic difference."),
    )


def _memorized_gate(metrics: Mapping[str, Any], t: int) -> GateResult:
    """``memorized_max``: at most ``t`` samples are near-copies of training images."""
    v = _num(metrics.get("memorized_count"))
    if v is None:
        return _not_measured(
            "memorized_max", "memorized near-copies", float(t), "no training images to compare with"
        )
    ok = v <= t
    return GateResult(
        "memorized_max",
        "memorized near-copies",
        v,
        float(t),
        ok,
        f"{int(v)} samples are near-copies of training images beyond what new real slices show by chance; "
        f"the gate allows {t}: "
        + ("passed." if ok else "failed, the synthesizer copies training patients (a privacy risk)."),
    )


#: ``(gate, metric key, label, what passing means, what failing means)`` of the "at least" gates, in order.
_AT_LEAST_GATES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "precision_min",
        "precision",
        "precision",
        "most samples look like real slices",
        "too many samples fall outside the real data (unrealistic images).",
    ),
    (
        "recall_min",
        "recall",
        "recall",
        "the samples cover enough of the real data",
        "the samples cover too little of the real data (mode collapse).",
    ),
)


def check_gates(metrics: Mapping[str, Any], gates: GatesConfig | None) -> list[GateResult]:
    """Each switched-on gate of ``gates`` applied to ``metrics``; ``[]`` when ``gates`` is None."""
    if gates is None:
        return []
    out: list[GateResult] = []
    if gates.fid_ratio_max is not None:
        out.append(_fid_ratio_gate(metrics, gates.fid_ratio_max))
    for gate, key, label, good, bad in _AT_LEAST_GATES:
        t = getattr(gates, gate)
        if t is not None:
            out.append(_at_least_gate(metrics, gate, key, label, good, bad, t))
    if gates.ms_ssim_max is not None:
        out.append(_ms_ssim_gate(metrics, gates.ms_ssim_max))
    if gates.label_agreement_margin is not None:
        out.append(_label_agreement_gate(metrics, gates.label_agreement_margin))
    if gates.cas_auc_min is not None:
        out.append(_cas_auc_gate(metrics, gates.cas_auc_min))
    if gates.memorized_max is not None:
        out.append(_memorized_gate(metrics, gates.memorized_max))
    return out


def _field(r: GateResult | Mapping[str, Any], key: str) -> Any:
    return r[key] if isinstance(r, Mapping) else getattr(r, key)


def gates_passed(results: list[GateResult] | list[dict[str, Any]]) -> bool:
    """True when no gate failed (gates that were not measured do not fail)."""
    return all(_field(r, "passed") is not False for r in results)


def gates_verdict(name: str, results: list[GateResult] | list[dict[str, Any]]) -> str:
    """One plain sentence, e.g. ``cgan fails 2 of 7 quality gates (recall, CAS AUC).``

    ``results`` are :class:`GateResult` objects or their ``as_dict()`` form (from a JSON file).
    """
    if not results:
        return f"{name}: no quality gates are switched on."
    failed = [_field(r, "metric") for r in results if _field(r, "passed") is False]
    unmeasured = sum(_field(r, "passed") is None for r in results)
    extra = f"; {unmeasured} not measured" if unmeasured else ""
    if failed:
        return f"{name} fails {len(failed)} of {len(results)} quality gates ({', '.join(failed)}){extra}."
    if unmeasured:
        return f"{name} passes the {len(results) - unmeasured} quality gates measured ({unmeasured} of {len(results)} not measured)."
    return f"{name} passes all {len(results)} quality gates."
