"""The synthesizer registry: one entry per ``model.kind``, the only place that maps a kind to code.

An entry names the kind's config class (the ``model:`` section), how its training task is built
on labelled slices, the class that loads a checkpoint for inference (a
:class:`~medgan.synthesis.protocols.Sampler` or a :class:`~medgan.synthesis.protocols.Translator`),
what that class makes (``samples`` from a class and a seed, or ``translations`` of real slices),
whether the kind supports checkpoint selection and whether its sampler can be exported as
TorchScript. ``medgan train`` / ``run`` / ``study`` build tasks through :func:`get`;
``generate``, ``augment``, ``export-bundle``, the study and the MONAI plug-in load checkpoints
through :func:`load_sampler`, :func:`load_translator` or :func:`load_exportable`, which read the
kind from the checkpoint and refuse one that cannot do what the caller needs with a one-line
:class:`~medgan.errors.ConfigError` naming ``model.kind``. What a kind's product means for the
study (a pool of any size, or one output per real slice) is decided here, by :attr:`SynthesizerKind.sized`.

Adding a kind: a config class in ``medgan/config/kinds/<kind>.py``, a task implementing
:class:`medgan.training.loop.Task` and an inference class taking ``(checkpoint, device)`` in
``medgan/synthesis/<kind>.py``, and one :class:`SynthesizerKind` in :data:`KINDS` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medgan import distributed
from medgan.config import MODEL_CONFIGS, CycleGANConfig, KindConfig, RunConfig
from medgan.errors import ConfigError, InputError
from medgan.synthesis.cgan import CGANSynthesizer, ConditionalGAN
from medgan.synthesis.cyclegan import CycleGAN, CycleGANTranslator
from medgan.synthesis.diffusion import DiffusionSynthesizer, DiffusionTask
from medgan.synthesis.protocols import Exportable, PairSampler, Sampler, Synthesizer, Translator
from medgan.synthesis.spade import SPADEGAN, SPADESynthesizer
from medgan.training.checkpoint import checkpoint_meta
from medgan.training.loop import Task

Makes = Literal["samples", "translations"]


@dataclass(frozen=True)
class SynthesizerKind:
    """What one ``model.kind`` is and can do."""

    kind: str
    description: str
    config: type[KindConfig]
    #: ``(cfg, images, labels, meta, device, masks=None) -> task``: the training task with its data
    #: attached (a :class:`~medgan.training.loop.SelectableTask` when ``selects``); ``masks``
    #: (:class:`TrainMasks`) is given to a kind that ``pairs``
    build_task: Callable[..., Task]
    #: ``(model_cfg, classes, key) -> dict``: what the kind adds to checkpoint metadata (e.g. its
    #: domains); a config that does not fit the data is a ConfigError under ``key`` (its section)
    describe: Callable[[Any, list[str], str], dict[str, Any]]
    #: ``(checkpoint, device) -> Sampler | Translator`` for inference
    inference: Callable[..., Synthesizer]
    makes: Makes
    selects: bool  # supports checkpoint selection on the validation split (train.select)
    exports: bool = False  # the inference object is Exportable (TorchScript): medgan export-bundle
    pairs: bool = False  # draws each slice where a mask says: trains on masks, makes (image, mask) pairs

    @property
    def noun(self) -> str:
        """What the kind is in a sentence, e.g. ``conditional GAN`` (the description before its brackets)."""
        return self.description.split(" (")[0].removeprefix("class-")

    @property
    def sized(self) -> bool:
        """Whether the kind makes any number of slices per class (samples), rather than one output per
        real slice (translations): a study draws a pool of the size it needs, can filter a wider one,
        and does not cap the synthetic count at the real one."""
        return self.makes == "samples"

    def pool(
        self,
        synth: Synthesizer,
        images: np.ndarray,
        labels: np.ndarray,
        n_per_class: int,
        seed: int,
        precision: str = "fp32",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Synthetic slices for a training set of real ``images`` / ``labels``: samples
        (``n_per_class`` of every class, in ``precision``) or translations of each real slice into
        the other domain."""
        if isinstance(synth, Sampler) and self.sized:
            return synth.sample_counts([n_per_class] * len(synth.classes), seed, precision)
        assert isinstance(synth, Translator)
        return synth.translate_labelled(images, labels)


@dataclass(frozen=True)
class TrainMasks:
    """The training slices' lesion masks for a kind that ``pairs``: (N, 1, H, W) uint8 and each one's source."""

    masks: np.ndarray
    sources: list[str]


