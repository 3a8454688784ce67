"""``medgan study``: does adding synthetic slices make a diagnostic classifier better, by how much, how surely?

For each real-data fraction and seed, a stratified real subset is drawn; the synthesizers of the
arms that need them are trained on **that subset only** (no held-back real image leaks in);
each arm's training set is built with :class:`~medgan.mixing.MixedDataset`; a MONAI classifier
(:mod:`medgan.classifier`) is trained with early stopping on the real validation split, and scored
on the same real test split for every arm. Each arm is paired with ``real`` on the same seed.

Arms: ``real`` (real only), ``classical`` (MONAI flip/rotation/affine/intensity augmentation),
and for every synthesizer kind of the registry (:mod:`medgan.synthesis.registry`) ``<kind>``
(its samples, or its translations of the real subset into the other class) and
``<kind>+classical``. Nothing here names a kind: what an arm's synthesizer makes (a pool of any
size, or one translation per real slice) is the registry's ``SynthesizerKind.sized``. Options: mixing ``policy`` and ``ratios``,
``synthetic_weight`` (loss weight of synthetic samples), ``min_confidence`` (keep synthetic
samples that the real-only classifier gives at least this probability of their intended class),
``pretrain`` (train on synthetic only, then fine-tune on the real subset). ``levers`` run named
variants of those options as extra arms (``<kind>[weight0.5]``) beside the plain ones; every arm
other than ``real`` and ``classical`` is paired with both on the same seed.
"""

from medgan.study.cells import FILTER_POOL, StudyRow
from medgan.study.plan import ArmSpec, arm_config, arm_specs
from medgan.study.runner import run_study, study_report
from medgan.study.summary import summarize

__all__ = [
    "FILTER_POOL",
    "ArmSpec",
    "StudyRow",
    "arm_config",
    "arm_specs",
    "run_study",
    "study_report",
    "summarize",
]
