"""Class-proportional evaluation: the stratified floor, density / coverage, per-class scores, label scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medgan.config import ClassifierConfig, GatesConfig
from medgan.data.detect import source_from_spec
from medgan.data.sources import load_source
from medgan.errors import InputError
from medgan.metrics.evaluate import class_stratified_indices, evaluate_sets
from medgan.metrics.features import TorchScriptExtractor
from tests.conftest import write_fake_medmnist

TINY_CLF = ClassifierConfig(epochs=2, width=4, patience=2, batch_size=16)


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> TorchScriptExtractor:
    path = tmp_path_factory.mktemp("ts") / "pool.pt"
    torch.jit.script(_Pool()).save(str(path))
    return TorchScriptExtractor(path)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A source whose train split is 5:1 and whose test split is 1:1 (an unstratified floor would skew)."""
    d = tmp_path_factory.mktemp("skew")
    path = write_fake_medmnist(d / "medmnist" / "skewmnist.npz", n_train=60, seed=3)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["train_labels"] = (np.arange(60) >= 50).astype(np.uint8)[:, None]  # 50 of class 0, 10 of class 1
    for split in ("val", "test"):
        arrays[f"{split}_labels"] = (np.arange(12) % 2).astype(np.uint8)[:, None]
    # images that match the labels (discs for 0, squares for 1), drawn from larger fake sets
    for split in ("train", "val", "test"):
        lab = arrays[f"{split}_labels"][:, 0]
        donor = write_fake_medmnist(d / f"donor-{split}.npz", n_train=len(lab) * 2, seed=len(lab))
        with np.load(donor) as z:
            pool_imgs, pool_lab = z["train_images"], z["train_labels"][:, 0]
        arrays[f"{split}_images"] = np.stack([pool_imgs[pool_lab == c][i] for i, c in enumerate(lab)])
    np.savez(path, **arrays)
    ss = load_source(source_from_spec("medmnist:skewmnist", d), d)
    return d, ss


def test_class_stratified_indices() -> None:
    pool = np.array([0] * 90 + [1] * 10)
    like = np.array([0, 1] * 10)
    idx = class_stratified_indices(pool, like, 20, seed=0)
    assert len(set(idx.tolist())) == 20 and np.bincount(pool[idx]).tolist() == [10, 10]
    assert (class_stratified_indices(pool, like, 20, seed=0) == idx).all()  # seeded
    # a class the pool has too few of is topped up from the rest
    idx = class_stratified_indices(pool, like, 40, seed=0)
    assert len(set(idx.tolist())) == 40 and np.bincount(pool[idx]).tolist() == [30, 10]
    # unlabelled slices: a plain random subset of the right size
    assert len(class_stratified_indices(np.full(30, -1), like, 12, seed=0)) == 12


def _ev(
    ss: object, syn: np.ndarray, y: np.ndarray, ext: TorchScriptExtractor, tmp: Path, **kw: object
) -> dict:
    kw.setdefault("check_apart", False)  # these check the metrics on copies of real slices (val = test here)
    return evaluate_sets(
        ss, "test", syn, y, ext, tag="skew", real_name="skew:test", syn_name="syn", n_boot=5, cache=tmp, **kw
    )


def test_floor_is_drawn_in_the_real_sets_class_mix(
    skewed: tuple, pool: TorchScriptExtractor, tmp_path: Path
) -> None:
    _, ss = skewed
    va = ss.split("val")
    m = _ev(ss, va.images, va.manifest["label"].to_numpy(), pool, tmp_path)
    assert m["floor_n"] == 12 and m["floor_class_counts"] == {"0": 6, "1": 6}  # test is 1:1, train 5:1
    assert m["class_counts"]["real"] == {"0": 6, "1": 6}
    for k in ("density", "coverage", "floor_density", "floor_coverage", "precision", "recall", "floor_fid"):
        assert m[k] is not None, k
    assert 0.0 <= m["coverage"] <= 1.0 and 0.0 <= m["floor_coverage"] <= 1.0 and m["density"] >= 0.0


def test_a_copy_of_the_real_set_scores_perfectly_overall_and_per_class(
    skewed: tuple, pool: TorchScriptExtractor, tmp_path: Path
) -> None:
    _, ss = skewed
    te = ss.split("test")
    y = te.manifest["label"].to_numpy()
    with pytest.raises(InputError, match="pixel-identical"):  # what a user asking for it gets
        _ev(ss, te.images, y, pool, tmp_path, check_apart=True)
    m = _ev(ss, te.images, y, pool, tmp_path)  # the metrics' own sanity check
    assert m["fid"] == pytest.approx(0.0, abs=1e-6) and m["coverage"] == 1.0 and m["precision"] == 1.0
    assert set(m["per_class"]) == {"0", "1"}
    for name, pc in m["per_class"].items():
        assert pc["n_real"] == pc["n_synthetic"] == 6
        assert pc["fid"] == pytest.approx(0.0, abs=1e-6)
        assert pc["precision"] == pc["recall"] == pc["coverage"] == 1.0
        assert pc["floor_n"] == 6 and pc["floor_fid"] > pc["fid"], name
    # one class only, the wrong one: the per-class scores show where the set falls short
    only0 = te.images[y == 0]
    m = _ev(ss, only0, np.ones(len(only0), np.int64), pool, tmp_path)
    assert m["per_class"]["0"]["n_synthetic"] == 0 and m["per_class"]["0"]["fid"] is None
    assert m["per_class"]["1"]["fid"] > m["per_class"]["1"]["floor_fid"]