def domain_index(value: str | int, classes: list[str], key: str) -> int:
    """The class index a CycleGAN domain names (a class name, or an index as int or digits)."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and value not in classes):
        i = int(value)
        if 0 <= i < len(classes):
            return i
    elif value in classes:
        return classes.index(value)
    raise ConfigError(key, f"{value!r} is not one of the data's classes {classes}")


def cyclegan_domains(mc: CycleGANConfig, classes: list[str], key: str = "model") -> dict[str, Any]:
    """Domains A and B of a CycleGAN whose two domains are two classes of one dataset."""
    ia = domain_index(mc.domain_a, classes, f"{key}.domain_a")
    ib = domain_index(mc.domain_b, classes, f"{key}.domain_b")
    if ia == ib:
        raise ConfigError(f"{key}.domain_b", "must differ from domain_a")
    return {"mode": "labels", "a": classes[ia], "b": classes[ib], "label_a": ia, "label_b": ib}


def _check_share(n: int, what: str) -> None:
    """Under ``torchrun`` every rank needs at least one training image of its own."""
    if n < distributed.world_size():
        raise InputError(
            "data", f"{n} {what} slices cannot be shared by {distributed.world_size()} processes"
        )


def _sampling_task(task_class: Any) -> Callable[..., Task]:
    """A ``build_task`` for a kind that learns to sample every labelled train slice's class."""

    def build(
        cfg: RunConfig,
        images: np.ndarray,
        labels: np.ndarray,
        meta: dict[str, Any],
        device: torch.device,
        masks: TrainMasks | None = None,
    ) -> Task:
        _check_share(len(images), "train")
        task = task_class(cfg.model, cfg.train, len(meta["classes"]), images.shape[1:], device, cfg.seed)
        task.attach_data(torch.tensor(images), torch.tensor(np.asarray(labels, dtype=np.int64)), cfg.seed)
        return task

    return build


