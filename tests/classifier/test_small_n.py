"""The small-N classifier: validation-chosen threshold, class balancing (loss / sampler), weighted kappa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torchmetrics.functional.classification import multiclass_cohen_kappa

from medgan.classifier import TrainedClassifier, train_classifier
from medgan.classifier.metrics import (
    bootstrap_metrics,
    diagnostic_metrics,
    paired_bootstrap_diff,
    weighted_kappa,
)
from medgan.classifier.train import (
    _sampling_probs,
    balanced_accuracy,
    predict_labels,
    youden_threshold,
)
from medgan.config import ClassifierConfig, RunConfig, config_from_dict
from medgan.errors import ConfigError, InputError


def tiny_cfg(**kw: object) -> ClassifierConfig:
    base: dict[str, object] = {"width": 4, "epochs": 2, "batch_size": 8, "device": "cpu", "patience": 2}
    base.update(kw)
    return ClassifierConfig(**base)  # type: ignore[arg-type]


def random_set(n: int, seed: int, frac_pos: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) < round(frac_pos * n)).astype(np.int64)
    x = rng.uniform(-1, 1, size=(n, 1, 12, 12)).astype(np.float32)
    x[y == 1, :, :4, :4] += 0.5  # a weak signal, so the validation scores are not all tied
    return np.clip(x, -1, 1), y


# ------------------------------------------------------------------ the threshold


def test_youden_threshold_clearly_not_half() -> None:
    # every score is high (a classifier trained on a 90 % positive set): at 0.5 all are positive
    # (J = 0); the positives sit above 0.8 and the negatives below 0.75, so the best cut is between
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.6, 0.65, 0.7, 0.74, 0.81, 0.85, 0.9, 0.92, 0.95, 0.99])
    t = youden_threshold(p, y)
    assert t == pytest.approx((0.74 + 0.81) / 2)
    assert balanced_accuracy(y, (p >= t).astype(int)) == 1.0
    assert balanced_accuracy(y, (p >= 0.5).astype(int)) == 0.5
    assert t not in p  # a midpoint, never a sample's own score


def test_youden_threshold_ties_go_to_half() -> None:
    # perfectly separated with a wide gap: every midpoint in the gap has J = 1 -> the one nearest 0.5
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert youden_threshold(p, y) == pytest.approx(0.5)  # (0.3 + 0.7) / 2
    # two separate optimal cuts (J = 1/3 at 0.25 and at 0.55): the one closer to 0.5 wins
    y2 = np.array([0, 1, 0, 0, 1, 1])
    p2 = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    assert youden_threshold(p2, y2) == pytest.approx(0.55)
    # inverted scores: J = -1/3 at 0.15 and at 0.85 (the best there is), equally far from 0.5: the lower
    assert youden_threshold(1.0 - p, y) == pytest.approx(0.15)


def test_youden_threshold_tied_scores_and_errors() -> None:
    assert youden_threshold(np.full(4, 0.3), np.array([0, 1, 0, 1])) == 0.5  # no candidate
    # ties in the scores: the threshold falls between distinct values only
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.6, 0.6, 0.6, 0.9])
    assert youden_threshold(p, y) == pytest.approx(0.4)  # 0.6 -> positive: sens 1, spec 0.5
    with pytest.raises(InputError, match="both classes"):
        youden_threshold(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(InputError, match="scores but"):
        youden_threshold(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))


def test_predict_labels() -> None:
    p = np.array([[0.4, 0.6], [0.3, 0.7], [0.2, 0.8]], dtype=np.float32)
    assert predict_labels(p, 0.65).tolist() == [0, 1, 1]
    assert predict_labels(p).tolist() == [1, 1, 1]
    p3 = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    assert predict_labels(p3, 0.9).tolist() == [1, 0]  # multi-class: argmax, threshold unused


def test_threshold_trained_saved_loaded(tmp_path: Path) -> None:
    tx, ty = random_set(40, seed=0)
    vx, vy = random_set(20, seed=1)
    cfg = tiny_cfg()
    a = train_classifier(tx, ty, vx, vy, 2, cfg)
    p = a.predict_proba(vx)
    assert a.threshold == youden_threshold(p[:, 1], vy)  # chosen on the validation split
    assert not np.isin(a.threshold, p[:, 1].astype(np.float64))
    assert a.val_balanced_acc == pytest.approx(balanced_accuracy(vy, (p[:, 1] >= a.threshold).astype(int)))
    assert a.predict(vx).tolist() == predict_labels(p, a.threshold).tolist()
    b = train_classifier(tx, ty, vx, vy, 2, cfg)
    assert (b.threshold, b.val_balanced_acc) == (a.threshold, a.val_balanced_acc)  # seeded

    path = a.save(tmp_path / "clf")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["threshold"] == a.threshold and meta["val_balanced_acc"] == a.val_balanced_acc
    back = TrainedClassifier.load(tmp_path / "clf")
    assert back.threshold == a.threshold and back.val_balanced_acc == a.val_balanced_acc
    assert back.predict(vx).tolist() == a.predict(vx).tolist()


def test_checkpoint_without_threshold_loads_half(tmp_path: Path) -> None:
    tx, ty = random_set(24, seed=0)
    vx, vy = random_set(12, seed=1)
    clf = train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=1))
    clf.threshold = 0.9
    clf.val_balanced_acc = float("nan")
    path = clf.save(tmp_path / "clf")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["val_balanced_acc"] is None  # NaN is written as null
    # a checkpoint written before thresholds existed: rewrite it without the keys (and re-hash it)
    from medgan.training.checkpoint import load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(path)
    for key in ("threshold", "val_balanced_acc"):
        meta.pop(key)
    old_dir = tmp_path / "old"
    save_checkpoint(old_dir, clf.best_epoch, tensors, meta)
    back = TrainedClassifier.load(old_dir)
    assert back.threshold == 0.5 and np.isnan(back.val_balanced_acc)


def test_multiclass_threshold_is_half() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = rng.uniform(-1, 1, size=(30, 1, 12, 12)).astype(np.float32)
    clf = train_classifier(x, y, x[:15], y[:15], 3, tiny_cfg(epochs=1))
    assert clf.threshold == 0.5
    p = clf.predict_proba(x[:15])
    assert clf.predict(x[:15]).tolist() == p.argmax(1).tolist()
    assert clf.val_balanced_acc == pytest.approx(balanced_accuracy(y[:15], p.argmax(1)))


# ------------------------------------------------------------------ class balancing


def run_config(classifier: dict[str, object]) -> RunConfig:
    data = {"source": {"kind": "medmnist", "name": "breastmnist"}}
    return config_from_dict({"data": data, "classifier": classifier})


def test_balance_default_and_class_weighted_alias() -> None:
    assert ClassifierConfig().balance == "loss"
    assert ClassifierConfig(class_weighted=True).balance == "loss"
    assert ClassifierConfig(class_weighted=False).balance == "none"
    assert ClassifierConfig(class_weighted=False, balance="sampler").balance == "sampler"
    assert ClassifierConfig(balance="loss").class_weighted
    assert not ClassifierConfig(balance="sampler").class_weighted
    assert "class_weighted" not in ClassifierConfig().model_dump()
    with pytest.raises(ValidationError, match="contradicts"):
        ClassifierConfig(class_weighted=True, balance="none")
    with pytest.raises(ValidationError, match="true or false"):
        ClassifierConfig(class_weighted="maybe")
    cfg = ClassifierConfig(balance="none")
    cfg.class_weighted = True
    assert cfg.balance == "loss"
    cfg.class_weighted = False
    assert cfg.balance == "none"
    # an old run config (e.g. a resolved config.yaml) still loads
    old = run_config({"class_weighted": True, "epochs": 3})
    assert old.classifier.balance == "loss" and old.classifier.epochs == 3
    assert run_config({"class_weighted": False}).classifier.balance == "none"
    with pytest.raises(ConfigError, match="classifier"):
        run_config({"class_weighted": True, "balance": "sampler"})
    with pytest.raises(ConfigError, match="classifier"):
        run_config({"balance": "oversample"})


def test_old_checkpoint_config_loads() -> None:
    old = {"arch": "resnet10", "width": 8, "class_weighted": False, "seed": 3}
    assert ClassifierConfig.model_validate(old).balance == "none"


def test_sampler_probabilities_balance_classes() -> None:
    y = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 0])
    w = _sampling_probs(y, 2)
    assert float(w[y == 0].sum()) == pytest.approx(float(w[y == 1].sum()))
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(w, 10_000, replacement=True, generator=g).numpy()
    assert abs((y[draws] == 0).mean() - 0.5) < 0.02


@pytest.mark.parametrize("balance", ["none", "loss", "sampler"])
def test_balance_settings_train_seeded(balance: str) -> None:
    tx, ty = random_set(30, seed=2, frac_pos=0.8)
    vx, vy = random_set(12, seed=3)
    cfg = tiny_cfg(epochs=1, balance=balance)
    a = train_classifier(tx, ty, vx, vy, 2, cfg)
    b = train_classifier(tx, ty, vx, vy, 2, cfg)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.config.balance == balance


def test_balance_settings_differ() -> None:
    tx, ty = random_set(30, seed=2, frac_pos=0.8)
    vx, vy = random_set(12, seed=3)
    states = [
        train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=1, balance=b)).model.state_dict()
        for b in ("none", "loss", "sampler")
    ]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not all(torch.equal(states[i][k], states[j][k]) for k in states[i])


# ------------------------------------------------------------------ samples per epoch


def test_epoch_samples_repeats_a_small_training_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """``epoch_samples``: a training set smaller than it is passed over again (each pass its own
    order, the last cut short) so an epoch takes the same optimizer steps whatever the set's size;
    at or below the set's size it is one pass, exactly as without it."""
    import medgan.classifier.train as train_mod

    seen: list[int] = []
    original = train_mod._batch_starts
    monkeypatch.setattr(train_mod, "_batch_starts", lambda n, b: (seen.append(n), original(n, b))[1])
    tx, ty = random_set(20, seed=2)
    vx, vy = random_set(12, seed=3)
    plain = train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=2, patience=5))
    below = train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=2, patience=5, epoch_samples=20))
    assert seen == [20, 20, 20, 20]
    sp, sb = plain.model.state_dict(), below.model.state_dict()
    assert all(torch.equal(sp[k], sb[k]) for k in sp)  # one pass: the same draws, the same weights
    seen.clear()
    longer = train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=2, patience=5, epoch_samples=50))
    assert seen == [50, 50]  # 2.5 passes per epoch: 7 batches of 8 instead of 3
    sl = longer.model.state_dict()
    assert not all(torch.equal(sp[k], sl[k]) for k in sp)
    seen.clear()
    train_classifier(tx, ty, vx, vy, 2, tiny_cfg(epochs=1, balance="sampler", epoch_samples=50))
    assert seen == [50]  # the class-balanced sampler draws as many
    with pytest.raises(ValidationError):
        ClassifierConfig(epoch_samples=-1)


