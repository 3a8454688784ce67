"""Label-aware sample scores: does a synthetic slice carry the class it was generated for?

* :func:`label_agreement` — a classifier trained on **real** train slices is applied to synthetic
  slices; the share it assigns to their intended class, reported next to the same classifier's
  accuracy on real test slices (the ceiling a synthesizer can be held to).
* :func:`classification_accuracy_score` — CAS (Ravuri & Vinyals 2019): the study's classifier is
  trained on synthetic slices **only** (early stopping on the real validation split) and scored
  on the real test split; reported next to the same classifier trained on the real train split.

Both use :mod:`medgan.classifier` (the same MONAI networks and training as the study).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medgan.classifier import TrainedClassifier, train_classifier
from medgan.classifier.metrics import diagnostic_metrics
from medgan.config import ClassifierConfig


@dataclass(frozen=True)
class LabelAgreement:
    """How often a real-trained classifier agrees with the intended labels of synthetic slices."""

    agreement: float  # share of synthetic slices predicted as their intended class
    per_class: dict[str, float]  # the same, per intended class
    real_test_acc: float  # the classifier's accuracy on the real test split
    real_test_balanced_acc: float
    n_synthetic: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def label_agreement(
    clf: TrainedClassifier,
    syn: np.ndarray,
    syn_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
) -> LabelAgreement:
    """Agreement of ``clf`` (trained on real slices) with the intended labels of ``syn``, beside its real test accuracy."""
    syn_labels = np.asarray(syn_labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    pred = clf.predict_proba(syn).argmax(1)
    per_class = {
        clf.classes[c]: float((pred[syn_labels == c] == c).mean())
        for c in range(clf.n_classes)
        if (syn_labels == c).any()
    }
    tp = clf.predict_proba(test).argmax(1)
    recalls = [float((tp[test_labels == c] == c).mean()) for c in np.unique(test_labels)]
    return LabelAgreement(
        agreement=float((pred == syn_labels).mean()),
        per_class=per_class,
        real_test_acc=float((tp == test_labels).mean()),
        real_test_balanced_acc=float(np.mean(recalls)),
        n_synthetic=len(syn_labels),
    )


@dataclass(frozen=True)
class CAS:
    """Classification accuracy score: synthetic-only training, real test set, next to real-only training."""

    auc: float
    acc: float
    balanced_acc: float
    real_auc: float | None
    real_acc: float | None
    n_synthetic: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _scores(clf: TrainedClassifier, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = clf.predict_proba(x)
    kw = {"positive": 1} if p.shape[1] == 2 else {}
    m = diagnostic_metrics(y, p, **kw)
    return {k: float(m[k]) for k in ("auc", "acc", "balanced_acc")}


def classification_accuracy_score(
    syn: np.ndarray,
    syn_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    classes: list[str],
    cfg: ClassifierConfig,
    real_clf: TrainedClassifier | None = None,
) -> CAS:
    """Train ``cfg``'s classifier on ``syn`` only (early stopping on the real validation split), test on real.

    ``real_clf`` (the same classifier trained on the real train split) gives the real-only figures
    to read CAS against; without it they are ``None``.
    """
    test_labels = np.asarray(test_labels, dtype=np.int64)
    clf = train_classifier(
        syn, np.asarray(syn_labels, np.int64), val, val_labels, len(classes), cfg, list(classes)
    )
    s = _scores(clf, test, test_labels)
    r = _scores(real_clf, test, test_labels) if real_clf is not None else None
    return CAS(
        auc=s["auc"],
        acc=s["acc"],
        balanced_acc=s["balanced_acc"],
        real_auc=None if r is None else r["auc"],
        real_acc=None if r is None else r["acc"],
        n_synthetic=len(syn),
    )
