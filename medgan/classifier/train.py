"""Train a MONAI classifier on labelled slices; keep the best-validation-AUC weights; save / load them.

Training is seeded end to end (weight init, batch order and flips come from ``cfg.seed``), so on
CPU the same seed gives the same weights. A binary classifier's decision threshold on P(class 1) is
chosen on the validation split (Youden's J, :func:`youden_threshold`) and saved with the weights.
Checkpoints reuse :mod:`medgan.training.checkpoint` (safetensors + JSON with a SHA-256, never a
pickle).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import compute_roc_auc
from pydantic import ValidationError

from medgan.classifier.model import Classifier, build_classifier
from medgan.config import ClassifierConfig
from medgan.device import resolve_device
from medgan.errors import ConfigError, InputError
from medgan.progress import progress
from medgan.seeding import make_generator
from medgan.training.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)

KIND = "classifier"
_WHERE = "classifier"


class TrainedClassifier:
    """A trained classifier with its validation scores, history and config; predicts on numpy arrays.

    ``threshold``: the decision threshold on P(class 1) that :meth:`predict` uses for a binary
    classifier, chosen on the validation split by :func:`train_classifier` (Youden's J); 0.5 for a
    multi-class classifier (it predicts the argmax; the threshold is unused) and for checkpoints
    saved before thresholds were. ``val_balanced_acc``: the validation balanced accuracy of
    :meth:`predict` (NaN for such older checkpoints).
    """

    def __init__(
        self,
        model: Classifier,
        *,
        arch: str,
        n_classes: int,
        classes: list[str],
        shape: tuple[int, int, int],
        val_auc: float,
        val_acc: float,
        best_epoch: int,
        history: list[dict[str, float]],
        config: ClassifierConfig,
        threshold: float = 0.5,
        val_balanced_acc: float = math.nan,
    ) -> None:
        self.model = model
        self.arch = arch
        self.n_classes = n_classes
        self.classes = list(classes)
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.val_auc = float(val_auc)
        self.val_acc = float(val_acc)
        self.best_epoch = int(best_epoch)
        self.history = history
        self.config = config
        self.threshold = float(threshold)
        self.val_balanced_acc = float(val_balanced_acc)

    def __repr__(self) -> str:
        return (
            f"TrainedClassifier(arch={self.arch!r}, classes={self.classes}, shape={self.shape}, "
            f"val_auc={self.val_auc:.4f}, val_acc={self.val_acc:.4f}, threshold={self.threshold:.4f}, "
            f"val_balanced_acc={self.val_balanced_acc:.4f}, best_epoch={self.best_epoch})"
        )

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.model.parameters()).device

    def _batches(self, x: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
        x = _check_images(x, "input", self.shape)
        self.model.eval()
        for i in range(0, x.shape[0], max(1, int(batch_size))):
            yield torch.from_numpy(x[i : i + batch_size]).to(self.device)

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` (softmax, eval mode) for images ``(N, C, H, W)`` in [-1, 1]."""
        out = [torch.softmax(self.model(b).float(), dim=1).cpu() for b in self._batches(x, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Integer labels ``(N,)``: binary, P(class 1) >= :attr:`threshold`; multi-class, the argmax."""
        return predict_labels(self.predict_proba(x, batch_size), self.threshold)

    @torch.no_grad()
    def features(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer features ``(N, D)`` (eval mode) for images ``(N, C, H, W)`` in [-1, 1]."""
        out = [self.model.features(b).float().cpu() for b in self._batches(x, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.feature_dim), np.float32)

    def save(self, folder: str | Path) -> Path:
        """Write the weights + metadata into ``folder`` (its own folder: other classifier checkpoints there are replaced)."""
        folder = Path(folder)
        old = list_checkpoints(folder)
        for p in old:
            if read_checkpoint_meta(p).get("kind") != KIND:
                raise InputError(
                    folder,
                    "holds checkpoints that are not classifiers; save the classifier in its own folder",
                )
        meta: dict[str, Any] = {
            "kind": KIND,
            "arch": self.arch,
            "width": self.config.width,
            "n_classes": self.n_classes,
            "classes": self.classes,
            "shape": list(self.shape),
            "val_auc": self.val_auc,
            "val_acc": self.val_acc,
            "threshold": self.threshold,
            "val_balanced_acc": None if math.isnan(self.val_balanced_acc) else self.val_balanced_acc,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "config": self.config.model_dump(mode="json"),
        }
        # keep_last covers the old ones too: an older checkpoint with a higher step must not prune this one
        path = save_checkpoint(folder, self.best_epoch, self.model.state_dict(), meta, keep_last=len(old) + 1)
        for p in old:
            if p != path:
                p.with_suffix(".json").unlink(missing_ok=True)
                p.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TrainedClassifier:
        """Load a classifier saved by :meth:`save` (a file, its JSON or its folder); hash-verified."""
        tensors, meta = load_checkpoint(path, device=device)
        if meta.get("kind") != KIND:
            raise InputError(path, "is not a medgan classifier checkpoint")
        try:
            config = ClassifierConfig.model_validate(meta["config"])
            shape = tuple(int(s) for s in meta["shape"])
            model = build_classifier(
                meta["arch"], shape[0], int(meta["n_classes"]), (shape[1], shape[2]), int(meta["width"])
            )
            model.load_state_dict(tensors)
            threshold = float(meta.get("threshold", 0.5))  # saved before thresholds were: 0.5
            vba = meta.get("val_balanced_acc")
            val_balanced_acc = math.nan if vba is None else float(vba)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, ValidationError) as exc:
            raise InputError(
                path, f"classifier checkpoint metadata does not match its weights ({exc.__class__.__name__})"
            ) from None
        model.to(device).eval()
        return cls(
            model,
            arch=meta["arch"],
            n_classes=int(meta["n_classes"]),
            classes=list(meta["classes"]),
            shape=shape,  # type: ignore[arg-type]
            val_auc=float(meta["val_auc"]),
            val_acc=float(meta["val_acc"]),
            best_epoch=int(meta["best_epoch"]),
            history=list(meta["history"]),
            config=config,
            threshold=threshold,
            val_balanced_acc=val_balanced_acc,
        )


# ------------------------------------------------------------------ input checks


def _check_images(x: np.ndarray, name: str, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(_WHERE, f"{name} images must be (N, C, H, W), got shape {x.shape}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise InputError(
            _WHERE, f"{name} images are {tuple(x.shape[1:])} but the classifier expects {tuple(shape)}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_labels(y: np.ndarray, n: int, n_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise InputError(_WHERE, f"{name} has {n} images but {y.shape[0]} labels")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise InputError(_WHERE, f"{name} labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise InputError(
            _WHERE,
            f"{name} labels must lie in 0..{n_classes - 1}; found {sorted(set(y[bad].tolist()))[:5]}"
            f" ({int(bad.sum())} labels)",
        )
    return y


# ------------------------------------------------------------------ metrics


def val_metrics(proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(AUC, accuracy)``: binary AUC of class 1, else macro one-vs-rest AUC over the classes present."""
    acc = float((proba.argmax(1) == y).mean())
    n_classes = proba.shape[1]
    p = torch.as_tensor(proba, dtype=torch.float64)
    t = torch.as_tensor(y)
    if n_classes == 2:
        return float(compute_roc_auc(p[:, 1], t)), acc
    present = [c for c in range(n_classes) if 0 < int((t == c).sum()) < len(t)]
    onehot = F.one_hot(t, n_classes)[:, present]
    return float(compute_roc_auc(p[:, present], onehot, average="macro")), acc


def predict_labels(proba: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Integer labels of ``(N, C)`` probabilities: ``proba[:, 1] >= threshold`` when C == 2, else the argmax."""
    proba = np.asarray(proba)
    if proba.shape[1] == 2:
        return (proba[:, 1].astype(np.float64) >= float(threshold)).astype(np.int64)
    return proba.argmax(1).astype(np.int64)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (as :func:`~medgan.classifier.metrics.diagnostic_metrics`)."""
    y, pred = np.asarray(y), np.asarray(pred)
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def youden_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold on scores ``p`` (N,) (P(class 1)) maximising Youden's J against binary labels ``y``.

    J = sensitivity + specificity - 1 of the predictions ``p >= threshold``. The candidates are the
    midpoints between adjacent distinct scores (so no sample sits exactly on the threshold); among
    the candidates with the best J, the one closest to 0.5 wins (then the lower one). Returns 0.5 when
    every score is the same (no candidate). ``y`` must hold both classes (0 and 1).
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    y = np.asarray(y).reshape(-1)
    if p.shape != y.shape:
        raise InputError(_WHERE, f"youden_threshold: {p.size} scores but {y.size} labels")
    if not np.all(np.isfinite(p)):
        raise InputError(_WHERE, "youden_threshold: scores hold NaN/Inf")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size != 2:
        raise InputError(_WHERE, "youden_threshold needs binary labels holding both classes 0 and 1")
    order = np.argsort(p, kind="stable")
    ps, pos = p[order], y[order] == 1
    cut = np.flatnonzero(np.diff(ps) > 0)  # ps[i] < ps[i + 1]: a threshold between them
    if cut.size == 0:
        return 0.5
    thresholds = (ps[cut] + ps[cut + 1]) / 2.0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    # samples 0..i are predicted negative: true negatives and false negatives below each cut
    tn, fn = np.cumsum(~pos)[cut], np.cumsum(pos)[cut]
    j = (n_pos - fn) / n_pos + tn / n_neg - 1.0
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])


# ------------------------------------------------------------------ training


def _batch_starts(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch bounds; a lone trailing sample joins the previous batch (BatchNorm cannot train on one)."""
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _check_training_inputs(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    n_classes: int,
    classes: list[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Checked ``(train_x, train_y, val_x, val_y, classes)``: float32 images, int64 labels, class names."""
    if n_classes < 2:
        raise InputError(_WHERE, f"need at least 2 classes, got n_classes={n_classes}")
    if classes is None:
        classes = [str(i) for i in range(n_classes)]
    if len(classes) != n_classes:
        raise InputError(_WHERE, f"{len(classes)} class names given for n_classes={n_classes}")
    train_x = _check_images(train_x, "train")
    val_x = _check_images(val_x, "val", tuple(train_x.shape[1:]))  # type: ignore[arg-type]
    if train_x.shape[0] == 0:
        raise InputError(_WHERE, "the training set is empty")
    if val_x.shape[0] == 0:
        raise InputError(_WHERE, "the validation set is empty")
    train_y = _check_labels(train_y, train_x.shape[0], n_classes, "train")
    val_y = _check_labels(val_y, val_x.shape[0], n_classes, "val")
    if len(np.unique(val_y)) < 2:
        raise InputError(
            _WHERE, f"the validation set holds only class {int(val_y[0])}; AUC needs at least two classes"
        )
    return train_x, train_y, val_x, val_y, classes


def _seeded_model(
    cfg: ClassifierConfig,
    shape: tuple[int, int, int],
    n_classes: int,
    init_state: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> Classifier:
    """``cfg.arch`` seeded from ``cfg.seed`` (global RNG untouched) or from ``init_state``, on ``device``."""
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's global RNG
        torch.manual_seed(cfg.seed)
        try:
            model = build_classifier(cfg.arch, shape[0], n_classes, (shape[1], shape[2]), cfg.width)
        except ValueError as exc:
            raise ConfigError("classifier.arch", str(exc)) from None
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    return model


def _sample_weights(sample_weight: np.ndarray | None, n: int) -> torch.Tensor | None:
    """``sample_weight`` as a float32 tensor (or None), checked: one finite, non-negative weight per image."""
    if sample_weight is None:
        return None
    sample_weight = np.asarray(sample_weight, dtype=np.float32)
    if sample_weight.shape != (n,) or not np.all(np.isfinite(sample_weight)) or (sample_weight < 0).any():
        raise InputError(_WHERE, "sample_weight must be one finite, non-negative weight per training image")
    return torch.from_numpy(sample_weight)


def _class_weights(train_y: np.ndarray, n_classes: int, device: torch.device) -> torch.Tensor:
    """Inverse-frequency loss weights ``N / (n_classes * count)`` per class (0 for an absent class)."""
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(train_y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


def _sampling_probs(train_y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Per-sample draw probabilities of the class-balanced sampler: ``1 / count`` of the sample's class."""
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    return torch.from_numpy(1.0 / counts[train_y])


def epoch_length(n_train: int, cfg: ClassifierConfig) -> int:
    """The samples one epoch trains on: one pass over ``n_train``, or ``cfg.epoch_samples`` where that is more."""
    return max(n_train, cfg.epoch_samples)


def _train_epoch(
    model: Classifier,
    opt: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    ws: torch.Tensor | None,
    weight: torch.Tensor | None,
    cfg: ClassifierConfig,
    gen: torch.Generator,
    device: torch.device,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    draw: torch.Tensor | None = None,
) -> float:
    """One epoch in a seeded order (flips, ``batch_transform`` per batch); returns the mean training loss.

    ``draw``: per-sample probabilities of a class-balanced sampler (seeded draws with
    replacement); None: a seeded permutation of every sample. An epoch is ``len(xs)`` samples, or
    ``cfg.epoch_samples`` where that is more: further passes, each in its own seeded order, the
    last cut short.
    """
    model.train()
    n = epoch_length(len(xs), cfg)
    if draw is None:
        passes = [torch.randperm(len(xs), generator=gen) for _ in range(-(-n // len(xs)))]
        perm = torch.cat(passes)[:n]
    else:
        perm = torch.multinomial(draw, n, replacement=True, generator=gen)
    total, seen = 0.0, 0
    for lo, hi in _batch_starts(n, cfg.batch_size):
        idx = perm[lo:hi]
        xb, yb = xs[idx], ys[idx]
        if cfg.augment:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        if batch_transform is not None:
            xb = batch_transform(xb)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if ws is None:
            loss = F.cross_entropy(model(xb), yb, weight=weight)
        else:
            wb = ws[idx].to(device)
            per = F.cross_entropy(model(xb), yb, weight=weight, reduction="none")
            loss = (per * wb).sum() / wb.sum().clamp(min=1e-8)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / seen


def _validate(result: TrainedClassifier, val_x: np.ndarray, val_y: np.ndarray) -> tuple[float, float]:
    """Validation ``(AUC, accuracy)`` of ``result``'s current weights (MONAI's one-class warnings off)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "all one class" NaN warnings
        return val_metrics(result.predict_proba(val_x), val_y)


def train_classifier(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    n_classes: int,
    cfg: ClassifierConfig,
    classes: list[str] | None = None,
    *,
    sample_weight: np.ndarray | None = None,
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> TrainedClassifier:
    """Train ``cfg.arch`` on float32 ``(N, C, H, W)`` images in [-1, 1] with integer labels.

    Adam + cross-entropy, seeded shuffling and horizontal flips (``cfg.augment``); ``cfg.balance``:
    inverse-frequency class weights in the loss (``"loss"``) or class-balanced draws of each epoch's
    samples (``"sampler"``); validation AUC / accuracy after every epoch; early stopping after
    ``cfg.patience`` epochs without a better AUC; the best weights are restored. Then, for a binary
    problem, the decision threshold on P(class 1) that maximises Youden's J on the validation split
    (:func:`youden_threshold`) becomes ``result.threshold`` (0.5 for a multi-class problem, which
    predicts the argmax) and ``result.val_balanced_acc`` is the validation balanced accuracy there.
    ``sample_weight`` scales each sample's loss (e.g. < 1 for synthetic samples);
    ``batch_transform`` augments each training batch on the CPU (classical augmentation);
    ``init_state`` starts from given weights (pre-train on synthetic, fine-tune on real).
    """
    train_x, train_y, val_x, val_y, classes = _check_training_inputs(
        train_x, train_y, val_x, val_y, n_classes, classes
    )
    shape: tuple[int, int, int] = (int(train_x.shape[1]), int(train_x.shape[2]), int(train_x.shape[3]))

    device = resolve_device(cfg.device)
    model = _seeded_model(cfg, shape, n_classes, init_state, device)
    ws = _sample_weights(sample_weight, train_x.shape[0])
    weight = _class_weights(train_y, n_classes, device) if cfg.balance == "loss" else None
    draw = _sampling_probs(train_y, n_classes) if cfg.balance == "sampler" else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = make_generator(cfg.seed)  # on CPU: the same draws whatever the training device

    xs, ys = torch.from_numpy(train_x), torch.from_numpy(train_y)
    result = TrainedClassifier(
        model,
        arch=cfg.arch,
        n_classes=n_classes,
        classes=classes,
        shape=shape,
        val_auc=-math.inf,
        val_acc=0.0,
        best_epoch=0,
        history=[],
        config=cfg,
    )
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    epochs = progress(range(1, cfg.epochs + 1), f"classifier {cfg.arch}", minimum=0)
    try:
        for epoch in epochs:
            loss = _train_epoch(model, opt, xs, ys, ws, weight, cfg, gen, device, batch_transform, draw)
            auc, acc = _validate(result, val_x, val_y)
            result.history.append({"epoch": epoch, "loss": loss, "val_auc": auc, "val_acc": acc})
            if auc > result.val_auc:
                result.val_auc, result.val_acc, result.best_epoch = auc, acc, epoch
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    break
    finally:
        close = getattr(epochs, "close", None)
        if close is not None:
            close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    proba = result.predict_proba(val_x)
    if n_classes == 2:
        result.threshold = youden_threshold(proba[:, 1], val_y)
    result.val_balanced_acc = balanced_accuracy(val_y, predict_labels(proba, result.threshold))
    return result