# ------------------------------------------------------------------ weighted kappa


# 3 ordered grades, 10 samples; confusion matrix (rows truth, columns prediction):
#   [[2, 1, 0],
#    [1, 2, 1],
#    [0, 1, 2]]
KY = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
KP = np.array([0, 0, 1, 0, 1, 1, 2, 1, 2, 2])


def test_weighted_kappa_hand_computed() -> None:
    # marginals: truth (3, 4, 3), predictions (3, 4, 3); chance counts E_ij = r_i * c_j / 10.
    # Observed disagreement: 4 samples one grade off -> sum(W * O) = 4 (linear and quadratic).
    # Chance: |i - j| = 1 cells hold 12 + 12 + 12 + 12 = 48, |i - j| = 2 cells 9 + 9 = 18 (/ 10):
    # quadratic sum(W * E) = (48 + 4 * 18) / 10 = 12, linear (48 + 2 * 18) / 10 = 8.4.
    assert weighted_kappa(KY, KP, 3) == pytest.approx(1 - 4 / 12)
    assert weighted_kappa(KY, KP, 3, "linear") == pytest.approx(1 - 4 / 8.4)
    # unweighted: p_o = 0.6, p_e = (9 + 16 + 9) / 100 = 0.34
    assert weighted_kappa(KY, KP, 3, None) == pytest.approx((0.6 - 0.34) / (1 - 0.34))


