"""Checkpoint selection on the validation split: score the EMA generator every K steps, remember the best.

GAN scores wander during training, and on small data the last checkpoint is rarely the best one.
:class:`ValidationSelector` generates a fixed synthetic set (``train.select.n`` slices in the
validation split's class proportions, fixed per-image seeds, so every evaluation sees the same
noise), extracts features with the configured extractor (TF-Inception by default), and scores
them against the **validation** split's cached features: FID, or KID x 1000. The test split is
never touched. :func:`medgan.training.loop.fit` calls it, logs the score to ``stats.jsonl`` and
copies the checkpoint of each new best to ``checkpoints/best.*``; the selector's state (best
score and step, every score so far) is saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgan.config import SelectConfig
from medgan.errors import ConfigError
from medgan.metrics.evaluate import cached_features
from medgan.metrics.features import FeatureExtractor, get_extractor
from medgan.metrics.stats import fid, kid, proportional_counts
from medgan.seeding import derive_seed


class ValidationSelector:
    """Scores a generator against the validation split; lower is better. See the module docstring."""

    def __init__(
        self,
        cfg: SelectConfig,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        n_classes: int,
        *,
        extractor: FeatureExtractor | None = None,
        device: Any = "cpu",
        cache: Path | None = None,
    ) -> None:
        if cfg.every <= 0:
            raise ValueError("selection is off (train.select.every is 0)")
        if len(val_images) < 2:
            raise ConfigError(
                "train.select.every",
                f"needs a validation split of at least 2 slices, found {len(val_images)}",
            )
        self.cfg = cfg
        self.every = cfg.every
        self.extractor = extractor or get_extractor(cfg.features, device)
        self._real = cached_features(self.extractor, val_images, "select:val", cache)
        counts = proportional_counts(val_labels, cfg.n, n_classes)
        self.labels = [c for c, k in enumerate(counts) for _ in range(k)]
        self.seeds = [derive_seed(cfg.seed, c, i) for c, k in enumerate(counts) for i in range(k)]
        self.best_score = math.inf
        self.best_step: int | None = None
        self.history: list[tuple[int, float]] = []

    @property
    def key(self) -> str:
        """The name this score is logged under, e.g. ``val_fid``."""
        return f"val_{self.cfg.metric}"

    def score(self, images: np.ndarray) -> float:
        """FID, or KID x 1000, of ``images`` against the validation features."""
        f = self.extractor(images)
        if self.cfg.metric == "fid":
            return float(fid(self._real, f))
        return float(kid(self._real, f, seed=self.cfg.seed)[0] * 1000.0)

    def __call__(
        self, generate: Callable[[Sequence[int], Sequence[int]], np.ndarray], step: int
    ) -> tuple[dict[str, float], bool]:
        """Score ``generate(labels, seeds)`` at ``step``; returns (stats to log, whether it is a new best)."""
        value = self.score(generate(self.labels, self.seeds))
        improved = bool(np.isfinite(value) and value < self.best_score)
        if improved:
            self.best_score, self.best_step = value, step
        self.history.append((step, value))
        return {self.key: value, f"{self.key}_best": self.best_score, "best_step": self.best_step}, improved

    def state(self) -> dict[str, Any]:
        """JSON-able state (goes into every checkpoint)."""
        return {
            "metric": self.cfg.metric,
            "best_score": None if not math.isfinite(self.best_score) else self.best_score,
            "best_step": self.best_step,
            "history": [list(h) for h in self.history],
        }

    def load_state(self, st: dict[str, Any] | None) -> None:
        """Restore :meth:`state`."""
        if not st:
            return
        self.best_score = math.inf if st.get("best_score") is None else float(st["best_score"])
        self.best_step = st.get("best_step")
        self.history = [(int(s), float(v)) for s, v in st.get("history", [])]
