"""The small-data recipe options: conditional norms, whole-slice D with minibatch std, RpGAN, R1/R2,
LeCam, EMA ramp, auto DiffAugment policy, x-flip; each trains, resumes exactly, and loads for generation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgan.config import CGANConfig, config_from_dict
from medgan.synthesis.diffaugment import AUTO_COLOR_BELOW, resolve_policy
from medgan.synthesis.losses import LeCam, d_loss, g_loss, grad_penalty_at
from medgan.synthesis.networks import (
    ConditionalGroupNorm,
    GlobalProjectionDiscriminator,
    MinibatchStd,
    NormConditionalGenerator,
    build_cgan,
)
from medgan.train import train
from medgan.training.checkpoint import load_checkpoint
from medgan.training.ema import ema_beta
from tests.conftest import TINY_MODEL, tiny_config


@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_norm_generator_and_global_discriminator_shapes(size: int) -> None:
    cfg = CGANConfig(g_cond="norm", d_arch="global")
    g, d = build_cgan(cfg, 3, (1, size, size))
    assert isinstance(g, NormConditionalGenerator) and isinstance(d, GlobalProjectionDiscriminator)
    y = torch.tensor([0, 1, 2, 1])
    x = g(torch.randn(4, cfg.z_dim), y)
    assert x.shape == (4, 1, size, size) and x.abs().max() <= 1
    assert d(x, y).shape == (4,)


def test_conditional_norm_starts_as_groupnorm_and_then_depends_on_class() -> None:
    cgn = ConditionalGroupNorm(16, n_classes=2)
    x = torch.randn(2, 16, 4, 4)
    ref = torch.nn.functional.group_norm(x, 8)
    assert torch.allclose(cgn(x, torch.tensor([0, 1])), ref, atol=1e-6)
    with torch.no_grad():
        cgn.gain.weight[1] = 1.0  # class 1: gain 2
    out = cgn(x, torch.tensor([0, 1]))
    assert torch.allclose(out[0], ref[0], atol=1e-6) and torch.allclose(out[1], 2 * ref[1], atol=1e-5)
    # a freshly built generator has zero class gains (starts like plain GroupNorm) ...
    g, _ = build_cgan(CGANConfig(g_cond="norm"), 2, (1, 28, 28))
    assert all(
        float(m.gain.weight.detach().abs().sum()) == 0
        for m in g.modules()
        if isinstance(m, ConditionalGroupNorm)
    )


def test_global_discriminator_sees_every_pixel() -> None:
    """A change in one corner pixel moves the score (the patch D with spatial sum sees it too, but here
    every output unit's receptive field is the whole slice: check the gradient reaches all pixels)."""
    _, d = build_cgan(CGANConfig(d_arch="global", spectral_norm={"discriminator": False}), 2, (1, 28, 28))
    x = torch.zeros(4, 1, 28, 28, requires_grad=True)
    h = d.act(d.fc(d.conv(d.mbstd(d.features(x))).flatten(1)))
    (grad,) = torch.autograd.grad(h[0, 0], x)
    assert (grad[0].abs() > 0).float().mean() > 0.95  # one feature of sample 0 depends on ~all its pixels


def test_minibatch_std_feature() -> None:
    m = MinibatchStd(group=2)
    same = torch.ones(4, 3, 2, 2)
    assert torch.all(m(same)[:, 3] < 1e-3)  # identical samples: no spread
    diverse = torch.randn(4, 3, 2, 2)
    out = m(diverse)
    assert out.shape == (4, 4, 2, 2) and torch.all(out[:, 3] > 0.1)
    assert MinibatchStd(group=4)(torch.randn(6, 2, 2, 2)).shape == (6, 3, 2, 2)  # 4 does not divide 6


def test_rpgan_loss_and_penalties() -> None:
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0])
    assert d_loss("rpgan", real, fake).item() == pytest.approx(
        torch.nn.functional.softplus(torch.tensor([-1.0, 0.0])).mean().item()
    )
    assert g_loss("rpgan", fake, real).item() == pytest.approx(
        torch.nn.functional.softplus(torch.tensor([1.0, 0.0])).mean().item()
    )
    with pytest.raises(ValueError, match="pass real"):
        g_loss("rpgan", fake)
    w = torch.full((1, 1, 2, 2), 0.5)  # linear critic: ||grad||^2 = ||w||^2 = 1
    pen = grad_penalty_at(lambda x: (x * w).sum(dim=(1, 2, 3)), torch.randn(3, 1, 2, 2))
    assert pen.item() == pytest.approx(1.0)


def test_lecam_pulls_scores_towards_the_other_ema() -> None:
    reg = LeCam(decay=0.5)
    reg.update(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0]))  # first call sets the EMAs
    assert reg.ema.tolist() == [1.0, -1.0]
    # real scored above the fake EMA and fake below the real EMA are penalised quadratically
    assert reg(torch.tensor([1.0]), torch.tensor([-1.0])).item() == pytest.approx(4.0 + 4.0)
    assert reg(torch.tensor([-2.0]), torch.tensor([2.0])).item() == pytest.approx(0.0)
    reg.update(torch.tensor([3.0]), torch.tensor([1.0]))
    assert reg.ema.tolist() == [2.0, 0.0]


