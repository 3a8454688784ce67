"""Sample quality of a sampler recipe (cGAN or diffusion), always with the same protocol (the ablation harness).

    python -m benchmarks.gan_quality --config configs/quickstart.yaml --name base [--set KEY=VALUE ...]
    python -m benchmarks.gan_quality --config configs/diffusion_breastmnist.yaml --name d0 \
        --sampler steps=50,guidance=2      # the same checkpoint sampled another way (diffusion)
    python -m benchmarks.gan_quality --table            # every result so far, as a markdown table

Trains the config's synthesizer (any kind that makes samples; ``--set`` overrides, e.g.
``train.steps=3000``) into
``runs/ablation/<dataset>/<name>`` (reused when finished), then scores the checkpoint that
generation uses by default (the validation-selected ``best`` when the run has one) with the
protocol of docs/metrics.md:

- synthetic N = real **test** N, drawn in the test split's class proportions, seeds
  ``derive_seed(12345, label, k)``;
- TF-Inception features; FID, precision / recall (k = 3), density / coverage (k = 5) against the
  test split; the floor: a train subset of the same N in the same class proportions (seed 0);
- within-class MS-SSIM of synthetic and real test slices; memorized near-copies of train slices;
- label agreement of a real-trained classifier (``classifier:`` section, seed 0) with the intended
  labels, beside its real test accuracy; CAS: the same classifier trained on as many synthetic
  slices as the train split holds (train proportions), test AUC beside real-only.

Each result goes to ``runs/ablation/<dataset>/<name>/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("MEDGAN_ABLATION_DIR", REPO / "runs" / "ablation"))


def counts_like(labels: np.ndarray, n_classes: int) -> list[int]:
    """Per-class counts of ``labels``."""
    return np.bincount(labels, minlength=n_classes).tolist()


def synth_set(
    synth, counts: list[int], base_seed: int, precision: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` images of class c, seeds ``derive_seed(base_seed, c, k)``, sampled in ``precision``."""
    from medgan.seeding import derive_seed

    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    seeds = [derive_seed(base_seed, c, k) for c, n in enumerate(counts) for k in range(n)]
    return synth.generate(labels, seeds, precision=precision).numpy(), np.asarray(labels, np.int64)


def score(
    run_dir: Path,
    cfg,
    data_dir: Path,
    which: str = "default",
    sampler: dict | None = None,
    precision: str = "fp32",
) -> dict:
    """Every figure of the protocol for the run's checkpoint, its samples drawn in ``precision``."""
    from medgan.classifier import TrainedClassifier, train_classifier
    from medgan.data.sources import load_source
    from medgan.metrics.diversity import memorization, within_class_ms_ssim
    from medgan.metrics.evaluate import cached_features
    from medgan.metrics.features import get_extractor
    from medgan.metrics.label import classification_accuracy_score, label_agreement
    from medgan.metrics.stats import density_coverage, fid, precision_recall
    from medgan.synthesis import registry
    from medgan.training.checkpoint import resolve_checkpoint

    ss = load_source(cfg.data, data_dir)
    tr, va, te = ss.split("train"), ss.split("val"), ss.split("test")
    ty, vy, sy = (p.manifest["label"].to_numpy().astype(np.int64) for p in (tr, va, te))
    k = len(ss.classes)
    ckpt = resolve_checkpoint(run_dir if which == "default" else f"{run_dir}@{which}")
    synth = registry.load_sampler(ckpt)
    for key, value in (sampler or {}).items():  # e.g. a diffusion model's sampling_steps / guidance_scale
        setattr(synth, key, value)
    t0 = time.perf_counter()
    syn, syn_y = synth_set(synth, counts_like(sy, k), 12345, precision)
    t_sample = time.perf_counter() - t0

    ext = get_extractor("inception")
    tag = f"{cfg.data.source.model_dump_json()}"
    f_te = cached_features(ext, te.images, tag + ":test")
    f_tr = cached_features(ext, tr.images, tag + ":train")
    f_syn = ext(syn)
    rng = np.random.default_rng(0)
    floor_idx = np.concatenate(
        [rng.choice(np.flatnonzero(ty == c), n, replace=False) for c, n in enumerate(counts_like(sy, k))]
    )
    f_floor = f_tr[floor_idx]
    out: dict = {
        "checkpoint": str(ckpt),
        "step": int(json.loads(ckpt.with_suffix(".json").read_text())["step"]),
    }
    out["n"] = len(syn)
    out["sample_s"] = round(t_sample, 1)
    out["sampler"] = sampler or {}
    out["sampling_precision"] = precision
    out["fid"], out["floor_fid"] = fid(f_te, f_syn), fid(f_te, f_floor)
    out["fid_ratio"] = out["fid"] / out["floor_fid"]
    out["precision"], out["recall"] = precision_recall(f_te, f_syn, 3)
    out["floor_precision"], out["floor_recall"] = precision_recall(f_te, f_floor, 3)
    out["density"], out["coverage"] = density_coverage(f_te, f_syn, 5)
    out["floor_density"], out["floor_coverage"] = density_coverage(f_te, f_floor, 5)
    per_class = {}
    floor_y = np.repeat(np.arange(k), counts_like(sy, k))  # floor_idx is class-major
    for c in range(k):
        a, b = f_te[sy == c], f_syn[syn_y == c]
        if min(len(a), len(b)) > 5:
            p, r = precision_recall(a, b, 3)
            per_class[ss.classes[c]] = {
                "fid": fid(a, b),
                "floor_fid": fid(a, f_floor[floor_y == c]),
                "precision": p,
                "recall": r,
            }
    out["per_class"] = per_class
    out["ms_ssim"] = within_class_ms_ssim(syn, syn_y)["mean"]
    out["ms_ssim_real"] = within_class_ms_ssim(te.images, sy)["mean"]
    mem = memorization(syn, f_syn, tr.images, f_tr, te.images, f_te)  # calibrated on the test split
    out["memorized"], out["memorized_flagged"] = mem["excess"], mem["count"]
    out["max_correlation"] = float(mem["pixel"]["nn_similarity"].max())

    clf_dir = OUT / ss.source_format / f"_real_classifier_{cfg.data.source.model_dump().get('name', 'data')}"
    clf_cfg = cfg.classifier.model_copy(update={"seed": 0})
    try:
        real_clf = TrainedClassifier.load(clf_dir)
    except Exception:
        real_clf = train_classifier(tr.images, ty, va.images, vy, k, clf_cfg, list(ss.classes))
        real_clf.save(clf_dir)
    la = label_agreement(real_clf, syn, syn_y, te.images, sy)
    out["label_agreement"] = la.agreement
    out["label_agreement_per_class"] = la.per_class
    out["real_test_acc"] = la.real_test_acc
    cas_x, cas_y = synth_set(synth, counts_like(ty, k), 54321, precision)
    cas = classification_accuracy_score(
        cas_x, cas_y, va.images, vy, te.images, sy, list(ss.classes), clf_cfg, real_clf
    )
    out["cas_auc"], out["cas_acc"], out["real_auc"] = cas.auc, cas.acc, cas.real_auc
    return out