def _build_spade(
    cfg: RunConfig,
    images: np.ndarray,
    labels: np.ndarray,
    meta: dict[str, Any],
    device: torch.device,
    masks: TrainMasks | None = None,
) -> SPADEGAN:
    """The mask-conditioned task on every labelled train slice and its mask."""
    if masks is None:
        raise InputError(
            "data",
            f"model.kind {cfg.model.kind!r} draws slices from lesion masks, and these slices have none"
            " (give an image folder's labels CSV a mask column, or volumes with masks)",
        )
    _check_share(len(images), "train")
    task = SPADEGAN(cfg.model, cfg.train, len(meta["classes"]), images.shape[1:], device, cfg.seed)  # type: ignore[arg-type]
    task.attach_data(
        torch.tensor(images),
        torch.tensor(np.asarray(labels, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(masks.masks)),
        masks.sources,
        cfg.seed,
    )
    return task


def _build_cyclegan(
    cfg: RunConfig,
    images: np.ndarray,
    labels: np.ndarray,
    meta: dict[str, Any],
    device: torch.device,
    masks: TrainMasks | None = None,
) -> CycleGAN:
    dom = meta["domains"]
    labels = np.asarray(labels)
    a, b = images[labels == dom["label_a"]], images[labels == dom["label_b"]]
    for name, arr in (("A", a), ("B", b)):
        if len(arr) == 0:
            raise InputError("data", f"domain {name} ({dom[name.lower()]}) has no train slices")
        _check_share(len(arr), f"domain {name}")
    task = CycleGAN(cfg.model, cfg.train, images.shape[1:], device, cfg.seed)  # type: ignore[arg-type]
    task.attach_data(torch.tensor(a), torch.tensor(b), cfg.seed)
    return task


KINDS: dict[str, SynthesizerKind] = {
    "cgan": SynthesizerKind(
        kind="cgan",
        description="class-conditional GAN (noise + class -> slice)",
        config=MODEL_CONFIGS["cgan"],
        build_task=_sampling_task(ConditionalGAN),
        describe=lambda mc, classes, key="model": {},
        inference=CGANSynthesizer,
        makes="samples",
        selects=True,
        exports=True,
    ),
    "cyclegan": SynthesizerKind(
        kind="cyclegan",
        description="CycleGAN (unpaired translation between two domains)",
        config=MODEL_CONFIGS["cyclegan"],
        build_task=_build_cyclegan,
        describe=lambda mc, classes, key="model": {"domains": cyclegan_domains(mc, classes, key)},
        inference=CycleGANTranslator,
        makes="translations",
        selects=False,
    ),
    "diffusion": SynthesizerKind(
        kind="diffusion",
        description="class-conditional diffusion model (DDIM from noise + class -> slice)",
        config=MODEL_CONFIGS["diffusion"],
        build_task=_sampling_task(DiffusionTask),
        describe=lambda mc, classes, key="model": {},
        inference=DiffusionSynthesizer,
        makes="samples",
        selects=True,
        exports=True,
    ),
    "spade": SynthesizerKind(
        kind="spade",
        description="mask-conditioned SPADE GAN (lesion mask + class + noise -> slice)",
        config=MODEL_CONFIGS["spade"],
        build_task=_build_spade,
        describe=lambda mc, classes, key="model": {},
        inference=SPADESynthesizer,
        makes="samples",
        selects=True,
        pairs=True,
    ),
}

_NEEDS = {"samples": "makes slices from noise and a class", "translations": "translates real slices"}


def kinds_that(makes: Makes) -> str:
    """The kinds that make ``makes``, as a phrase for messages, e.g. ``'cgan' (conditional GAN) or ...``."""
    return " or ".join(f"{k!r} ({e.noun})" for k, e in sorted(KINDS.items()) if e.makes == makes)


def get(kind: str, *, makes: Makes | None = None, where: str = "model.kind") -> SynthesizerKind:
    """The entry of ``kind``; with ``makes``, refuse a kind that does not make that."""
    entry = KINDS.get(kind)
    if entry is None:
        raise ConfigError(where, f"unknown synthesizer kind {kind!r}; choose one of {sorted(KINDS)}")
    if makes is not None and entry.makes != makes:
        able = " or ".join(sorted(k for k, e in KINDS.items() if e.makes == makes))
        raise ConfigError(
            where,
            f"{kind!r} is a {entry.description}; this needs a {able} checkpoint (one that {_NEEDS[makes]})",
        )
    return entry


def checkpoint_kind(checkpoint: str | Path, *, makes: Makes | None = None) -> SynthesizerKind:
    """The entry of the kind a checkpoint was trained as (read from its metadata)."""
    return get(checkpoint_meta(checkpoint).kind, makes=makes, where=f"{checkpoint}: model.kind")


def load(
    checkpoint: str | Path, device: str | torch.device = "cpu", *, makes: Makes | None = None
) -> Synthesizer:
    """The inference object of a checkpoint (sampler or translator), refusing a kind that cannot ``makes``."""
    return checkpoint_kind(checkpoint, makes=makes).inference(checkpoint, device)


def load_sampler(checkpoint: str | Path, device: str | torch.device = "cpu") -> Sampler:
    """A checkpoint's :class:`~medgan.synthesis.protocols.Sampler`; a kind that only translates is refused."""
    synth = load(checkpoint, device, makes="samples")
    assert isinstance(synth, Sampler), f"{type(synth).__name__} does not implement Sampler"
    return synth


def load_translator(checkpoint: str | Path, device: str | torch.device = "cpu") -> Translator:
    """A checkpoint's :class:`~medgan.synthesis.protocols.Translator`; a kind that only samples is refused."""
    synth = load(checkpoint, device, makes="translations")
    assert isinstance(synth, Translator), f"{type(synth).__name__} does not implement Translator"
    return synth


def load_pair_sampler(checkpoint: str | Path, device: str | torch.device = "cpu") -> PairSampler:
    """A checkpoint's :class:`~medgan.synthesis.protocols.PairSampler` (slices with their masks); a kind
    that does not draw from masks is refused with one line naming ``model.kind`` and the kinds that do."""
    entry = checkpoint_kind(checkpoint, makes="samples")
    if not entry.pairs:
        able = " or ".join(sorted(k for k, e in KINDS.items() if e.pairs))
        raise ConfigError(
            f"{checkpoint}: model.kind",
            f"{entry.kind!r} ({entry.description}) makes slices without masks; {able} checkpoints make image + mask pairs",
        )
    synth = entry.inference(checkpoint, device)
    assert isinstance(synth, PairSampler), f"{type(synth).__name__} does not implement PairSampler"
    return synth


def load_exportable(checkpoint: str | Path) -> Sampler:
    """A checkpoint's sampler that can be written as TorchScript (``medgan export-bundle``), on the CPU.

    A kind that cannot be exported is refused with one line naming ``model.kind`` and the kinds that can.
    """
    entry = checkpoint_kind(checkpoint)
    if not entry.exports:
        able = " or ".join(sorted(k for k, e in KINDS.items() if e.exports))
        raise ConfigError(
            f"{checkpoint}: model.kind",
            f"{entry.kind!r} ({entry.description}) cannot be exported as a MONAI bundle; {able} checkpoints can",
        )
    synth = entry.inference(checkpoint, "cpu")
    assert isinstance(synth, Sampler) and isinstance(synth, Exportable)
    return synth
