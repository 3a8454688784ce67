"""ClassBatchSampler: seeded, resumable, class-balanced or shuffled batches."""

from __future__ import annotations

import torch

from medgan.training.sampler import ClassBatchSampler


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(20, dtype=torch.float32).reshape(20, 1, 1, 1).expand(20, 1, 2, 2).clone()
    labels = torch.tensor([0] * 16 + [1] * 4)
    return images, labels


def test_shuffled_epochs_cover_every_image_and_resume_exactly() -> None:
    images, labels = _data()
    s = ClassBatchSampler(images, labels, 5, seed=3, balanced=False)
    seen = torch.cat([s.next()[0][:, 0, 0, 0] for _ in range(4)])
    assert sorted(seen.tolist()) == list(range(20))
    state = s.state()
    after = [s.next() for _ in range(3)]
    t = ClassBatchSampler(images, labels, 5, seed=99, balanced=False)
    t.load(state)
    for (x, y), (x2, y2) in zip(after, [t.next() for _ in range(3)], strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_balanced_draws_weigh_classes_equally() -> None:
    images, labels = _data()
    s = ClassBatchSampler(images, labels, 20, seed=0, balanced=True)
    drawn = torch.cat([s.next()[1] for _ in range(200)])
    assert abs(drawn.float().mean().item() - 0.5) < 0.05
