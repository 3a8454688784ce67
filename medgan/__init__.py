"""medgan: GAN-synthesized lesion and healthy-organ slices for medical image classifiers, built on MONAI."""

from medgan.errors import ConfigError, InputError, MedganError

__version__ = "0.1.0"

__all__ = ["ConfigError", "InputError", "MedganError", "__version__"]
