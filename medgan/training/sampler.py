"""Seeded, resumable batches of in-memory images for the synthesizers' training steps."""

from __future__ import annotations

import torch

from medgan.seeding import make_generator


class ClassBatchSampler:
    """Seeded, resumable batches from an in-memory tensor: shuffled epochs, or class-balanced draws.

    Not a ``torch.utils.data`` sampler: it yields the image and label tensors themselves, draws with
    its own CPU generator, and saves / restores its exact position (:meth:`state`, :meth:`load`).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        balanced: bool,
        xflip: bool = False,
    ) -> None:
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size = min(batch_size, len(images))
        self.balanced = balanced
        self.xflip = xflip
        self.gen = make_generator(seed, "cpu")
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0
        counts = torch.bincount(labels.cpu(), minlength=int(labels.max()) + 1).double()
        self.weights = (1.0 / counts.clamp(min=1))[labels.cpu()]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (images, labels), on the images' device."""
        if self.balanced:
            idx = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.gen)
        else:
            if self.pos + self.batch_size > len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.gen)
                self.pos = 0
            idx = self.order[self.pos : self.pos + self.batch_size]
            self.pos += self.batch_size
        idx = idx.to(self.images.device)
        x = self.images[idx]
        if self.xflip:  # each image mirrored left-right with probability 1/2 (data augmentation)
            flip = (torch.rand(len(idx), generator=self.gen) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x, self.labels[idx]

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors that restore the exact position in the stream."""
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "pos": torch.tensor(self.pos)}

    def load(self, st: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`."""
        self.gen.set_state(st["gen"])
        self.order = st["order"].clone()
        self.pos = int(st["pos"])
