"""``RandSyntheticReplaced``: swap a training sample for a synthetic one of the same label."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends

from medgan.errors import InputError, MedganError
from medgan.mixing import class_index
from medgan.monai.data import check_intensity, load_synthesizer, to_monai


class RandSyntheticReplaced(RandomizableTransform, MapTransform):
    """With probability ``prob``, replace ``keys`` of a sample with a synthetic slice of its label.

    The seed of each synthetic slice is drawn from the transform's random state, so a pipeline
    seeded with ``Compose(...).set_random_state(seed)`` or ``monai.utils.set_determinism`` gives
    the same replacements every run. The label is read from ``label_key`` (an int, a 0-d or
    one-element tensor, or a one-hot vector); labels the synthesizer does not know are left alone.
    Replaced samples get ``synthetic_key`` = True (False otherwise) so a loss can weight them.

    Args:
        keys: image key(s) to replace (usually ``"image"``).
        synthesizer: a sampler checkpoint path (a conditional GAN or a diffusion model) or a loaded sampler.
        prob: probability of replacing a sample.
        label_key: where the sample's class index is.
        value_range: intensity range the synthetic slice is mapped to (match your pipeline's
            intensity scaling at this point of the Compose: ``(0, 1)`` after ``ScaleIntensityd``).
        intensity: ``minmax`` (rescaled to ``value_range`` as ``ScaleIntensityd`` does) or
            ``fixed`` ([-1, 1] mapped linearly onto ``value_range``).
        synthetic_key: the flag written into the dict (``None`` to write nothing).
        device: generator device (``cpu`` by default: the transform runs in DataLoader workers).
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH]

    def __init__(
        self,
        keys: KeysCollection,
        synthesizer: Any,
        prob: float = 0.1,
        label_key: str = "label",
        value_range: tuple[float, float] = (0.0, 1.0),
        synthetic_key: str | None = "synthetic",
        device: str | torch.device = "cpu",
        allow_missing_keys: bool = False,
        intensity: str = "minmax",
    ) -> None:
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0.0 <= prob <= 1.0:
            raise InputError("prob", f"must be in [0, 1] (got {prob})")
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.value_range = check_intensity(intensity, value_range)
        self.intensity = intensity
        self.synth = load_synthesizer(synthesizer, device)
        self.label_key, self.synthetic_key = label_key, synthetic_key
        self._error: str | None = None
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        """Decide whether to replace, and draw the synthetic slice's seed."""
        super().randomize(None)
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def _label(self, d: Mapping[Hashable, Any]) -> int | None:
        v = d.get(self.label_key)
        if v is None:
            return None
        c = class_index(
            v, self.label_key, len(self.synth.classes) if torch.as_tensor(v).numel() > 1 else None
        )
        return c if 0 <= c < len(self.synth.classes) else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Replace (or not) and flag one sample; medgan's own error shows in MONAI's wrapper message."""
        self._error = None
        try:
            return self._apply(data)
        except MedganError as err:
            # MONAI's Compose re-raises as RuntimeError(f"applying transform {self}"): put the reason there
            self._error = str(err)
            raise

    def __repr__(self) -> str:
        base = f"RandSyntheticReplaced(keys={tuple(self.keys)}, prob={self.prob})"
        return f"{base}: {self._error}" if self._error else base

    def _apply(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        label = self._label(d)
        replace = self._do_transform and label is not None
        if replace:
            img = to_monai(self.synth.generate([label], [self._seed], 1), self.intensity, self.value_range)[0]
            for key in self.key_iterator(d):
                ref = d[key]
                new = img.to(dtype=torch.as_tensor(ref).dtype)
                if tuple(new.shape) != tuple(ref.shape):
                    raise InputError(
                        key,
                        f"synthetic slice {tuple(new.shape)} differs from the sample {tuple(ref.shape)}; place "
                        "RandSyntheticReplaced where samples have the synthesizer's shape (after LoadImaged, "
                        "EnsureChannelFirstd and ScaleIntensityd, before resizing or cropping)",
                    )
                if isinstance(ref, MetaTensor):
                    new = MetaTensor(new, meta={**ref.meta, "synthetic": True, "seed": self._seed})
                d[key] = new
        if self.synthetic_key is not None:
            d[self.synthetic_key] = bool(replace) or bool(d.get(self.synthetic_key, False))
        return d

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandSyntheticReplaced:
        """Seed the transform (as MONAI's ``Compose.set_random_state`` does)."""
        super().set_random_state(seed, state)
        return self


__all__: Sequence[str] = ["RandSyntheticReplaced"]
