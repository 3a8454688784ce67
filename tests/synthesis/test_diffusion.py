"""The class-conditional diffusion model: MONAI's UNet, DDPM training, DDIM sampling, exact resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from medgan.config import MODEL_CONFIGS, config_from_dict
from medgan.errors import ConfigError
from medgan.synthesis import registry
from medgan.synthesis.diffusion import (
    PREDICTION_CODES,
    DiffusionSynthesizer,
    build_scheduler,
    ddim_timesteps,
    ddim_update,
    unet_plan,
)
from medgan.train import train
from medgan.training.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import TINY_DIFFUSION, tiny_config

DiffusionConfig = MODEL_CONFIGS["diffusion"]


def _cfg(steps: int = 4, **model: object) -> dict:
    return {**tiny_config(steps), "model": {**TINY_DIFFUSION, **model}}


def test_network_follows_the_image_size() -> None:
    plan = unet_plan((1, 28, 28), DiffusionConfig(kind="diffusion"))
    assert plan["unet"]["channels"] == [32, 64, 64] and plan["unet"]["num_res_blocks"] == 1
    assert plan["unet"]["attention_levels"] == [False, True, True]  # 28 -> 14 -> 7: attention at <= 16 px
    assert plan["multiple"] == 4
    big = unet_plan((3, 128, 96), DiffusionConfig(kind="diffusion"))["unet"]
    assert big["channels"] == [32, 64, 128, 256] and big["in_channels"] == 3 and big["num_res_blocks"] == 2
    assert big["attention_levels"] == [False, False, False, True]


@pytest.mark.parametrize("size", [16, 27])
def test_any_size_is_padded_to_the_levels_and_cropped_back(size: int) -> None:
    from medgan.synthesis.diffusion import PaddedUNet

    net = PaddedUNet((1, size, size + 2), DiffusionConfig(**TINY_DIFFUSION), 2)
    out = net(torch.zeros(3, 1, size, size + 2), torch.tensor([0, 5, 9]), torch.tensor([0, 1, 2]))
    assert out.shape == (3, 1, size, size + 2)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_ddim_update_is_monais_ddim_step(prediction: str) -> None:
    """Where the spacings agree (the steps divide the training timesteps, MONAI's leading spacing
    shifted to end at the last timestep), our DDIM update equals MONAI's DDIMScheduler.step (eta 0)."""
    T, n = 1000, 10
    ref = DDIMScheduler(
        num_train_timesteps=T, schedule="linear_beta", prediction_type=prediction, steps_offset=T // n - 1
    )
    ref.set_timesteps(n)
    ours_t, ours_prev = ddim_timesteps(T, n)
    assert ours_t.tolist() == [999 - 100 * i for i in range(n)]
    acp = ref.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    for t, tp in zip(ours_t.tolist(), ours_prev.tolist(), strict=True):
        want, _ = ref.step(out, t, x)
        a_prev = acp[tp] if tp >= 0 else torch.tensor(1.0)
        got = ddim_update(out, x, acp[t], a_prev, PREDICTION_CODES[prediction], True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_trailing_timesteps_start_at_the_last_training_step() -> None:
    t, prev = ddim_timesteps(1000, 25)
    assert t[0] == 999 and len(t) == 25 and prev[-1] == -1 and (t[:-1] > t[1:]).all()
    assert (prev[:-1] == t[1:]).all()


def test_training_resumes_exactly(tiny_data_dir: Path, tmp_path: Path) -> None:
    whole = train(config_from_dict(_cfg(4)), tmp_path / "a", tiny_data_dir)
    train(config_from_dict(_cfg(2)), tmp_path / "b", tiny_data_dir)
    part = train(config_from_dict(_cfg(4)), tmp_path / "b", tiny_data_dir, resume=True)
    ta, _ = load_checkpoint(whole)
    tb, _ = load_checkpoint(part)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert whole.read_bytes() == part.read_bytes()  # the checkpoint bytes are a function of the state


def test_an_image_is_a_function_of_checkpoint_label_and_seed(tiny_diffusion_checkpoint: Path) -> None:
    s = registry.load_sampler(tiny_diffusion_checkpoint)
    assert isinstance(s, DiffusionSynthesizer) and s.classes == ["0", "1"]
    a = s.generate([0, 1, 1, 0], [5, 6, 7, 8])
    assert a.shape == (4, 1, 16, 16) and a.dtype == torch.float32
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    again = registry.load_sampler(tiny_diffusion_checkpoint).generate([0, 1, 1, 0], [5, 6, 7, 8])
    assert torch.equal(a, again)  # a new load, the same batches: the same bits (as `medgan generate` keeps)
    # alone or in another batch an image agrees to float32 rounding (kernels may differ by batch size)
    one = s.generate([1], [6], batch_size=1)
    torch.testing.assert_close(one, a[1:2], atol=1e-4, rtol=0)
    # 4 training steps leave the zero-initialised output layer near 0: perturb the weights so that
    # the class (and the null class of guidance) visibly reaches the network
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in s.net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    base = s.generate([0, 1, 1, 0], [5, 6, 7, 8])
    assert (s.generate([1], [5]) - base[:1]).abs().max() > 0.01  # the class changes the image
    s.guidance_scale = 3.0  # classifier-free guidance: conditional and null class in one batch
    guided = s.generate([0, 1, 1, 0], [5, 6, 7, 8])
    assert (guided - base).abs().max() > 0.01
    torch.testing.assert_close(guided[2:], s.generate([1, 0], [7, 8]), atol=1e-4, rtol=0)


def test_checkpoint_records_the_sampler_and_refuses_non_finite_weights(
    tiny_diffusion_checkpoint: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from medgan.errors import InputError
    from medgan.io.tensors import write_safetensors
    from medgan.training.checkpoint import read_checkpoint_meta, sha256_file

    meta = read_checkpoint_meta(tiny_diffusion_checkpoint)
    assert meta["model"]["kind"] == "diffusion" and meta["model"]["sampling_steps"] == 3
    run = tmp_path / "bad" / "checkpoints"
    run.mkdir(parents=True)
    bad = run / tiny_diffusion_checkpoint.name
    t = load_file(str(tiny_diffusion_checkpoint))
    key = next(k for k in t if k.startswith("unet_ema.") and t[k].is_floating_point())
    t[key][...] = float("nan")
    write_safetensors(bad, t)
    meta["sha256"] = sha256_file(bad)
    import json

    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"not finite \(NaN or infinity in unet_ema\."):
        registry.load_sampler(bad)


def test_every_prediction_type_and_schedule_trains(tiny_data_dir: Path, tmp_path: Path) -> None:
    for i, (pred, sched) in enumerate((("v_prediction", "cosine"), ("sample", "scaled_linear_beta"))):
        ck = train(
            config_from_dict(_cfg(2, prediction_type=pred, schedule=sched, guidance_scale=2.0)),
            tmp_path / str(i),
            tiny_data_dir,
        )
        imgs = registry.load_sampler(ck).generate([0, 1], [1, 2])
        assert torch.isfinite(imgs).all() and imgs.shape == (2, 1, 16, 16)
    sched = build_scheduler(DiffusionConfig(kind="diffusion", schedule="cosine"))
    assert float(sched.alphas_cumprod[-1]) < 1e-3 and float(sched.alphas_cumprod[0]) > 0.99


def test_export_reproduces_generate(tiny_diffusion_checkpoint: Path) -> None:
    s = registry.load_sampler(tiny_diffusion_checkpoint)
    for scale in (1.0, 2.0):
        s.guidance_scale = scale
        exp = s.export()
        seeds, labels = [3, 2**62 + 1, 9, 11, 12], [1, 0, 0, 1, 1]
        got = exp.module(torch.tensor(seeds), torch.tensor(labels))  # another batch size than traced (2)
        want = s.generate(labels, seeds)
        assert (got - want).abs().max() <= exp.tolerance


def test_checkpoint_selection_scores_the_cheap_sampler(
    tiny_data_dir: Path, tmp_path: Path, pool_features: str
) -> None:
    raw = _cfg(4)
    raw["train"]["select"] = {"every": 2, "n": 10, "features": pool_features}
    ck = train(config_from_dict(raw), tmp_path / "sel", tiny_data_dir)
    assert ck.name == "best.safetensors"
    lines = (tmp_path / "sel" / "stats.jsonl").read_text().splitlines()
    assert sum('"val_fid"' in ln for ln in lines) == 2


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"model: attention_levels needs one entry per level"):
        config_from_dict(
            {**tiny_config(), "model": {"kind": "diffusion", "channels": [8, 16], "attention_levels": [True]}}
        )
    with pytest.raises(ConfigError, match=r"model.guidance: unknown key"):
        config_from_dict({**tiny_config(), "model": {"kind": "diffusion", "guidance": 2}})
    cfg = config_from_dict({**tiny_config(), "model": {"kind": "diffusion"}, "train": {"batch_size": 4}})
    assert cfg.train.betas == (0.9, 0.999) and cfg.train.steps == 3000 and cfg.train.batch_size == 4


def test_resume_refuses_a_changed_model(tiny_data_dir: Path, tmp_path: Path) -> None:
    train(config_from_dict(_cfg(2)), tmp_path / "r", tiny_data_dir)
    with pytest.raises(ConfigError, match=r"cannot resume: the config changed: model.p_uncond"):
        train(config_from_dict(_cfg(4, p_uncond=0.3)), tmp_path / "r", tiny_data_dir, resume=True)
    assert len(list_checkpoints(tmp_path / "r" / "checkpoints")) == 1
    # how the weights are sampled is not how they were trained: a resume may change it
    ck = train(
        config_from_dict(_cfg(4, guidance_scale=1.5, sampling_steps=4)),
        tmp_path / "r",
        tiny_data_dir,
        resume=True,
    )
    assert registry.load_sampler(ck).guidance_scale == 1.5
    shutil.rmtree(tmp_path / "r")


def test_sample_counts_groups_by_class(tiny_diffusion_checkpoint: Path) -> None:
    x, y = registry.load_sampler(tiny_diffusion_checkpoint).sample_counts([2, 3], seed=4)
    assert x.shape == (5, 1, 16, 16) and y.tolist() == [0, 0, 1, 1, 1]
    assert isinstance(x, np.ndarray)