def test_weighted_kappa_edges() -> None:
    assert weighted_kappa(KY, KY, 3) == pytest.approx(1.0)
    assert weighted_kappa(KY, 2 - KY, 3) < 0  # reversed grades
    assert np.isnan(weighted_kappa(np.zeros(4, int), np.zeros(4, int), 3))  # all one class: undefined
    assert weighted_kappa(KY, np.ones(10, int), 3) == pytest.approx(0.0)  # constant prediction: chance
    with pytest.raises(InputError, match="weights"):
        weighted_kappa(KY, KP, 3, "cubic")
    with pytest.raises(InputError, match="outside"):
        weighted_kappa(KY, KP, 2)
    with pytest.raises(InputError, match="shape"):
        weighted_kappa(KY, KP[:5], 3)


@pytest.mark.parametrize("weights", ["linear", "quadratic", None])
def test_weighted_kappa_matches_torchmetrics(weights: str | None) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 200)
    p = np.clip(y + rng.integers(-2, 3, 200), 0, 4)
    ref = multiclass_cohen_kappa(torch.tensor(p), torch.tensor(y), 5, weights=weights)
    assert weighted_kappa(y, p, 5, weights) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("weights", ["linear", "quadratic", None])
def test_weighted_kappa_matches_sklearn(weights: str | None) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 150)
    p = np.clip(y + rng.integers(-1, 2, 150), 0, 3)
    ref = metrics.cohen_kappa_score(y, p, weights=weights)
    assert weighted_kappa(y, p, 4, weights) == pytest.approx(ref)


