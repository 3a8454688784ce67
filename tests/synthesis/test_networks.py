"""Network shape table: every supported resolution and channel count, both networks."""

from __future__ import annotations

import pytest
import torch

from medgan.config import CGANConfig
from medgan.synthesis.networks import build_cgan, count_parameters, plan_resolution


@pytest.mark.parametrize("size", [28, 32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_table(size: int, channels: int) -> None:
    cfg = CGANConfig()
    g, d = build_cgan(cfg, n_classes=3, shape=(channels, size, size))
    z = torch.randn(2, cfg.z_dim)
    y = torch.tensor([0, 2])
    with torch.no_grad():
        x = g(z, y)
        s = d(x, y)
    assert x.shape == (2, channels, size, size)
    assert x.abs().max() <= 1.0
    assert s.shape == (2,)
    assert count_parameters(g) > 10_000 and count_parameters(d) > 10_000


def test_rectangular_and_many_classes() -> None:
    g, d = build_cgan(CGANConfig(), n_classes=9, shape=(1, 48, 64))
    x = g(torch.randn(4, 128), torch.arange(4))
    assert x.shape == (4, 1, 48, 64) and d(x, torch.arange(4)).shape == (4,)


def test_plan_resolution() -> None:
    assert plan_resolution((28, 28)) == (2, 7, 7)
    assert plan_resolution((64, 64)) == (4, 4, 4)
    with pytest.raises(ValueError, match=r"set data\.size"):
        plan_resolution((45, 120))


def test_class_conditioning_changes_output() -> None:
    g, _ = build_cgan(CGANConfig(), n_classes=2, shape=(1, 28, 28))
    z = torch.randn(1, 128).repeat(2, 1)
    x = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])


@pytest.mark.parametrize("init", ["xavier", "he", "normal", "default"])
def test_init_and_spectral_norm_options(init: str) -> None:
    cfg = CGANConfig(init=init, spectral_norm={"generator": True, "discriminator": False})
    g, d = build_cgan(cfg, 2, (1, 32, 32))
    assert any("parametrizations" in n for n, _ in g.named_parameters())
    assert not any("parametrizations" in n for n, _ in d.named_parameters())
    assert torch.isfinite(d(g(torch.randn(2, 128), torch.tensor([0, 1])), torch.tensor([0, 1]))).all()


@pytest.mark.parametrize("g_cond,d_arch", [("input", "patch"), ("norm", "global")])
def test_networks_are_monai_composed(g_cond: str, d_arch: str) -> None:
    from monai.networks.blocks import Convolution, ResidualUnit, UpSample
    from monai.networks.nets import Generator

    g, d = build_cgan(CGANConfig(g_cond=g_cond, d_arch=d_arch), 2, (1, 28, 28))
    if g_cond == "input":
        assert isinstance(g.body, Generator)
    else:
        assert any(isinstance(m, UpSample) for m in g.modules())
    assert any(isinstance(m, ResidualUnit) for m in d.modules())
    assert any(isinstance(m, Convolution) for m in g.modules())
