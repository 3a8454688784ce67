"""Classifier backbones, training (seeded, early stopping), save/load and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgan.classifier import Classifier, TrainedClassifier, build_classifier, train_classifier
from medgan.classifier.train import _check_training_inputs, _class_weights, _sample_weights, val_metrics
from medgan.config import ClassifierConfig
from medgan.errors import ConfigError, InputError
from medgan.training.checkpoint import list_checkpoints, save_checkpoint


def toy_set(n: int, size: int = 16, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: dark noisy images; class 1: the same with a bright square. Float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(-1.0, -0.6, size=(n, channels, size, size)).astype(np.float32)
    for i in np.flatnonzero(y):
        cy, cx = rng.integers(2, size - 6, size=2)
        x[i, :, cy : cy + 5, cx : cx + 5] = 0.9
    return x, y


def fast_cfg(**kw: object) -> ClassifierConfig:
    base: dict[str, object] = {"width": 8, "epochs": 4, "batch_size": 16, "device": "cpu", "patience": 8}
    base.update(kw)
    return ClassifierConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tx, ty = toy_set(64, seed=0)
    vx, vy = toy_set(24, seed=1)
    return tx, ty, vx, vy


@pytest.fixture(scope="module")
def trained(toy_data: tuple[np.ndarray, ...]) -> TrainedClassifier:
    tx, ty, vx, vy = toy_data
    return train_classifier(tx, ty, vx, vy, 2, fast_cfg(), classes=["dark", "square"])


# ------------------------------------------------------------------ model shapes


@pytest.mark.parametrize(
    ("arch", "channels", "size", "dim"),
    [
        ("resnet10", 1, 28, 128),
        ("resnet10", 3, 28, 128),
        ("resnet18", 1, 28, 512),
        ("resnet18", 3, 28, 512),
        ("densenet121", 1, 32, 1024),
        ("densenet121", 3, 64, 1024),
    ],
)
def test_shapes(arch: str, channels: int, size: int, dim: int) -> None:
    torch.manual_seed(0)
    model = build_classifier(arch, channels, 3, (size, size), width=16).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert isinstance(model, Classifier)
    assert logits.shape == (2, 3)
    assert feats.shape == (2, dim) == (2, model.feature_dim)
    last = model.backbone.fc if arch != "densenet121" else model.backbone.class_layers.out
    torch.testing.assert_close(last(feats), logits)  # features really are the penultimate layer


def test_resnet10_width() -> None:
    assert build_classifier("resnet10", 1, 2, (28, 28), width=8).feature_dim == 64


def test_densenet_too_small() -> None:
    with pytest.raises(ValueError, match="densenet121 needs at least 32 px"):
        build_classifier("densenet121", 1, 2, (28, 28))


def test_unknown_arch() -> None:
    with pytest.raises(ValueError, match="unknown classifier arch"):
        build_classifier("vgg", 1, 2, (28, 28))


# ------------------------------------------------------------------ training


def test_training_separable(trained: TrainedClassifier, toy_data: tuple[np.ndarray, ...]) -> None:
    _, _, vx, _ = toy_data
    assert trained.val_auc > 0.95
    assert [h["epoch"] for h in trained.history] == [1, 2, 3, 4]
    assert set(trained.history[0]) == {"epoch", "loss", "val_auc", "val_acc"}
    best = max(trained.history, key=lambda h: h["val_auc"])
    assert trained.best_epoch == best["epoch"]
    assert trained.shape == (1, 16, 16)
    assert trained.classes == ["dark", "square"]
    proba = trained.predict_proba(vx, batch_size=7)
    assert proba.shape == (len(vx), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert trained.features(vx).shape == (len(vx), 64)
    assert not trained.model.training


def test_early_stopping_restores_best(toy_data: tuple[np.ndarray, ...]) -> None:
    tx, ty, vx, vy = toy_data
    # an AUC of 1.0 cannot be beaten, so patience 2 stops two epochs after the first perfect one
    res = train_classifier(tx, ty, vx, vy, 2, fast_cfg(epochs=30, patience=2, lr=3e-3))
    aucs = [h["val_auc"] for h in res.history]
    first_best = int(np.argmax(aucs)) + 1
    assert res.best_epoch == first_best
    assert len(res.history) == first_best + 2 < 30
    auc, _ = val_metrics(res.predict_proba(vx), vy)
    assert auc == pytest.approx(res.val_auc)  # the restored weights are the best epoch's


def test_same_seed_same_weights(toy_data: tuple[np.ndarray, ...]) -> None:
    tx, ty, vx, vy = toy_data
    before = torch.random.get_rng_state()
    a = train_classifier(tx, ty, vx, vy, 2, fast_cfg(epochs=2, class_weighted=True))
    b = train_classifier(tx, ty, vx, vy, 2, fast_cfg(epochs=2, class_weighted=True))
    c = train_classifier(tx, ty, vx, vy, 2, fast_cfg(epochs=2, class_weighted=True, seed=1))
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_multiclass_and_rgb() -> None:
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        x = rng.uniform(-1, -0.8, size=(n, 3, 16, 16)).astype(np.float32)
        x[y == 1, 0] = 0.8  # red
        x[y == 2, 2] = 0.8  # blue
        return x, y

    tx, ty = make(48)
    vx, vy = make(18)
    res = train_classifier(tx, ty, vx, vy, 3, fast_cfg(epochs=3))
    assert res.predict_proba(vx).shape == (18, 3)
    assert res.val_auc > 0.95


def test_val_metrics_conventions() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    auc, acc = val_metrics(p, y)
    assert auc == pytest.approx(1.0) and acc == pytest.approx(0.75)
    # multi-class, one class absent from the labels: macro over the classes present
    y3 = np.array([0, 1, 0, 1])
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    auc3, _ = val_metrics(p3, y3)
    assert auc3 == pytest.approx(1.0)


# ------------------------------------------------------------------ save / load


def test_save_load_round_trip(
    trained: TrainedClassifier, toy_data: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    _, _, vx, _ = toy_data
    path = trained.save(tmp_path / "clf")
    assert path.is_file() and path.suffix == ".safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == "classifier" and meta["arch"] == "resnet10" and meta["width"] == 8
    back = TrainedClassifier.load(tmp_path / "clf")
    np.testing.assert_allclose(back.predict_proba(vx), trained.predict_proba(vx), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.features(vx), trained.features(vx), rtol=1e-6, atol=1e-6)
    assert back.classes == trained.classes and back.shape == trained.shape
    assert back.best_epoch == trained.best_epoch and back.history == trained.history
    assert back.config == trained.config and back.val_auc == pytest.approx(trained.val_auc)


def test_save_replaces_older_classifier(trained: TrainedClassifier, tmp_path: Path) -> None:
    folder = tmp_path / "clf"
    trained.save(folder)
    trained.best_epoch += 50  # a checkpoint with a higher step already in the folder ...
    try:
        trained.save(folder)
    finally:
        trained.best_epoch -= 50
    path = trained.save(folder)  # ... must not prune the new, lower-step one
    assert list_checkpoints(folder) == [path]


def test_save_refuses_foreign_folder(trained: TrainedClassifier, tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 100, {"w": torch.zeros(2)}, {"kind": "gan"})
    with pytest.raises(InputError, match="not classifiers"):
        trained.save(tmp_path)
    assert len(list_checkpoints(tmp_path)) == 1


def test_tampered_checkpoint_refused(trained: TrainedClassifier, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "clf")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        TrainedClassifier.load(path)


def test_non_classifier_checkpoint_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {"kind": "gan"})
    with pytest.raises(InputError, match="is not a medgan classifier checkpoint"):
        TrainedClassifier.load(path)


# ------------------------------------------------------------------ bad input


def test_bad_inputs(toy_data: tuple[np.ndarray, ...]) -> None:
    tx, ty, vx, vy = toy_data
    cfg = fast_cfg(epochs=1)
    with pytest.raises(InputError, match="validation set holds only class 0") as err:
        train_classifier(tx, ty, vx, np.zeros_like(vy), 2, cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith("classifier: ")
    with pytest.raises(InputError, match=r"train labels must lie in 0\.\.1"):
        train_classifier(tx, ty + 1, vx, vy, 2, cfg)
    with pytest.raises(InputError, match=r"val labels must lie in 0\.\.1"):
        train_classifier(tx, ty, vx, vy - 1, 2, cfg)
    with pytest.raises(InputError, match="training set is empty"):
        train_classifier(tx[:0], ty[:0], vx, vy, 2, cfg)
    with pytest.raises(InputError, match="validation set is empty"):
        train_classifier(tx, ty, vx[:0], vy[:0], 2, cfg)
    with pytest.raises(InputError, match="64 images but 10 labels"):
        train_classifier(tx, ty[:10], vx, vy, 2, cfg)
    with pytest.raises(InputError, match="val images are"):
        train_classifier(tx, ty, vx[:, :, :8], vy, 2, cfg)
    with pytest.raises(ConfigError, match="densenet121 needs at least 32 px"):
        train_classifier(tx, ty, vx, vy, 2, fast_cfg(arch="densenet121"))


def test_predict_wrong_shape(trained: TrainedClassifier) -> None:
    with pytest.raises(InputError, match="classifier expects"):
        trained.predict_proba(np.zeros((2, 1, 28, 28), np.float32))


def test_check_training_inputs_casts_and_names_classes() -> None:
    tx, ty = toy_set(6)
    x = tx.astype(np.float64)
    out = _check_training_inputs(x, ty.astype(np.float64), x, ty, 2, None)
    assert [a.dtype for a in out[:4]] == [np.float32, np.int64, np.float32, np.int64]
    assert out[4] == ["0", "1"]
    with pytest.raises(InputError, match="need at least 2 classes"):
        _check_training_inputs(tx, ty, tx, ty, 1, None)
    with pytest.raises(InputError, match="3 class names given for n_classes=2"):
        _check_training_inputs(tx, ty, tx, ty, 2, ["a", "b", "c"])


def test_sample_weights_one_finite_non_negative_per_image() -> None:
    assert _sample_weights(None, 3) is None
    w = _sample_weights(np.array([0.0, 0.5, 2.0]), 3)
    assert w is not None and w.dtype == torch.float32 and w.tolist() == [0.0, 0.5, 2.0]
    for bad in (np.ones(2), np.array([1.0, -0.1, 1.0]), np.array([1.0, np.nan, 1.0]), np.ones((3, 1))):
        with pytest.raises(InputError, match="one finite, non-negative weight per training image"):
            _sample_weights(bad, 3)


def test_class_weights_inverse_frequency() -> None:
    w = _class_weights(np.array([0, 0, 0, 1]), 3, torch.device("cpu"))
    assert w.dtype == torch.float32
    np.testing.assert_allclose(w.numpy(), [4 / 9, 4 / 3, 0.0], rtol=1e-6)  # an absent class weighs 0


# ------------------------------------------------------------------ real data


@pytest.mark.integration
def test_breastmnist_resnet10(data_dir: Path) -> None:
    from medgan.config import config_from_dict
    from medgan.data.sources import load_source

    data = config_from_dict({"data": {"source": {"kind": "medmnist", "name": "breastmnist"}}}).data
    slices = load_source(data, data_dir)
    tr, va = slices.split("train"), slices.split("val")
    cfg = ClassifierConfig(arch="resnet10", width=16, epochs=8, device="cpu", seed=0)
    res = train_classifier(
        tr.images,
        tr.manifest["label"].to_numpy(),
        va.images,
        va.manifest["label"].to_numpy(),
        len(tr.classes),
        cfg,
        classes=tr.classes,
    )
    assert res.val_auc > 0.75, res.history
    assert res.classes == tr.classes and res.shape == (1, 28, 28)
