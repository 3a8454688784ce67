"""medgan for existing MONAI training scripts: synthetic datasets, mixing and a dictionary transform.

- :class:`SyntheticDataset`: a map-style dataset of MONAI dicts generated lazily from a
  sampler checkpoint (a conditional GAN or a diffusion model), deterministic by index (the same images ``medgan generate``
  writes for the same seed);
- :class:`MixedDataset`: the study's mixing policies (``add``, ``balance``, ``replace``) over
  any MONAI ``Dataset`` / ``CacheDataset`` of dicts, or arrays;
- :class:`RandSyntheticReplaced`: a ``Randomizable`` dictionary transform that swaps a sample
  for a synthetic one of the same label inside ``monai.transforms.Compose``.

All of them work with ``monai.data.DataLoader`` and MONAI's ``SupervisedTrainer``; see
docs/monai.md.
"""

from medgan.mixing import MixedDataset
from medgan.monai.data import SyntheticDataset
from medgan.monai.transforms import RandSyntheticReplaced

__all__ = ["MixedDataset", "RandSyntheticReplaced", "SyntheticDataset"]
