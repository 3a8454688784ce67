"""The segmentation study: do synthetic image + mask pairs help a segmentation network? (issue 28)

Beside the classification study, for a mask-conditioned synthesizer. Per fraction of the train
split and repeat ``s`` (its own stratified subset; fraction 1 is the whole split), a MONAI UNet
(``segmenter:``) is trained per arm on:

- ``real``: the real pairs of the subset;
- ``classical``: the same, with classical augmentation of image and mask together;
- ``pairs``: the real pairs plus ``ratio`` x as many synthetic pairs, in the subset's class mix;
- ``pairs+classical``: both.

Every arm of one repeat shares the real subset, the segmenter's seed and (for the synthetic arms)
the synthetic pairs, so arm - ``real`` is a paired difference. The score is the mean lesion Dice on
the real test pairs (and HD95); the difference per repeat is summarised over repeats with a
t-interval, a p-value, the smallest detectable difference, and Holm's adjustment over every
comparison (:mod:`medgan.study.statistics`). Finished cells are cached in ``cells/`` under a key of
everything they depend on, so a rerun with more repeats or ratios reuses them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from medgan.config import RunConfig
from medgan.config.study import SEG_ARMS
from medgan.data.sources import RunData, load_source
from medgan.errors import ConfigError, InputError
from medgan.io.atomic import atomic_write_text
from medgan.mixing import stratified_subsample
from medgan.progress import progress
from medgan.seeding import derive_seed
from medgan.segmenter.train import score_masks, segment, train_segmenter
from medgan.study.cells import subset_meta, synthesizer_checkpoint
from medgan.study.statistics import holm, paired_summary, verdict
from medgan.synthesis import registry
from medgan.train import subset_masks

#: Which arms compare with which: every arm with ``real``; synthetic + classical also with ``classical``.
REFERENCES = {"classical": ("real",), "pairs": ("real",), "pairs+classical": ("real", "classical")}


def _fingerprint(cfg: RunConfig, ckpt_sha: str | None, f: float) -> str:
    """What a cell's result depends on besides its arm, ratio and repeat."""
    d = cfg.model_dump(mode="json")
    keep = {
        "seed": d["seed"],
        "data": d["data"],
        "segmenter": {k: v for k, v in d["segmenter"].items() if k != "device"},
    }
    keep["synthesizer"] = ckpt_sha if f == 1.0 else {"model": d["model"], "train": d["train"]}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _synthetic_pairs(
    synth: Any, y: np.ndarray, ratio: float, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``ratio`` x the subset's pairs per class (rounded), image ``k`` of class ``c`` from
    ``derive_seed(seed, c, k)``, so a larger ratio extends a smaller one."""
    counts = np.rint(np.bincount(y, minlength=n_classes) * ratio).astype(int)
    labels = [c for c in range(n_classes) for _ in range(counts[c])]
    seeds = [derive_seed(seed, c, k) for c in range(n_classes) for k in range(counts[c])]
    if not labels:
        return np.zeros((0, *synth.shape), np.float32), np.zeros((0, 1, *synth.shape[1:]), np.uint8)
    pairs = synth.generate_pairs(labels, seeds)
    return pairs.images.numpy(), pairs.masks.numpy()


def run_seg_study(
    cfg: RunConfig, data_dir: Path, out: Path, checkpoint: Path, data: RunData | None = None
) -> dict[str, Any]:
    """Run (or resume) the segmentation study into ``out``; returns ``seg_study.json``'s content."""
    st = cfg.seg_study
    entry = registry.get(cfg.model.kind)
    if not entry.pairs:
        raise ConfigError(
            "seg_study.run",
            f"model.kind {cfg.model.kind!r} makes no masks; the segmentation study needs a kind that draws from masks",
        )
    ss = data.data if data is not None else load_source(cfg.data, data_dir)
    if ss.masks is None:
        raise InputError("data", "the slices have no lesion masks; the segmentation study needs them")
    tr, va, te = ss.split("train"), ss.split("val"), ss.split("test")
    ty = tr.manifest["label"].to_numpy().astype(np.int64)
    vy = va.manifest["label"].to_numpy().astype(np.int64)  # a subset synthesizer's selection
    n_classes = len(ss.classes)
    out.mkdir(parents=True, exist_ok=True)
    base = registry.load_pair_sampler(checkpoint)  # fraction 1's synthesizer, loaded once
    rows: list[dict[str, Any]] = []
    jobs = [(f, s) for f in st.fractions for s in range(st.seeds_for(f))]
    for f, s in progress(jobs, "segmentation study", minimum=1):
        idx = np.arange(len(ty)) if f == 1.0 else stratified_subsample(ty, f, s, 2)
        cells = out / "cells" / _fingerprint(cfg, base.sha256, f)
        synth = base
        if f < 1.0:  # the synthesizer of this repeat's own subset
            meta = subset_meta(ss, tr, f, s, len(idx))
            ckpt = synthesizer_checkpoint(
                cfg,
                cfg.model.kind,
                tr.images[idx],
                ty[idx],
                meta,
                out / "synthesizers" / f"f{f:g}-s{s}",
                val=(va.images, vy),
                fraction=f,  # its length scaled as the classification study's (study.step_scaling)
                masks=subset_masks(tr, idx),
            )
            synth = registry.load_pair_sampler(ckpt)
        seg_cfg = cfg.segmenter.model_copy(update={"seed": derive_seed(cfg.segmenter.seed, s)})
        for arm in st.arms:
            for ratio in st.ratios if arm.startswith("pairs") else [None]:
                key = f"{arm}-r{ratio if ratio is not None else 0:g}-f{f:g}-s{s}"
                path = cells / f"{key}.json"
                if path.is_file():
                    rows.append(json.loads(path.read_text(encoding="utf-8")))
                    continue
                x, m = tr.images[idx], tr.masks[idx]
                if ratio is not None:
                    sx, sm = _synthetic_pairs(synth, ty[idx], ratio, n_classes, derive_seed(cfg.seed, 28, s))
                    x, m = np.concatenate([x, sx]), np.concatenate([m, sm])
                c = seg_cfg.model_copy(update={"augment": arm.endswith("classical")})
                net, val_dice = train_segmenter(x, m, va.images, va.masks, c, f"{key}")
                sc = score_masks(segment(net, te.images), te.masks)
                row = {
                    "arm": arm,
                    "ratio": ratio,
                    "fraction": f,
                    "seed": s,
                    "n_real": len(idx),
                    "n_synthetic": int(len(x) - len(idx)),
                    "val_dice": val_dice,
                    **sc.as_dict(),
                    "dice_per_image": sc.dice_per_image,
                }
                cells.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(row, allow_nan=True) + "\n")
                rows.append(row)
    study = {
        "design": st.model_dump(mode="json"),
        "segmenter": cfg.segmenter.model_dump(mode="json"),
        "n_test": len(te),
        "n_test_lesion": int((te.masks.reshape(len(te), -1) > 0).any(1).sum()),
        "summary": summarize(rows, st.level),
    }
    atomic_write_text(out / "seg_study.json", json.dumps(study, indent=1, allow_nan=True) + "\n")
    return study


