"""Device and precision resolution."""

import pytest
import torch


def test_fast_paths_auto_only_for_large_images_on_cuda() -> None:
    from medgan.training.seeding import fast_paths

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_paths(cpu, "auto", "auto", (1, 256, 256)) == ("off", False)  # CPU trains in fp32
    assert fast_paths(cuda, "auto", "auto", (1, 28, 28)) == ("off", False)  # launch-bound size
    assert fast_paths(cuda, "auto", "auto", (1, 128, 128)) == ("bf16", True)
    assert fast_paths(cuda, "bf16", "off", (1, 28, 28)) == ("bf16", False)
    assert fast_paths(cuda, "off", "auto", (3, 512, 512)) == ("off", True)


def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import medgan.training.seeding as seeding
    from medgan.errors import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.setattr(seeding, "cpu_has_bf16", lambda: True)
    assert seeding.fast_paths(cpu, "bf16", "on", (1, 28, 28)) == ("bf16", True)
    with seeding.autocast(cpu, "bf16"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with seeding.autocast(cpu, "off"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(seeding, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"train\.amp: bf16 on this CPU would be emulated"):
        seeding.fast_paths(cpu, "bf16", "off", (1, 28, 28))


def test_bf16_if_native_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import medgan.training.seeding as seeding

    cpu = torch.device("cpu")
    monkeypatch.setattr(seeding, "cpu_has_bf16", lambda: True)
    assert seeding.fast_paths(cpu, "bf16-if-native", "auto", (1, 28, 28)) == ("bf16", False)
    monkeypatch.setattr(seeding, "cpu_has_bf16", lambda: False)
    assert seeding.fast_paths(cpu, "bf16-if-native", "auto", (1, 28, 28)) == ("off", False)  # no error