def test_ema_ramp() -> None:
    assert ema_beta(0.999, None, 0.05, 64_000, 64) == 0.999  # fixed decay when no half-life is set
    early, late = ema_beta(0.999, 10.0, 0.05, 640, 64), ema_beta(0.999, 10.0, 0.05, 10**7, 64)
    assert early == pytest.approx(0.5 ** (64 / 32))  # half-life capped at 5 % of 640 images
    assert late == pytest.approx(0.5 ** (64 / 10_000))  # then 10 kimg
    assert ema_beta(0.999, 10.0, None, 640, 64) == pytest.approx(late)


def test_auto_diffaugment_policy() -> None:
    assert resolve_policy("auto", AUTO_COLOR_BELOW - 1) == ["translation", "cutout", "color"]
    assert resolve_policy("auto", AUTO_COLOR_BELOW) == ["translation", "cutout"]
    assert resolve_policy(["cutout"], 10) == ["cutout"]


def test_xflip_mirrors_about_half_the_batch() -> None:
    from medgan.training.sampler import ClassBatchSampler

    imgs = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    s = ClassBatchSampler(imgs, torch.zeros(64, dtype=torch.long), 64, seed=0, balanced=False, xflip=True)
    x, _ = s.next()
    flipped = (x == imgs[:1].flip(3)).all(dim=(1, 2, 3))
    same = (x == imgs[:1]).all(dim=(1, 2, 3))
    assert bool((flipped | same).all()) and 16 < int(flipped.sum()) < 48


RECIPE = {
    "model": {"g_cond": "norm", "d_arch": "global", "mbstd_group": 4},
    "train": {
        "loss": "rpgan",
        "r1_gamma": 0.1,
        "r2_gamma": 0.1,
        "r1_every": 2,
        "lecam_weight": 0.3,
        "ema_kimg": 0.5,
        "diffaugment": "auto",
        "xflip": True,
        "lr_d": 4e-4,
    },
}


def _recipe_config(steps: int, **train: object) -> dict:
    c = tiny_config(steps=steps, **{**RECIPE["train"], **train})
    c["model"] = {**TINY_MODEL, **RECIPE["model"]}
    return c


def test_full_recipe_trains_resumes_exactly_and_generates(tiny_data_dir: Path, tmp_path: Path) -> None:
    from medgan.synthesis.cgan import CGANSynthesizer

    full = train(config_from_dict(_recipe_config(6)), tmp_path / "a", tiny_data_dir)
    train(config_from_dict(_recipe_config(3, checkpoint_every=3)), tmp_path / "b", tiny_data_dir)
    resumed = train(config_from_dict(_recipe_config(6)), tmp_path / "b", tiny_data_dir, resume=True)
    a, b = load_checkpoint(full)[0], load_checkpoint(resumed)[0]
    assert "lecam.ema" in a and a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    x = CGANSynthesizer(full).generate([0, 1], [1, 2])
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()


def test_checkpoint_without_new_model_keys_loads_the_legacy_networks(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint written before g_cond / d_arch / mbstd_group existed builds the networks it was trained with."""
    import json

    from medgan.synthesis.cgan import CGANSynthesizer
    from medgan.synthesis.networks import ConditionalGenerator

    c = tiny_config(steps=2)
    c["model"].update({"g_cond": "input", "d_arch": "patch", "mbstd_group": 0})
    ckpt = train(config_from_dict(c), tmp_path / "old", tiny_data_dir)
    meta_path = ckpt.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    for key in ("g_cond", "d_arch", "mbstd_group"):
        meta["model"].pop(key)
    meta_path.write_text(json.dumps(meta))
    synth = CGANSynthesizer(ckpt)
    assert isinstance(synth.g, ConditionalGenerator)
    assert synth.generate([0], [3]).shape == (1, 1, 16, 16)


def test_resume_of_a_run_from_before_the_recipe_keys(tiny_data_dir: Path, tmp_path: Path) -> None:
    """An older run (its checkpoint lacks the new keys) resumes when the config names the old behaviour,
    and is refused with a one-line reason when today's defaults would build other networks."""
    import json

    from medgan.config import legacy_keys
    from medgan.errors import ConfigError

    legacy = tiny_config(steps=2)
    legacy["model"].update({"g_cond": "input", "d_arch": "patch", "mbstd_group": 0})
    legacy["train"]["ema_kimg"] = None
    ckpt = train(config_from_dict(legacy), tmp_path / "old", tiny_data_dir)
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    for key in legacy_keys("cgan"):
        section, *rest = key.split(".")
        node = meta["config"][section]
        for part in rest[:-1]:
            node = node[part]
        node.pop(rest[-1], None)
    ckpt.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"cannot resume: the config changed: model\.d_arch"):
        train(config_from_dict(tiny_config(steps=4)), tmp_path / "old", tiny_data_dir, resume=True)
    legacy["train"]["steps"] = 4
    resumed = train(config_from_dict(legacy), tmp_path / "old", tiny_data_dir, resume=True)
    assert json.loads(resumed.with_suffix(".json").read_text())["step"] == 4