def summarize(rows: list[dict[str, Any]], level: float = 0.95) -> list[dict[str, Any]]:
    """Per (arm, ratio, fraction): mean Dice and HD95 over repeats, and each paired difference against
    its references (t-interval over repeats, p, detectable difference, verdict, Holm over all)."""
    by = {(r["arm"], r["ratio"], r["fraction"], r["seed"]): r for r in rows}
    order = {a: i for i, a in enumerate(SEG_ARMS)}  # real first, then as the design lists them
    groups = sorted(
        {(r["arm"], r["ratio"], r["fraction"]) for r in rows}, key=lambda g: (g[2], order[g[0]], g[1] or 0)
    )
    out = []
    for arm, ratio, f in groups:
        seeds = sorted(s for (a, r, ff, s) in by if (a, r, ff) == (arm, ratio, f))
        dice = [by[(arm, ratio, f, s)]["dice"] for s in seeds]
        hd = [by[(arm, ratio, f, s)]["hd95"] for s in seeds]
        rec: dict[str, Any] = {
            "arm": arm,
            "ratio": ratio,
            "fraction": f,
            "n_seeds": len(seeds),
            "n_real": by[(arm, ratio, f, seeds[0])]["n_real"],
            "n_synthetic": by[(arm, ratio, f, seeds[0])]["n_synthetic"],
            "dice": float(np.nanmean(np.asarray(dice, float))),
            "hd95": float(np.nanmean(np.asarray([np.nan if v is None else v for v in hd], float))),
        }
        for ref in REFERENCES.get(arm, ()):
            diffs = [
                by[(arm, ratio, f, s)]["dice"] - by[(ref, None, f, s)]["dice"]
                for s in seeds
                if (ref, None, f, s) in by
            ]
            ps = paired_summary(diffs, level=level, bounds=(-1.0, 1.0))
            rec[f"vs_{ref}"] = {
                "mean": ps["mean"],
                "ci": list(ps["ci"]),
                "p_value": ps["p_value"],
                "mde": ps["mde"],
                "n": ps["n"],
                "width": ps["ci"][1] - ps["ci"][0],
                "verdict": verdict(ps["ci"]),
            }
        out.append(rec)
    comps = [(i, k) for i, r in enumerate(out) for k in r if k.startswith("vs_")]
    for (i, k), p in zip(comps, holm([out[i][k]["p_value"] for i, k in comps]), strict=True):
        out[i][k]["p_holm"] = p
        out[i][k]["verdict_holm"] = (
            out[i][k]["verdict"]
            if p < 1 - level or out[i][k]["verdict"] == "no clear difference"
            else "no clear difference"
        )
    return out
