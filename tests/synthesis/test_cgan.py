"""The conditional GAN: per-seed noise."""

import pytest
import torch


def test_noise_for_seeds_is_per_seed_standard_normal_and_batch_independent() -> None:
    from medgan.seeding import noise_for_seeds

    z = noise_for_seeds(range(4000), 128)
    assert z.shape == (4000, 128) and z.dtype == torch.float32
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    # a seed's vector does not depend on its neighbours or position; distinct seeds differ
    big = 2**62 + 12345
    a = noise_for_seeds([3, big, 17], 128)
    assert torch.equal(a[1], noise_for_seeds([big], 128)[0])
    assert torch.equal(a[0], z[3]) and torch.equal(a[2], z[17])
    assert not torch.equal(z[0], z[1])
    # odd z_dim is the prefix of the next even one
    assert torch.equal(noise_for_seeds([9], 7)[0], noise_for_seeds([9], 8)[0, :7])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_noise_for_seeds_same_on_cuda() -> None:
    from medgan.seeding import noise_for_seeds

    cpu = noise_for_seeds(range(1000), 64)
    gpu = noise_for_seeds(range(1000), 64, "cuda").cpu()
    assert torch.allclose(cpu, gpu, atol=1e-6)
