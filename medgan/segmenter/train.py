"""Train a MONAI segmentation network on (image, mask) pairs and score it: Dice and HD95 of the lesion.

Used by the pair scores (:mod:`medgan.metrics.pairs`): *mask fidelity* (a network trained on real
pairs segments synthetic images; Dice against the mask each was drawn from, beside its Dice on the
real test pairs) and the *segmentation CAS* (a network trained on synthetic pairs only, Dice on
the real test pairs). Training is seeded end to end (weights, batch order, augmentation), so on
the CPU the same inputs and seed give the same network.

Scores follow the usual lesion-segmentation convention: Dice and HD95 are averaged over the
images that hold a lesion (MONAI ``DiceMetric`` with ``ignore_empty``; an empty prediction scores
Dice 0 and counts in ``n_missed``); on images without a lesion, ``false_positive_rate`` is the
share where the network predicts any lesion pixel.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import compute_hausdorff_distance
from monai.networks.nets import BasicUNet, UNet
from monai.transforms import Compose, RandAffined, RandFlipd
from torch import nn

from medgan.classifier.augment import untracked
from medgan.config import SegmenterConfig
from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.progress import progress
from medgan.seeding import make_generator

_WHERE = "segmenter"


def build_segmenter(cfg: SegmenterConfig, in_channels: int) -> nn.Module:
    """MONAI ``UNet`` (or ``BasicUNet``) for 2-D slices: ``in_channels`` in, two classes out."""
    if cfg.arch == "basicunet":
        feats = (list(cfg.channels) + [cfg.channels[-1]] * 6)[:6]
        return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=2, features=tuple(feats))
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        channels=tuple(cfg.channels),
        strides=(2,) * (len(cfg.channels) - 1),
        num_res_units=cfg.res_units,
    )


@dataclass
class SegScores:
    """A segmenter's scores on one set of pairs."""

    dice: float  # mean Dice of the lesion over images with a lesion
    hd95: float  # mean 95th-percentile Hausdorff distance (px) over images with a lesion both predicted and true
    n_lesion: int  # images with a lesion
    n_missed: int  # of those, images where no lesion pixel was predicted
    false_positive_rate: float  # images without a lesion where one was predicted (NaN when there are none)
    dice_per_image: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able scores (per-image Dice left out)."""
        d = {k: v for k, v in self.__dict__.items() if k != "dice_per_image"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def dice_per_image(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Dice of the lesion per image for (N, 1, H, W) binary masks; NaN where the truth is empty."""
    p = pred.reshape(len(pred), -1) > 0
    t = true.reshape(len(true), -1) > 0
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(t.sum(1) > 0, 2.0 * inter / np.maximum(denom, 1), np.nan)


def score_masks(pred: np.ndarray, true: np.ndarray) -> SegScores:
    """Dice, HD95, misses and false positives of predicted (N, 1, H, W) masks against the truth."""
    if pred.shape != true.shape:
        raise InputError(_WHERE, f"{pred.shape} predicted masks for {true.shape} true ones")
    d = dice_per_image(pred, true)
    lesion = ~np.isnan(d)
    p_any = pred.reshape(len(pred), -1).any(1)
    both = lesion & p_any
    hd = float("nan")
    if both.any():
        to_1hot = lambda m: torch.from_numpy(np.concatenate([m == 0, m > 0], 1).astype(np.float32))  # noqa: E731
        hds = compute_hausdorff_distance(to_1hot(pred[both]), to_1hot(true[both]), percentile=95.0)
        hd = float(torch.nanmean(hds.float()))
    empty = ~lesion
    return SegScores(
        dice=float(np.mean(d[lesion])) if lesion.any() else float("nan"),
        hd95=hd,
        n_lesion=int(lesion.sum()),
        n_missed=int((lesion & ~p_any).sum()),
        false_positive_rate=float(p_any[empty].mean()) if empty.any() else float("nan"),
        dice_per_image=[float(v) for v in d],
    )


def _pair_augmentation(seed: int) -> Compose:
    """Classical augmentation of image and mask together: flip, rotation (+-15 deg), scale (+-10 %), shift."""
    t = Compose(
        [
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
            RandAffined(
                ["image", "label"],
                prob=0.8,
                rotate_range=(0.26,),
                scale_range=(0.1, 0.1),
                translate_range=(2, 2),
                padding_mode="border",
                mode=("bilinear", "nearest"),
            ),
        ]
    )
    t.set_random_state(seed)
    return t


def _check_pairs(x: np.ndarray, m: np.ndarray, name: str) -> None:
    if x.ndim != 4 or m.shape != (len(x), 1, *x.shape[2:]):
        raise InputError(
            _WHERE, f"{name}: images {x.shape} and masks {m.shape} are not (N, C, H, W) and (N, 1, H, W)"
        )
    if len(x) == 0:
        raise InputError(_WHERE, f"{name}: no pairs")


@torch.no_grad()
def segment(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Predicted lesion masks (N, 1, H, W) uint8 of images (N, C, H, W) in [-1, 1]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        logits = model(torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size])).float().to(device))
        out.append(logits.argmax(1, keepdim=True).to(torch.uint8).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, *images.shape[2:]), np.uint8)


def train_segmenter(
    train_x: np.ndarray,
    train_m: np.ndarray,
    val_x: np.ndarray,
    val_m: np.ndarray,
    cfg: SegmenterConfig,
    what: str = "segmenter",
) -> tuple[nn.Module, float]:
    """A segmentation network trained on (image, mask) pairs, the weights of its best validation Dice
    kept; returns it and that Dice. Images (N, C, H, W) in [-1, 1], masks (N, 1, H, W) with 1 = lesion."""
    _check_pairs(train_x, train_m, "train")
    _check_pairs(val_x, val_m, "val")
    if not (val_m.reshape(len(val_m), -1) > 0).any(1).any():
        raise InputError(_WHERE, "the validation pairs hold no lesion; Dice cannot choose the weights")
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_segmenter(cfg, train_x.shape[1]).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = make_generator(cfg.seed, "cpu")
    aug = _pair_augmentation(cfg.seed) if cfg.augment else None
    x_all = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    m_all = torch.from_numpy((np.asarray(train_m) > 0).astype(np.float32))
    n = len(x_all)
    per_epoch = max(n, cfg.epoch_samples)
    best, best_state, stale = -1.0, copy.deepcopy(model.state_dict()), 0
    for _ in progress(range(cfg.epochs), what, minimum=3):
        model.train()
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-per_epoch // n))])[:per_epoch]
        for s in range(0, per_epoch, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            xb, mb = x_all[idx], m_all[idx]
            if aug is not None:
                with untracked():  # plain tensors: the same numbers, faster
                    pairs = [aug({"image": xi, "label": mi}) for xi, mi in zip(xb, mb, strict=True)]
                xb = torch.stack(
                    [torch.as_tensor(p["image"]).as_subclass(torch.Tensor).float() for p in pairs]
                )
                mb = torch.stack(
                    [torch.as_tensor(p["label"]).as_subclass(torch.Tensor).float() for p in pairs]
                )
                xb = xb.clamp_(-1.0, 1.0)
            loss = loss_fn(model(xb.to(device)), mb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        dice = score_masks(segment(model, val_x), np.asarray(val_m)).dice
        if dice > best:
            best, best_state, stale = dice, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), best
