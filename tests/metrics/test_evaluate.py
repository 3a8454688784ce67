"""Feature extractors, diversity, memorization and the whole evaluation (CLI included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medgan.cli import main
from medgan.errors import InputError
from medgan.metrics import evaluate as evaluate_module
from medgan.metrics.diversity import memorization, ms_ssim_params, within_class_ms_ssim
from medgan.metrics.evaluate import (
    _check_eval_sets,
    _floor_metrics,
    _label_score_metrics,
    evaluate,
    load_synthetic,
    split_spec,
)
from medgan.metrics.features import InceptionExtractor, TorchScriptExtractor, get_extractor, inception_path


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def pool_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TorchScript feature network (4x4 average pooling): fast stand-in for Inception."""
    path = tmp_path_factory.mktemp("ts") / "pool.pt"
    torch.jit.script(_Pool()).save(str(path))
    return path


def test_inception_weights_found_offline_and_preprocessing() -> None:
    path = inception_path()
    assert path.name == "default_1.pt" and path.stat().st_size > 80_000_000
    ext = InceptionExtractor("cpu")
    x = torch.linspace(-1, 1, 28 * 28).reshape(1, 1, 28, 28)
    y = ext.preprocess(x)
    assert y.shape == (1, 3, 299, 299)
    assert y.min() >= -1.0 and y.max() <= 0.9921875 + 1e-6
    feats = ext(np.zeros((2, 1, 28, 28), np.float32))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()


def test_registry(pool_features: Path) -> None:
    assert isinstance(get_extractor(str(pool_features)), TorchScriptExtractor)
    with pytest.raises(InputError, match="unknown extractor"):
        get_extractor("vgg")
    with pytest.raises(InputError, match="needs a trained classifier"):
        get_extractor("domain")


