"""The CUDA paths: bf16 training, channels-last, fused Adam, per-seed noise and generation on CPU vs CUDA.

Every test here is marked ``gpu`` and skipped where ``torch.cuda.is_available()`` is False
(tests/conftest.py); ``benchmarks/gpu_suite.sh`` runs them first (``pytest -m gpu tests/test_gpu.py``).

Tolerances, CPU vs CUDA generation from one checkpoint (images in [-1, 1]):

- the per-seed noise is bit-identical (integer hashing, then float64 Box-Muller rounded to float32);
- strict fp32 (TF32 off for cuDNN convolutions and matmuls): max |difference| <= 1e-4, 8-bit PNG
  pixels within 1 level (only a value sitting on a rounding boundary can flip);
- PyTorch's defaults, as ``medgan generate --device cuda`` runs (cuDNN convolutions may use TF32,
  a 10-bit mantissa): max |difference| <= 2.5e-2, mean <= 2.5e-3, PNG pixels within 2 levels. Emulating
  TF32 rounding on a CPU gave max 5e-3, mean 5e-4, 1 level, for the tiny generator here;
- on one device the same generation twice is byte-identical (fixed batches, no cuDNN benchmarking).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medgan.config import config_from_dict
from medgan.device import fast_paths
from medgan.generate import generate
from medgan.seeding import _mix64, derive_seed, noise_for_seeds
from medgan.synthesis.cgan import CGANSynthesizer, ConditionalGAN
from medgan.train import train
from tests.conftest import tiny_config

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
SHAPE = (1, 16, 16)  # tests/conftest.py's tinymnist


def _images(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny learnable training images in [-1, 1]: class 0 dark, class 1 bright blocks."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.full((n, *SHAPE), -1.0)
    for i, lab in enumerate(labels.tolist()):
        cy, cx = torch.randint(4, 12, (2,), generator=g).tolist()
        x[i, :, cy - 3 : cy + 3, cx - 3 : cx + 3] = -0.4 if lab == 0 else 0.8
    return x, labels


def _task(**train_overrides: object) -> ConditionalGAN:
    """A tiny conditional GAN on CUDA with the given ``train`` settings, its data attached."""
    cfg = config_from_dict(tiny_config(steps=20, device="cuda", **train_overrides))
    task = ConditionalGAN(cfg.model, cfg.train, 2, SHAPE, CUDA, cfg.seed)
    task.attach_data(*_images(), cfg.seed)
    return task


def _finite_step(task: ConditionalGAN, step: int) -> dict[str, float]:
    stats = {k: float(v) for k, v in task.train_step(step).items()}
    assert all(math.isfinite(v) for v in stats.values()), (step, stats)
    return stats


def _conv_outputs(net: torch.nn.Module, seen: list[torch.Tensor]) -> list[torch.utils.hooks.RemovableHandle]:
    """Record every Conv2d output of ``net`` into ``seen`` (its dtype and memory format matter here)."""
    return [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]


def _all_finite(net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


# ------------------------------------------------------------------------------ training paths


def test_bf16_training_steps_run_and_stay_finite() -> None:
    task = _task(amp="bf16", channels_last="off")
    assert task.amp == "bf16" and not task.channels_last
    seen: list[torch.Tensor] = []
    hooks = _conv_outputs(task.d, seen) + _conv_outputs(task.g, seen)
    try:
        first = _finite_step(task, 0)
    finally:
        for h in hooks:
            h.remove()
    assert seen and all(t.dtype == torch.bfloat16 for t in seen)  # the convolutions ran under bf16 autocast
    for step in range(1, 20):
        last = _finite_step(task, step)
    assert last["loss_d"] != first["loss_d"]  # it trained
    for net in (task.g, task.d, task.g_ema):
        assert _all_finite(net) and all(p.dtype == torch.float32 for p in net.parameters())  # fp32 masters
    imgs = task.generate([0, 1, 0, 1], [1, 2, 3, 4])
    assert np.isfinite(imgs).all() and imgs.min() >= -1 and imgs.max() <= 1


def test_bf16_training_run_writes_finite_stats_and_a_usable_checkpoint(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    """``medgan train`` with train.amp: bf16 on CUDA, end to end (fit loop, stats, checkpoint)."""
    cfg = config_from_dict(tiny_config(steps=12, device="cuda", amp="bf16", channels_last="on"))
    ckpt = train(cfg, tmp_path / "run", tiny_data_dir)
    rows = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss_d" in r]
    assert [r["step"] for r in losses] == list(range(1, 13))
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in losses)
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["config"]["train"]["amp"] == "bf16" and meta["config"]["train"]["device"] == "cuda"
    synth = CGANSynthesizer(ckpt, "cpu")  # a bf16/CUDA run's checkpoint generates on a CPU too
    imgs = synth.generate([0, 1], [5, 6])
    assert imgs.shape == (2, *SHAPE) and bool(torch.isfinite(imgs).all())


def test_channels_last_training() -> None:
    task = _task(amp="off", channels_last="on")
    assert task.channels_last and task.amp == "off"
    for net in (task.g, task.d, task.g_ema):
        convs = [p for p in net.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    seen: list[torch.Tensor] = []
    hooks = _conv_outputs(task.d, seen)
    try:
        _finite_step(task, 0)
    finally:
        for h in hooks:
            h.remove()
    cl = [t for t in seen if t.dim() == 4 and min(t.shape[1:]) > 1]  # where the two layouts differ
    assert cl and all(t.is_contiguous(memory_format=torch.channels_last) for t in cl)
    for step in range(1, 10):
        _finite_step(task, step)
    for net in (task.g, task.d):  # the optimizer steps keep the layout
        convs = [p for p in net.parameters() if p.dim() == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs) and _all_finite(net)


def test_auto_fast_paths_on_cuda() -> None:
    """train.amp / channels_last ``auto``: on for CUDA from 128 x 128 pixels, off below; never on a CPU."""
    assert fast_paths(CUDA, "auto", "auto", (1, 16, 16)) == ("off", False)
    assert fast_paths(CUDA, "auto", "auto", (1, 128, 128)) == ("bf16", True)
    assert fast_paths(torch.device("cpu"), "auto", "auto", (1, 128, 128)) == ("off", False)
    native = "bf16" if torch.cuda.is_bf16_supported() else "off"
    assert fast_paths(CUDA, "bf16-if-native", "off", (1, 16, 16)) == (native, False)


def test_fused_adam_on_cuda() -> None:
    task = _task(amp="off", channels_last="off")
    for opt in (task.opt_g, task.opt_d):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults.get("fused") is True and all(g["fused"] is True for g in opt.param_groups)
    _finite_step(task, 0)  # the first step allocates the optimizer state
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _finite_step(task, 1)
        torch.cuda.synchronize()
    ops = {e.key for e in prof.key_averages()}
    assert any("_fused_adam" in k for k in ops), sorted(ops)
    assert not any("_foreach_addcdiv" in k for k in ops)  # not the foreach path
    # a CPU run of the same model uses foreach Adam instead (fused is CUDA-only here)
    cfg = config_from_dict(tiny_config(steps=2, device="cpu"))
    cpu = ConditionalGAN(cfg.model, cfg.train, 2, SHAPE, torch.device("cpu"), cfg.seed)
    assert not cpu.opt_g.defaults.get("fused") and cpu.opt_g.defaults.get("foreach") is True


# ---------------------------------------------------------------------------------- noise


def test_per_seed_noise_identical_on_cpu_and_cuda() -> None:
    # the seeds medgan generate uses (derive_seed(run seed, class, index)), plus the int64 edges
    seeds = [derive_seed(s, c, k) for s in (0, 7) for c in range(3) for k in range(300)]
    seeds += [0, 1, 2, 2**31, 2**62 + 12345, 2**63 - 1, -1, -(2**63)]
    s = torch.tensor(seeds, dtype=torch.int64)
    assert torch.equal(_mix64(s.to(CUDA)).cpu(), _mix64(s))  # the integer hashing is exact
    for z_dim in (1, 16, 17, 128):
        cpu = noise_for_seeds(seeds, z_dim)
        gpu = noise_for_seeds(seeds, z_dim, CUDA)
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        gpu = gpu.cpu()
        assert torch.equal(gpu, cpu), float((gpu - cpu).abs().max())
    # on CUDA too a seed's vector does not depend on its batch
    full = noise_for_seeds(seeds, 128, CUDA)
    assert torch.equal(noise_for_seeds(seeds[17:18], 128, CUDA), full[17:18])


# ----------------------------------------------------------------------- generation, CPU vs CUDA


@pytest.fixture(scope="module")
def cpu_checkpoint(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint trained on the CPU (fp32), so that both devices load the same weights."""
    cfg = config_from_dict(tiny_config(steps=8, device="cpu", amp="off", channels_last="off"))
    return train(cfg, tmp_path_factory.mktemp("cpu_run"), tiny_data_dir)


