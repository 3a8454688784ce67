"""CycleGAN: shape tables, losses fall, exact resume, checkpoint round trip, translation."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from medgan.config import CycleGANConfig, config_from_dict
from medgan.errors import ConfigError
from medgan.synthesis.cyclegan import CycleGAN, CycleGANTranslator, ImagePool
from medgan.synthesis.cyclegan_networks import build_cyclegan, patch_scores
from medgan.train import train
from medgan.training.checkpoint import load_checkpoint
from medgan.training.loop import TrainingInterrupted

TINY = {"kind": "cyclegan", "g_channels": 8, "n_res_blocks": 2, "d_channels": 8, "pool_size": 4}


def tiny_cycle_config(steps: int = 6, **train_kw: object) -> dict:
    t = {
        "steps": steps,
        "batch_size": 4,
        "log_every": 1,
        "sample_every": 3,
        "checkpoint_every": 3,
        "keep_last": 5,
    }
    t.update(train_kw)
    return {
        "seed": 0,
        "data": {"source": {"kind": "medmnist", "name": "tinymnist"}},
        "model": dict(TINY),
        "train": t,
    }


@pytest.mark.parametrize(
    ("size", "kw"),
    [(28, {}), (32, {"generator": "unet"}), (64, {}), (64, {"d_scales": 2}), (128, {"n_res_blocks": 2})],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_table(size: int, kw: dict, channels: int) -> None:
    cfg = CycleGANConfig(kind="cyclegan", g_channels=8, d_channels=8, **kw)
    g_ab, _, _, d_b = build_cyclegan(cfg, (channels, size, size))
    x = torch.rand(2, channels, size, size) * 2 - 1
    with torch.no_grad():
        y = g_ab(x)
        scores = patch_scores(d_b, y)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert len(scores) == cfg.d_scales and all(s.shape[0] == 2 and s.shape[1] == 1 for s in scores)


def test_reference_defaults_and_building_blocks() -> None:
    from monai.networks.nets import PatchDiscriminator

    cfg = config_from_dict(
        {"data": {"source": {"kind": "medmnist", "name": "x"}}, "model": {"kind": "cyclegan"}}
    )
    m, t = cfg.model, cfg.train
    assert (m.lambda_cycle, m.lambda_identity, m.pool_size, m.norm) == (10.0, 0.5, 50, "instance")
    assert (t.lr_g, t.lr_d, t.betas, t.lr_schedule) == (2e-4, 2e-4, (0.5, 0.999), "linear_decay")
    _, _, d_a, _ = build_cyclegan(m, (1, 256, 256))
    assert isinstance(d_a, PatchDiscriminator)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_cyclegan(m, (1, 30, 30))


def test_image_pool_mixes_history() -> None:
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    first = pool.query(torch.zeros(4, 1, 2, 2))
    assert torch.equal(first, torch.zeros(4, 1, 2, 2)) and len(pool.images) == 4
    mixed = pool.query(torch.ones(64, 1, 2, 2))
    n_old = int((mixed.flatten(1).sum(1) == 0).sum())
    assert 0 < n_old < 64  # some images came from history


def test_cycle_error_falls_and_run_folder(tiny_data_dir: Path, tmp_path: Path) -> None:
    ckpt = train(
        config_from_dict(tiny_cycle_config(steps=30, checkpoint_every=30, sample_every=30)),
        tmp_path,
        tiny_data_dir,
    )
    stats = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    first = sum(s["loss_cycle"] for s in stats[:5]) / 5
    last = sum(s["loss_cycle"] for s in stats[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert all(torch.isfinite(torch.tensor([s["loss_g"], s["loss_d"]])).all() for s in stats)
    assert stats[-1]["lr_g"] < stats[0]["lr_g"]  # linear decay in the second half
    assert (tmp_path / "samples" / "step-0000030.png").is_file()
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["domains"] == {"mode": "labels", "a": "0", "b": "1", "label_a": 0, "label_b": 1}


def test_resume_after_interrupt_equals_uninterrupted(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = train(config_from_dict(tiny_cycle_config(steps=6)), tmp_path / "a", tiny_data_dir)
    original = CycleGAN.train_step

    def interrupt_at_3(self: CycleGAN, step: int) -> dict:
        out = original(self, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(CycleGAN, "train_step", interrupt_at_3)
    with pytest.raises(TrainingInterrupted):
        train(config_from_dict(tiny_cycle_config(steps=6)), tmp_path / "b", tiny_data_dir)
    monkeypatch.setattr(CycleGAN, "train_step", original)
    resumed = train(config_from_dict(tiny_cycle_config(steps=6)), tmp_path / "b", tiny_data_dir, resume=True)
    a, b = load_checkpoint(full)[0], load_checkpoint(resumed)[0]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # weights, optimizers, pools, RNG streams


def test_translator_round_trip(tiny_data_dir: Path, tmp_path: Path) -> None:
    ckpt = train(config_from_dict(tiny_cycle_config(steps=3)), tmp_path, tiny_data_dir)
    tr = CycleGANTranslator(ckpt)
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    y1, y2 = tr.translate(x, "A2B"), tr.translate(x, "A2B", batch_size=2)
    assert y1.shape == x.shape and torch.allclose(y1, y2, atol=1e-6)
    assert not torch.allclose(tr.translate(x, "B2A"), y1)
    assert tr.domains["a"] == "0"


def test_bad_domains(tiny_data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_cycle_config()
    cfg["model"]["domain_b"] = "tumour"
    with pytest.raises(ConfigError, match=r"model\.domain_b: 'tumour' is not one of the data's classes"):
        train(config_from_dict(cfg), tmp_path, tiny_data_dir)
    cfg["model"]["domain_b"] = 0
    with pytest.raises(ConfigError, match="must differ"):
        train(config_from_dict(cfg), tmp_path, tiny_data_dir)


@pytest.mark.integration
def test_short_cpu_run_on_breastmnist(data_dir: Path, tmp_path: Path) -> None:
    cfg = {
        "seed": 0,
        "data": {"source": {"kind": "medmnist", "name": "breastmnist"}},
        "model": {
            "kind": "cyclegan",
            "domain_a": "normal, benign",
            "domain_b": "malignant",
            "g_channels": 16,
            "n_res_blocks": 3,
            "d_channels": 16,
        },
        "train": {"steps": 4, "batch_size": 4, "log_every": 1, "sample_every": 4, "checkpoint_every": 4},
    }
    ckpt = train(config_from_dict(cfg), tmp_path, data_dir)
    stats = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 4 and all(s["loss_g"] == s["loss_g"] and s["loss_d"] < 100 for s in stats)
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["n_a"] == 399 and meta["n_b"] == 147