def test_ms_ssim_valid_at_28px() -> None:
    k, w = ms_ssim_params((28, 28))
    assert k == 3 and len(w) == 4 and abs(sum(w) - 1) < 1e-9  # 5 scales need > 32 px
    rng = np.random.default_rng(0)
    same = np.repeat(rng.uniform(-1, 1, (1, 1, 28, 28)), 6, axis=0).astype(np.float32)
    noise = rng.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32)
    labels = np.zeros(6, np.int64)
    assert within_class_ms_ssim(same, labels)["mean"] > 0.99
    assert within_class_ms_ssim(noise, labels)["mean"] < 0.3


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """``n`` random smooth 16 px slices in [-1, 1] (low-pass noise): new images, no two alike."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=16, mode="bicubic")
    x = x - x.amin(dim=(2, 3), keepdim=True)
    return (x / x.amax(dim=(2, 3), keepdim=True) * 2 - 1).numpy().astype(np.float32)


def test_memorization_sees_near_copies_and_is_calibrated_on_held_out_slices() -> None:
    """Exact copies, copies with noise and brightness-shifted copies are flagged; new images drawn from
    the same distribution as the training set stay within what chance allows (the held-out rate)."""
    train, heldout, new = _smooth_images(300, 0), _smooth_images(150, 1), _smooth_images(60, 2)
    rng = np.random.default_rng(0)
    copies = train[:10]
    noisy = np.clip(train[10:20] + rng.normal(0, 0.02, (10, 1, 16, 16)), -1, 1).astype(np.float32)
    brighter = np.clip(train[20:30] * 0.9 + 0.05, -1, 1).astype(np.float32)
    feat = lambda x: torch.nn.functional.avg_pool2d(torch.from_numpy(x), 4).flatten(1).double().numpy()  # noqa: E731

    def check(syn: np.ndarray) -> dict:
        return memorization(syn, feat(syn), train, feat(train), heldout, feat(heldout))

    clean = check(new)
    assert clean["reference"] == "held-out real slices" and clean["reference_duplicates"] == 0
    assert clean["count"] <= clean["allowed"] and clean["excess"] == 0 and clean["exact"] == 0
    res = check(np.concatenate([new, copies, noisy, brighter]))
    flagged = res["flagged"]
    assert flagged[60:].all()  # every planted copy
    assert res["exact"] == 20  # exact and brightness / contrast-shifted copies: correlation 1
    assert res["excess"] >= 30 - res["allowed"] and res["excess"] >= res["exact"]
    assert (res["pixel"]["nn_index"][60:70] == np.arange(10)).all()


def test_memorization_sets_the_datas_own_duplicates_aside() -> None:
    """Held-out slices identical to training slices (a data set's duplicates) do not loosen the
    thresholds; they are counted, and an exact copy is never excused as chance."""
    train, heldout = _smooth_images(200, 3), _smooth_images(100, 4)
    heldout[:5] = train[:5]  # the data's own duplicates across splits
    feat = lambda x: x.reshape(len(x), -1)[:, ::8].astype(np.float64)  # noqa: E731
    syn = np.concatenate([_smooth_images(40, 5), train[50:51]])
    res = memorization(syn, feat(syn), train, feat(train), heldout, feat(heldout))
    assert res["reference_duplicates"] == 5 and res["pixel"]["threshold"] < 0.999
    assert res["exact"] == 1 and res["excess"] >= 1 and res["flagged"][-1]
    loo = memorization(syn, feat(syn), train, feat(train))  # no held-out slices: train leave-one-out
    assert loo["reference"] == "training slices (leave one out)" and loo["flagged"][-1]


def test_split_spec() -> None:
    assert split_spec("medmnist:breastmnist:test") == ("medmnist:breastmnist", "test")
    assert split_spec("medmnist:breastmnist") == ("medmnist:breastmnist", "test")
    assert split_spec("configs/x.yaml:val") == ("configs/x.yaml", "val")


class _Real:
    """Just what the input check reads of a SliceSet: its length and images."""

    def __init__(self, n: int) -> None:
        self.images = np.zeros((n, 1, 8, 8), np.float32)

    def __len__(self) -> int:
        return len(self.images)


def test_check_eval_sets() -> None:
    syn = np.zeros((3, 1, 8, 8), np.float32)
    _check_eval_sets(_Real(2), "val", syn, "real", "syn")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="real: needs at least 2 real slices in split 'val', found 1"):
        _check_eval_sets(_Real(1), "val", syn, "real", "syn")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"syn: synthetic slices \(1, 8, 4\) differ from real \(1, 8, 8\)"):
        _check_eval_sets(_Real(2), "val", syn[..., :4], "real", "syn")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="syn: needs at least 2 synthetic slices"):
        _check_eval_sets(_Real(2), "val", syn[:1], "real", "syn")  # type: ignore[arg-type]


def test_floor_metrics_at_the_synthetic_n_in_the_real_class_mix() -> None:
    rng = np.random.default_rng(0)
    f_real, f_train = rng.normal(size=(8, 4)), rng.normal(size=(30, 4))
    real_y, train_y = np.array([0] * 6 + [1] * 2), np.arange(30) % 2
    fl = _floor_metrics(f_real, f_train, real_y, train_y, 12, ["a", "b"], seed=0)
    assert fl["floor_n"] == 12 and fl["floor_class_counts"] == {"a": 9, "b": 3}
    assert list(fl)[-4:] == ["floor_precision", "floor_recall", "floor_density", "floor_coverage"]
    assert _floor_metrics(f_real, f_train, real_y, train_y, 100, ["a", "b"], seed=0)["floor_n"] <= 30


def test_label_score_metrics_skipped_only_if_possible(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> dict:
        raise InputError("val", "the validation set holds only class 0")

    monkeypatch.setattr(evaluate_module, "compute_label_scores", refuse)
    syn, labels = np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.int64)
    skipped = _label_score_metrics(
        None,  # type: ignore[arg-type]
        "test",
        syn,
        labels,
        "if-possible",
        None,
        None,
        None,
        0,
    )
    assert skipped == {"label_scores_skipped": "val: the validation set holds only class 0"}
    with pytest.raises(InputError, match="holds only class 0"):
        _label_score_metrics(None, "test", syn, labels, True, None, None, None, 0)  # type: ignore[arg-type]


def test_evaluate_end_to_end_and_cache(
    tiny_checkpoint: Path, tiny_data_dir: Path, pool_features: Path, tmp_path: Path
) -> None:
    from medgan.generate import generate

    generate(tiny_checkpoint, tmp_path / "gen", 6, fmt="npz")
    ext = TorchScriptExtractor(pool_features)
    calls = {"n": 0}
    original = ext.__call__

    class Counting:
        name, key = ext.name, ext.key

        def __call__(self, images: np.ndarray) -> np.ndarray:
            calls["n"] += len(images)
            return original(images)

    m = evaluate(
        "medmnist:tinymnist:val",
        str(tmp_path / "gen"),
        Counting(),
        tiny_data_dir,
        out=tmp_path / "ev",
        n_boot=20,
        cache=tmp_path / "cache",
    )
    keys = {
        "fid",
        "fid_ci",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "ms_ssim",
        "memorized_count",
        "n_real",
        "n_synthetic",
        "floor_fid",
        "features",
    }
    assert keys <= set(m)
    assert m["n_real"] == 8 and m["n_synthetic"] == 12 and m["floor_n"] == 12
    assert m["fid_ci"][0] <= m["fid"] <= m["fid_ci"][1]
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["fid"] == pytest.approx(m["fid"])
    assert (tmp_path / "ev" / "closest_pairs.png").is_file()
    first = calls["n"]
    m2 = evaluate(
        "medmnist:tinymnist:val",
        str(tmp_path / "gen"),
        Counting(),
        tiny_data_dir,
        n_boot=20,
        cache=tmp_path / "cache",
    )
    assert (
        calls["n"] - first == 12
    )  # real val and train features came from the cache; only synthetic recomputed
    assert m2["fid"] == pytest.approx(m["fid"])  # reproducible


def test_cli_evaluate_json_and_errors(
    tiny_checkpoint: Path,
    tiny_data_dir: Path,
    pool_features: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    from medgan.generate import generate

    generate(tiny_checkpoint, tmp_path / "gen", 3, fmt="png")
    args = [
        "evaluate",
        "--real",
        "medmnist:tinymnist:test",
        "--synthetic",
        str(tmp_path / "gen"),
        "--features",
        str(pool_features),
    ]
    code = main([*args, "--json", "--n-boot", "10", "--data-dir", str(tiny_data_dir)])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["n_synthetic"] == 6
    generate(tiny_checkpoint, tmp_path / "one", 1, fmt="png", classes=["0"])
    code = main(
        [*args[:4], str(tmp_path / "one"), "--features", str(pool_features), "--data-dir", str(tiny_data_dir)]
    )
    assert code == 2 and "at least 2" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_evaluate_breastmnist_with_inception(data_dir: Path, tmp_path: Path) -> None:
    """BreastMNIST real val against a (briefly trained) cGAN's samples, TF-Inception features, offline.

    The real slices are BreastMNIST's own, the first 64 / 32 / 32 of each split (Inception runs at
    about 7 slices/s on 2 CPU cores: all 780 took 100 s of the suite)."""
    from medgan.config import config_from_dict
    from medgan.generate import generate
    from medgan.train import train

    with np.load(data_dir / "medmnist" / "breastmnist.npz") as z:
        keep = {
            f"{s}_{k}": z[f"{s}_{k}"][:n]
            for s, n in (("train", 64), ("val", 32), ("test", 32))
            for k in ("images", "labels")
        }
    assert all(len(np.unique(keep[f"{s}_labels"])) == 2 for s in ("train", "val", "test"))
    data_dir = tmp_path / "data"
    (data_dir / "medmnist").mkdir(parents=True)
    np.savez(data_dir / "medmnist" / "breastmnist.npz", **keep)
    cfg = {
        "data": {"source": {"kind": "medmnist", "name": "breastmnist"}},
        "model": {"g_channels": 32, "d_channels": 16},
        "train": {"steps": 2, "batch_size": 16},
    }
    ckpt = train(config_from_dict(cfg), tmp_path / "run", data_dir)
    generate(ckpt, tmp_path / "gen", 20, fmt="npz")
    m = evaluate(
        "medmnist:breastmnist:val",
        str(tmp_path / "gen"),
        InceptionExtractor("cpu"),
        data_dir,
        n_boot=20,
        run_dir=tmp_path / "run",
        cache=tmp_path / "cache",
    )
    assert m["n_real"] == 32 and m["n_synthetic"] == 40 and m["features"] == "inception"
    assert m["floor_fid"] < m["fid"]  # 2 training steps cannot beat real data
    assert m["discriminator_accuracy"]["real"] >= 0.0


def test_domain_features_train_and_reuse_a_classifier(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from medgan.generate import generate

    generate(tiny_checkpoint, tmp_path / "gen", 4, fmt="npz")
    run = tmp_path / "run"
    args = [
        "evaluate",
        "--real",
        "medmnist:tinymnist:val",
        "--synthetic",
        str(tmp_path / "gen"),
        "--features",
        "domain",
    ]
    args += [
        "--run",
        str(tiny_checkpoint.parents[1]),
        "--json",
        "--n-boot",
        "5",
        "--data-dir",
        str(tiny_data_dir),
    ]
    code = main(args)
    m = json.loads(capsys.readouterr().out)
    assert code == 0 and m["features"].startswith("domain:resnet10")
    assert (tiny_checkpoint.parents[1] / "classifier").is_dir()
    assert not run.exists()


def test_synthetic_source_takes_a_split_and_may_not_overlap_the_real_side(
    tiny_data_dir: Path, pool_features: Path, tmp_path: Path
) -> None:
    """``--synthetic SOURCE:split`` takes that split only; a side that holds the real slices is refused."""
    from medgan.metrics.evaluate import check_sides_apart, load_synthetic

    imgs, labels, _ = load_synthetic("medmnist:tinymnist:train", tiny_data_dir, (1, 16, 16))
    all_imgs, _, _ = load_synthetic("medmnist:tinymnist", tiny_data_dir, (1, 16, 16))
    assert len(imgs) == 48 and len(labels) == 48 and len(all_imgs) == 48 + 8 + 8
    for syn in ("medmnist:tinymnist", "medmnist:tinymnist:test", "medmnist:tinymnist:all"):
        with pytest.raises(
            InputError,
            match=r"^--synthetic: .* holds the real side's slices .*e\.g\. medmnist:tinymnist:train$",
        ):
            check_sides_apart("medmnist:tinymnist:test", syn)
    check_sides_apart("medmnist:tinymnist:test", "medmnist:tinymnist:train")  # apart: fine
    check_sides_apart("medmnist:tinymnist:test", "medmnist:othermnist")
    m = evaluate(
        "medmnist:tinymnist:val",
        "medmnist:tinymnist:train",
        TorchScriptExtractor(pool_features),
        tiny_data_dir,
        n_boot=10,
        cache=tmp_path / "cache",
    )
    assert m["n_synthetic"] == 48 and m["n_real"] == 8
    with pytest.raises(InputError, match="holds the real side's slices"):
        evaluate(
            "medmnist:tinymnist:val", "medmnist:tinymnist", TorchScriptExtractor(pool_features), tiny_data_dir
        )


def test_the_real_slices_spelled_another_way_are_refused_by_content(
    tiny_data_dir: Path, pool_features: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test split named as ``SOURCE:test`` on one side and as the ``.npz`` path, a config file or a
    PNG copy on the other is the same data: refused from the pixels (for the synthetic side and for
    CAS's training set), exit 2 with one line; disjoint data still evaluates."""
    import yaml
    from PIL import Image

    npz = tiny_data_dir / "medmnist" / "tinymnist.npz"
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"source": {"kind": "medmnist", "name": "tinymnist"}}}))
    # the test split copied to a PNG generation folder (8-bit files, as `medgan generate` writes)
    test_imgs, test_y, _ = load_synthetic("medmnist:tinymnist:test", tiny_data_dir, (1, 16, 16))
    gen = tmp_path / "gen-copy"
    gen.mkdir()
    rows = []
    for i, (img, y) in enumerate(zip(test_imgs, test_y, strict=True)):
        px = np.rint((img[0] + 1.0) * 127.5).astype(np.uint8)
        Image.fromarray(px).save(gen / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": int(y), "format": "png"})
    pd.DataFrame(rows).to_csv(gen / "manifest.csv", index=False)
    ex = TorchScriptExtractor(pool_features)
    for syn in (f"{npz}:test", f"{cfg}:test", str(gen)):
        with pytest.raises(InputError, match=r"^--synthetic: .*8 of the 8 slices .* pixel-identical"):
            evaluate("medmnist:tinymnist:test", syn, ex, tiny_data_dir, n_boot=5)
    with pytest.raises(InputError, match=r"^--cas-synthetic: .* would train CAS on its test slices"):
        evaluate(
            "medmnist:tinymnist:test",
            "medmnist:tinymnist:train",
            ex,
            tiny_data_dir,
            n_boot=5,
            label_scores=True,
            cas_synthetic=f"{npz}:test",
        )
    args = ["evaluate", "--real", "medmnist:tinymnist:test", "--synthetic", f"{npz}:test"]
    code = main([*args, "--features", str(pool_features), "--data-dir", str(tiny_data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pixel-identical" in err and "Traceback" not in err
    m = evaluate("medmnist:tinymnist:test", f"{npz}:train", ex, tiny_data_dir, n_boot=5)
    assert m["n_synthetic"] == 48


def test_slice_digests_match_across_spellings_and_ignore_blank_slices() -> None:
    """One image in float and 8-bit round trip shares a digest; a constant slice has none."""
    from medgan.data.identity import shared_slices, slice_digests

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    roundtrip = np.rint((a + 1) * 127.5) / 127.5 - 1
    assert slice_digests(a) == slice_digests(roundtrip)
    blank = -np.ones((3, 1, 8, 8), np.float32)
    assert slice_digests(blank) == [None, None, None]
    assert shared_slices(blank, blank).count == 0
    s = shared_slices(np.concatenate([a[:1], rng.uniform(-1, 1, (99, 1, 8, 8))]), a)
    assert (s.count, s.n, s.same_data) == (1, 100, False)
    assert shared_slices(a[:3], a).same_data and not shared_slices(a[:2], a[2:]).same_data
    assert not shared_slices(rng.uniform(-1, 1, (4, 1, 8, 8)), a).same_data


def test_synthetic_labels_that_are_not_the_real_sides_classes_are_refused(
    tiny_data_dir: Path, pool_features: Path, tmp_path: Path
) -> None:
    """A generation whose labels are not classes of the real side (out of range, or the same index
    under another class name), or a source with another dataset's classes, is a one-line error:
    per-class scores and CAS would silently compare different things."""
    from PIL import Image

    from medgan.config import config_from_dict
    from medgan.data.sources import load_source
    from tests.conftest import write_fake_medmnist

    classes = list(
        load_source(
            config_from_dict({"data": {"source": {"kind": "medmnist", "name": "tinymnist"}}}).data,
            tiny_data_dir,
        ).classes
    )
    rng = np.random.default_rng(1)
    ex = TorchScriptExtractor(pool_features)

    def generation(name: str, labels: list[int], names: list[str]) -> str:
        gen = tmp_path / name
        gen.mkdir()
        for i in range(len(labels)):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(gen / f"{i}.png")
        pd.DataFrame(
            {
                "path": [f"{i}.png" for i in range(len(labels))],
                "label": labels,
                "label_name": names,
                "format": "png",
            }
        ).to_csv(gen / "manifest.csv", index=False)
        return str(gen)

    ok = generation("ok", [0, 1, 0, 1], [classes[0], classes[1], classes[0], classes[1]])
    assert evaluate("medmnist:tinymnist:test", ok, ex, tiny_data_dir, n_boot=5)["n_synthetic"] == 4
    out_of_range = generation("range", [0, 1, 2, 1], [classes[0], classes[1], "x", classes[1]])
    with pytest.raises(InputError, match=r"manifest\.csv: labels \[2\] are not classes of the real side"):
        evaluate("medmnist:tinymnist:test", out_of_range, ex, tiny_data_dir, n_boot=5)
    renamed = generation("renamed", [0, 1, 0, 1], ["benign", "malignant", "benign", "malignant"])
    with pytest.raises(InputError, match=r"label 0 is 'benign' here but .* another dataset's classes"):
        evaluate("medmnist:tinymnist:test", renamed, ex, tiny_data_dir, n_boot=5)
    other = tmp_path / "data"  # the session's data folder stays as it is
    write_fake_medmnist(other / "medmnist" / "tinymnist.npz")
    write_fake_medmnist(other / "medmnist" / "threemnist.npz", n_classes=3)
    with pytest.raises(
        InputError, match=r"medmnist:threemnist:train: its classes .* are not the real side's"
    ):
        evaluate("medmnist:tinymnist:test", "medmnist:threemnist:train", ex, other, n_boot=5)


def test_a_generation_of_two_sizes_or_no_rows_is_a_one_line_error(tmp_path: Path) -> None:
    """A manifest listing images of two sizes, or a header with no rows, names the file (no traceback)."""
    from PIL import Image

    gen = tmp_path / "gen"
    gen.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8) + 9).save(gen / "a.png")
    Image.fromarray(np.zeros((20, 16), np.uint8) + 9).save(gen / "b.png")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1], "format": "png"}).to_csv(
        gen / "manifest.csv", index=False
    )
    with pytest.raises(
        InputError, match=r"b\.png: is \(1, 20, 16\), the generation's first image \(1, 16, 16\)"
    ):
        load_synthetic(str(gen), tmp_path, (1, 16, 16))
    (gen / "manifest.csv").write_text("path,label,format\n")
    with pytest.raises(InputError, match=r"manifest\.csv: lists no images"):
        load_synthetic(str(gen), tmp_path, (1, 16, 16))