def test_ordinal_metrics_add_kappa() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 15)
    proba = rng.dirichlet(np.ones(4), 60)
    proba[np.arange(60), y] += 0.5
    proba /= proba.sum(1, keepdims=True)
    m = diagnostic_metrics(y, proba, ordinal=True)
    assert m["kappa"] == pytest.approx(weighted_kappa(y, proba.argmax(1), 4))
    assert "kappa" not in diagnostic_metrics(y, proba)
    ci = bootstrap_metrics(y, proba, n_boot=200, seed=0, ordinal=True)
    assert ci["kappa"][0] <= m["kappa"] <= ci["kappa"][1]
    assert "kappa" not in bootstrap_metrics(y, proba, n_boot=20, seed=0)
    other = rng.dirichlet(np.ones(4), 60)
    d = paired_bootstrap_diff(y, proba, other, metric="kappa", n_boot=200, seed=0, ordinal=True)
    assert d["diff"] == pytest.approx(m["kappa"] - weighted_kappa(y, other.argmax(1), 4))
    assert d["ci"][0] <= d["diff"] <= d["ci"][1] and d["n_valid"] == 200
    with pytest.raises(InputError, match="ordinal=True"):
        paired_bootstrap_diff(y, proba, other, metric="kappa", n_boot=10)


def test_ordinal_binary_kappa_uses_threshold() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.6, 0.55, 0.7, 0.9, 0.3, 0.2])
    proba = np.stack([1 - s, s], 1)
    for t in (0.5, 0.35):
        m = diagnostic_metrics(y, proba, threshold=t, ordinal=True)
        assert m["kappa"] == pytest.approx(weighted_kappa(y, (s >= t).astype(int), 2))
    m0 = diagnostic_metrics(y, proba, positive=0, threshold=0.5, ordinal=True)
    assert m0["kappa"] == pytest.approx(weighted_kappa(y, np.where(1 - s >= 0.5, 0, 1), 2))