def _npz_images(out: Path) -> np.ndarray:
    m = pd.read_csv(out / "manifest.csv")
    shards = {p: np.load(out / p) for p in dict.fromkeys(m["path"])}
    return np.concatenate([shards[p]["images"] for p in shards])


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """No TF32 for cuDNN convolutions or CUDA matmuls during the test (then PyTorch's settings again)."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def _compare(cpu_checkpoint: Path, tmp_path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    a = generate(cpu_checkpoint, tmp_path / f"cpu-{fmt}", 24, fmt=fmt, seed=3, device="cpu")
    b = generate(cpu_checkpoint, tmp_path / f"cuda-{fmt}", 24, fmt=fmt, seed=3, device="cuda")
    assert a.equals(b)  # the same files, labels and per-image seeds
    if fmt == "npz":
        return _npz_images(tmp_path / f"cpu-{fmt}"), _npz_images(tmp_path / f"cuda-{fmt}")
    load = lambda out: np.stack([np.asarray(Image.open(out / p), np.int32) for p in a["path"]])  # noqa: E731
    return load(tmp_path / f"cpu-{fmt}"), load(tmp_path / f"cuda-{fmt}")


@pytest.mark.usefixtures("strict_fp32")
def test_generate_cpu_vs_cuda_strict_fp32(cpu_checkpoint: Path, tmp_path: Path) -> None:
    x, y = _compare(cpu_checkpoint, tmp_path, "npz")
    assert x.shape == y.shape == (48, *SHAPE) and np.isfinite(y).all()
    diff = np.abs(x - y)
    assert diff.max() <= 1e-4, (diff.max(), diff.mean())
    p, q = _compare(cpu_checkpoint, tmp_path, "png")
    assert np.abs(p - q).max() <= 1, np.abs(p - q).max()


def test_generate_cpu_vs_cuda_default_precision(cpu_checkpoint: Path, tmp_path: Path) -> None:
    """As ``medgan generate --device cuda`` runs: PyTorch's default TF32 settings for convolutions."""
    x, y = _compare(cpu_checkpoint, tmp_path, "npz")
    diff = np.abs(x - y)
    assert diff.max() <= 2.5e-2 and diff.mean() <= 2.5e-3, (diff.max(), diff.mean())
    p, q = _compare(cpu_checkpoint, tmp_path, "png")
    assert np.abs(p - q).max() <= 2, np.abs(p - q).max()


