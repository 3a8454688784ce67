"""Device and precision resolution."""

import torch


def test_fast_paths_auto_only_for_large_images_on_cuda() -> None:
    from medgan.training.seeding import fast_paths

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_paths(cpu, "auto", "auto", (1, 256, 256)) == ("off", False)  # CPU trains in fp32
    assert fast_paths(cpu, "bf16", "on", (1, 28, 28)) == ("off", True)  # bf16 is CUDA-only
    assert fast_paths(cuda, "auto", "auto", (1, 28, 28)) == ("off", False)  # launch-bound size
    assert fast_paths(cuda, "auto", "auto", (1, 128, 128)) == ("bf16", True)
    assert fast_paths(cuda, "bf16", "off", (1, 28, 28)) == ("bf16", False)
    assert fast_paths(cuda, "off", "auto", (3, 512, 512)) == ("off", True)
