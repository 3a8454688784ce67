"""Synthesizers composed from ``monai.networks``: the class-conditional GAN (and, later, CycleGAN)."""
