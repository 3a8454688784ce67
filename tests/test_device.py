"""Device and precision resolution (medgan.device)."""

import pytest
import torch

import medgan.device as device
from medgan.errors import ConfigError


def test_fast_paths_auto_only_for_large_images_on_cuda() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert device.fast_paths(cpu, "auto", "auto", (1, 256, 256)) == ("off", False)  # CPU trains in fp32
    assert device.fast_paths(cuda, "auto", "auto", (1, 28, 28)) == ("off", False)  # launch-bound size
    assert device.fast_paths(cuda, "auto", "auto", (1, 128, 128)) == ("bf16", True)
    assert device.fast_paths(cuda, "bf16", "off", (1, 28, 28)) == ("bf16", False)
    assert device.fast_paths(cuda, "off", "auto", (3, 512, 512)) == ("off", True)


def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert device.fast_paths(cpu, "bf16", "on", (1, 28, 28)) == ("bf16", True)
    with device.autocast(cpu, "bf16"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with device.autocast(cpu, "off"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"train\.amp: bf16 on this CPU would be emulated"):
        device.fast_paths(cpu, "bf16", "off", (1, 28, 28))


def test_bf16_if_native_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert device.fast_paths(cpu, "bf16-if-native", "auto", (1, 28, 28)) == ("bf16", False)
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    assert device.fast_paths(cpu, "bf16-if-native", "auto", (1, 28, 28)) == ("off", False)  # no error


def test_no_native_bf16_when_aten_is_held_below_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    """ATEN_CPU_CAPABILITY=avx2 (or a CPU without AVX-512) runs bf16 emulated: bf16-if-native is fp32."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert device.cpu_has_bf16() is False
    assert device.fast_paths(torch.device("cpu"), "bf16-if-native", "auto", (1, 28, 28)) == ("off", False)


def test_resolve_device() -> None:
    assert device.resolve_device("cpu") == torch.device("cpu")
    assert device.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(
            ConfigError, match=r"^train\.device: cuda:0 requested but no CUDA device is available$"
        ):
            device.resolve_device("cuda:0")


def test_leaf_modules_import_nothing_else_from_medgan() -> None:
    import ast
    from pathlib import Path

    root = Path(device.__file__).parent
    for name in ("device.py", "seeding.py", "grids.py"):
        tree = ast.parse((root / name).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert {m for m in mods if m.split(".")[0] == "medgan"} <= {"medgan.errors"}, name
