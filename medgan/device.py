"""Where and in what precision to compute: device choice, bf16 autocast and channels-last policy.

A leaf module (it imports nothing from medgan but :mod:`medgan.errors`), so any layer can use it.
"""

from __future__ import annotations

import contextlib

import torch

from medgan.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else as given (must be available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", f"{name} requested but no CUDA device is available")
    return dev


#: Below this many pixels per image, ``auto`` keeps CUDA training in fp32 and the default memory
#: layout. Small GAN steps are bound by kernel launches, not by the GPU, and bf16 casts and layout
#: changes add kernels: on an H100 a 28-px cGAN step ran at 33 steps/s in fp32 and 24 with bf16 +
#: channels-last, 1,028 vs 1,277 kernels per step, with 4 ms of kernel time in 42 ms (docs/benchmarks.md).
AUTO_MIN_PIXELS = 128 * 128


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        return False  # ATen's kernels are held below AVX-512 (e.g. ATEN_CPU_CAPABILITY=avx2)
    cpu = torch.cpu
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def fast_paths(
    device: torch.device, amp: str, channels_last: str, shape: tuple[int, ...]
) -> tuple[str, bool]:
    """Resolve ``train.amp`` / ``train.channels_last`` for images of ``shape`` (C, H, W) on ``device``.

    Returns (``"bf16"`` or ``"off"``, channels-last on?). ``bf16`` / ``on`` force them on,
    ``off`` forces them off, ``auto`` turns them on on CUDA from :data:`AUTO_MIN_PIXELS` pixels
    per image up. On a CPU, ``auto`` stays fp32 and ``bf16`` needs native bf16 (AVX512-BF16 or
    AMX, :func:`cpu_has_bf16`); there it made a 28-px cGAN step about 1.8x faster
    (docs/benchmarks.md), elsewhere it is refused rather than emulated. ``bf16-if-native``: bf16
    wherever the hardware runs it natively (such a CPU; a CUDA GPU with bf16 support), fp32
    elsewhere — the same config then runs everywhere, but its numbers depend on the machine.
    """
    cuda = device.type == "cuda"
    big = int(shape[-1]) * int(shape[-2]) >= AUTO_MIN_PIXELS
    if amp == "bf16-if-native":
        native = cpu_has_bf16() if device.type == "cpu" else cuda and torch.cuda.is_bf16_supported()
        amp = "bf16" if native else "off"
    if device.type == "cpu" and amp == "bf16":
        if not cpu_has_bf16():
            raise ConfigError(
                "train.amp", "bf16 on this CPU would be emulated (no AVX512-BF16 or AMX); use auto or off"
            )
        use_amp = True
    else:
        use_amp = cuda and (amp == "bf16" or (amp == "auto" and big))
    use_cl = channels_last == "on" or (cuda and channels_last == "auto" and big)
    return ("bf16" if use_amp else "off"), use_cl


def sampling_precision(device: torch.device, amp: str) -> str:
    """The ``precision`` (``fp32`` / ``bf16``) in which a run that trains with ``train.amp`` samples
    its synthesizers for its own use (evaluation sets, study pools): bf16 exactly when ``amp`` asks
    for it and the device runs it natively (:func:`fast_paths`' rule for ``bf16`` /
    ``bf16-if-native``); ``auto`` and ``off`` sample in fp32, the reproducible reference."""
    if amp not in ("bf16", "bf16-if-native"):
        return "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA or CPU when ``amp`` is ``bf16`` (as resolved by :func:`fast_paths`); else a no-op.

    Synthesizers pass the value resolved by :func:`fast_paths`, so ``auto`` means the size rule there.
    """
    if device.type in ("cuda", "cpu") and amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type == "cuda" and amp == "auto":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