def test_generate_on_cuda_twice_is_byte_identical(cpu_checkpoint: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate(cpu_checkpoint, tmp_path / name, 24, fmt="npz", seed=11, device="cuda")
    files = lambda out: {  # noqa: E731
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "generate.json"  # generate.json holds the creation time
    }
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_synthesizer_on_cuda_uses_channels_last_and_bf16_stays_close(cpu_checkpoint: Path) -> None:
    cpu, gpu = CGANSynthesizer(cpu_checkpoint, "cpu"), CGANSynthesizer(cpu_checkpoint, "cuda")
    convs = [p for p in gpu.g.parameters() if p.dim() == 4]
    assert convs and all(p.device.type == "cuda" for p in convs)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    labels = [c for c in (0, 1) for _ in range(32)]
    seeds = [derive_seed(0, c, k) for c in (0, 1) for k in range(32)]
    fp32, bf16 = gpu.generate(labels, seeds), gpu.generate(labels, seeds, precision="bf16")
    assert fp32.device.type == bf16.device.type == "cpu" and bf16.dtype == torch.float32
    ref = cpu.generate(labels, seeds)
    assert float((fp32 - ref).abs().max()) <= 2.5e-2
    # bf16 autocast: not bit-identical, but close (emulated on a CPU: max 0.05, mean 0.005)
    d = (bf16 - fp32).abs()
    assert bool(torch.isfinite(bf16).all()) and float(d.max()) <= 0.25 and float(d.mean()) <= 0.03