def test_label_scores_and_gates_in_the_evaluation(
    skewed: tuple, pool: TorchScriptExtractor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medgan.classifier as clf_pkg

    _, ss = skewed
    te = ss.split("test")
    y = te.manifest["label"].to_numpy()
    calls: list[int] = []
    original = clf_pkg.train_classifier

    def counting(*a: object, **k: object) -> object:
        calls.append(len(a[0]))  # type: ignore[arg-type]
        return original(*a, **k)

    monkeypatch.setattr(clf_pkg, "train_classifier", counting)
    kw = {"label_scores": True, "classifier": TINY_CLF, "classifier_dir": tmp_path / "clf"}
    m = _ev(ss, te.images, y, pool, tmp_path, gates=GatesConfig(), **kw)
    la, cas = m["label_agreement"], m["cas"]
    # the real test slices as "synthetic": agreement is exactly the real classifier's test accuracy
    assert la["agreement"] == pytest.approx(la["real_test_acc"]) and la["n_synthetic"] == 12
    assert 0.0 <= cas["auc"] <= 1.0 and 0.0 <= cas["real_auc"] <= 1.0 and cas["real_same_n"] == 12
    assert (tmp_path / "clf" / "trained_on.json").is_file()
    assert calls.count(60) == 1  # the real classifier, on the 60 real train slices (CAS and same-N: 12)
    gates = {r["gate"]: r for r in m["gates"]["results"]}
    assert gates["label_agreement_margin"]["passed"] is True  # agreement = accuracy >= accuracy - 0.05
    assert gates["cas_auc_min"]["value"] == pytest.approx(cas["auc"])
    # the cached real classifier is reused; another config trains a new one
    calls.clear()
    _ev(ss, te.images, y, pool, tmp_path, **kw)
    assert calls.count(60) == 0
    _ev(ss, te.images, y, pool, tmp_path, **{**kw, "classifier": TINY_CLF.model_copy(update={"epochs": 1})})
    assert calls.count(60) == 1
    # CAS on a set of its own
    tr = ss.split("train")
    m2 = _ev(ss, te.images, y, pool, tmp_path, cas_set=(tr.images, tr.manifest["label"].to_numpy()), **kw)
    assert m2["cas"]["n_synthetic"] == 60 and m2["cas"]["real_same_n"] == 60
    # without labelled data (one class in val) they are skipped on request, an error otherwise
    bad = np.full(len(y), 5)
    with pytest.raises(InputError, match="outside the real classes"):
        _ev(ss, te.images, bad, pool, tmp_path, **kw)
    m3 = _ev(ss, te.images, bad, pool, tmp_path, **{**kw, "label_scores": "if-possible"})
    assert "label_agreement" not in m3 and "outside the real classes" in m3["label_scores_skipped"]


def test_eval_counts_follow_the_test_split(skewed: tuple) -> None:
    from medgan.config import PipelineConfig
    from medgan.metrics.evaluate import eval_counts, split_class_counts

    _, ss = skewed
    te, tr = ss.split("test"), ss.split("train")
    assert eval_counts(PipelineConfig(), te, tr, 2) == {0: 6, 1: 6}  # the test split: N 12, 1:1
    assert eval_counts(PipelineConfig(eval_n=30), te, tr, 2) == {0: 15, 1: 15}
    assert eval_counts(PipelineConfig(eval_per_class=5), te, tr, 2) == 5  # the older, equal-count form
    assert split_class_counts(tr, 12, 2) == {0: 10, 1: 2}  # the train split is 5:1 (CAS set)


def test_cli_evaluate_label_scores_and_gates(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    from medgan.cli import main
    from medgan.generate import generate
    from tests.conftest import tiny_config

    feats = tmp_path / "pool.pt"
    torch.jit.script(_Pool()).save(str(feats))
    generate(tiny_checkpoint, tmp_path / "gen", {0: 4, 1: 4}, fmt="npz")
    cfg = tiny_config()
    cfg["classifier"] = TINY_CLF.model_dump()
    cfg["gates"] = {"cas_auc_min": None}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    args = ["evaluate", "--real", "medmnist:tinymnist:test", "--synthetic", str(tmp_path / "gen")]
    args += ["--features", str(feats), "--n-boot", "5", "--data-dir", str(tiny_data_dir)]
    args += ["--label-scores", "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "ev")]
    assert main(args) == 0
    text = capsys.readouterr().out
    for word in ("density", "coverage", "class 0", "class 1", "agreement", "CAS", "gates"):
        assert word in text, word
    assert (tmp_path / "ev" / "real_classifier" / "trained_on.json").is_file()
    import json

    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(m["gates"]["results"]) == 6  # CAS's gate switched off by the config
    assert m["label_agreement"]["n_synthetic"] == 8 and m["cas"]["n_synthetic"] == 8