def main(argv: list[str] | None = None) -> None:
    """Train (or reuse) one recipe and score it; or print the table of every result."""
    from medgan.config import dump_config, load_config
    from medgan.paths import resolve_data_dir
    from medgan.train import train
    from medgan.training.checkpoint import list_checkpoints

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs/quickstart.yaml"))
    ap.add_argument("--name", default="base")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    ap.add_argument("--which", default="default", help="default (best if selected), last or best")
    ap.add_argument("--table", action="store_true")
    ap.add_argument(
        "--sampler",
        default="",
        help="sampler settings for a diffusion checkpoint: steps=N,guidance=W (a result of its own)",
    )
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="sample in bf16 where the CPU / GPU runs it natively (fp32 is the reference; a result of its own)",
    )
    args = ap.parse_args(argv)
    if args.table:
        print_table()
        return
    cfg = load_config(args.config, args.set)
    data_dir = resolve_data_dir(args.data_dir)
    run_dir = OUT / cfg.data.source.model_dump().get("name", "data") / args.name
    ckpts = list_checkpoints(run_dir / "checkpoints")
    t0 = time.perf_counter()
    if not ckpts or int(ckpts[-1].stem.split("-")[1]) < cfg.train.steps:
        train(cfg, run_dir, data_dir, resume=bool(ckpts))
    t_train = time.perf_counter() - t0
    names = {"steps": "sampling_steps", "guidance": "guidance_scale"}
    sampler = {
        names[k]: (int(v) if k == "steps" else float(v))
        for k, v in (item.split("=") for item in args.sampler.split(",") if item)
    }
    res = score(run_dir, cfg, data_dir, args.which, sampler, args.precision)
    res.update(
        {"name": args.name, "overrides": args.set, "train_s": round(t_train, 1), "steps": cfg.train.steps}
    )
    suffix = (
        ("" if args.which == "default" else f"-{args.which}")
        + "".join(f"-{k}{v:g}" for k, v in sorted(sampler.items()))
        + ("" if args.precision == "fp32" else f"-{args.precision}")
    )
    (run_dir / f"quality{suffix}.json").write_text(json.dumps(res, indent=2, default=float))
    (run_dir / "config.used.yaml").write_text(dump_config(cfg))
    print(json.dumps({k: v for k, v in res.items() if k not in ("per_class",)}, default=float))


def print_table() -> None:
    """Markdown table of every ``quality*.json`` under ``runs/ablation``."""
    cols = [
        "fid",
        "floor_fid",
        "fid_ratio",
        "precision",
        "recall",
        "density",
        "coverage",
        "ms_ssim",
        "label_agreement",
        "real_test_acc",
        "cas_auc",
        "real_auc",
        "memorized",
        "step",
        "train_s",
        "sample_s",
    ]
    print("| dataset | run | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for p in sorted(OUT.glob("*/*/quality*.json"), key=lambda p: p.stat().st_mtime):
        r = json.loads(p.read_text())
        vals = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols]
        print(f"| {p.parent.parent.name} | {r['name']}{p.stem[7:]} | " + " | ".join(vals) + " |")


if __name__ == "__main__":
    main()
