"""The ``medgan`` command line (Typer).

Errors caused by input print one line ``medgan: error: ...`` and exit with code 2;
``--debug`` (anywhere on the command line) shows the traceback instead.

Each command imports the library code it runs inside its function (``# lazy: keeps --help
fast``), so ``medgan --help``, ``--version`` and a mistyped option answer without loading torch,
MONAI or pydantic; only leaf modules (errors, paths, provenance) are imported at the top.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Annotated

import typer

from medgan import __version__
from medgan.config.base import MAX_SEED
from medgan.errors import ConfigError, InputError, MedganError, with_library_warnings
from medgan.io.atomic import DISK_FULL, is_disk_full
from medgan.paths import resolve_data_dir
from medgan.provenance import set_command

app = typer.Typer(
    name="medgan",
    help="Synthesize lesion and healthy slices with MONAI GANs and measure whether they help a classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Read, inspect and prepare labelled 2-D slices.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $MEDGAN_DATA_DIR, else the user cache)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value, e.g. --set data.size=64 (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also show the warnings libraries raised (as notes).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """medgan: GAN-synthesized medical slices, honestly evaluated."""


@data_app.command("inspect")
def inspect_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="medmnist:NAME, a .npz, a labels CSV, a NIfTI/NRRD file, a DICOM file or folder, or a config YAML."
        ),
    ],
    mask: Annotated[
        str | None, typer.Option("--mask", help="Mask: DICOM SEG or NIfTI/NRRD label volume.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    window: Annotated[
        str | None, typer.Option("--window", help="CT window preset (abdomen, lung, brain, bone, ...).")
    ] = None,
    axis: Annotated[
        str | None, typer.Option("--axis", help="Slicing axis for NIfTI: axial|coronal|sagittal.")
    ] = None,
    size: Annotated[int | None, typer.Option("--size", help="Resize slices to SIZE x SIZE.")] = None,
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Print format, slice count, splits, labels, shape and intensity range of SOURCE."""
    from medgan.data.detect import source_from_spec  # lazy: keeps --help fast
    from medgan.data.inspect import render_text, summarize  # lazy: keeps --help fast
    from medgan.data.sources import load_source  # lazy: keeps --help fast

    ddir = resolve_data_dir(data_dir)
    src_opts: dict = {}
    if window is not None:
        src_opts["intensity"] = {"window": window}
    if axis is not None:
        src_opts["axis"] = axis
    data = source_from_spec(
        source, ddir, mask=mask, overrides=overrides, source_options=src_opts, data_options={"size": size}
    )
    summary = summarize(load_source(data, ddir))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(render_text(summary, source))


@data_app.command("prepare")
def prepare_cmd(
    config: Annotated[Path, typer.Argument(help="Run config YAML (its 'data' section is used).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")],
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty output folder.")
    ] = False,
    salt_file: Annotated[
        Path | None,
        typer.Option(
            "--salt-file",
            help="Salt of the pseudonymous patient keys: reused when it exists, created (0600) when not, "
            "so prepares of the same patients share keys. Default: a new salt in OUT/patient_key.salt.",
        ),
    ] = None,
    keep_source_ids: Annotated[
        bool,
        typer.Option(
            "--keep-source-ids",
            help="Keep the raw patient IDs and series / SOP instance UIDs in manifest.csv. "
            "The output then contains patient identifiers.",
        ),
    ] = False,
) -> None:
    """Write the slices a config describes as NPZ shards plus manifest.csv (pseudonymous patient keys)."""
    from medgan.config import load_config  # lazy: keeps --help fast
    from medgan.data.inspect import render_text, summarize  # lazy: keeps --help fast
    from medgan.data.prepare import write_prepared  # lazy: keeps --help fast
    from medgan.data.sources import load_source  # lazy: keeps --help fast

    if keep_source_ids and salt_file is not None:
        raise InputError(salt_file, "--salt-file has no use with --keep-source-ids (no keys are made)")
    cfg = load_config(config, overrides)
    ddir = resolve_data_dir(data_dir)
    ss = load_source(cfg.data, ddir)
    write_prepared(ss, out, cfg, overwrite=overwrite, salt_file=salt_file, keep_source_ids=keep_source_ids)
    typer.echo(render_text(summarize(ss), str(config)))
    typer.echo(f"wrote {len(ss)} slices to {out}")
    if keep_source_ids:
        typer.echo(
            f"warning: {out}/manifest.csv holds patient IDs and DICOM UIDs (--keep-source-ids)", err=True
        )


@app.command("train")
def train_cmd(
    config: Annotated[Path, typer.Argument(help="Run config YAML.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default: runs/<config name>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")
    ] = False,
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Train the config's synthesizer on its train split (checkpoints, samples, stats in the run folder)."""
    from medgan import distributed  # lazy: keeps --help fast
    from medgan.config import load_config  # lazy: keeps --help fast
    from medgan.train import train  # lazy: keeps --help fast

    cfg = load_config(config, overrides)
    distributed.init_from_env(cfg.train.device)
    run_dir = out if out is not None else Path("runs") / cfg.name
    ckpt = train(cfg, run_dir, resolve_data_dir(data_dir), resume=resume)
    if distributed.is_main():
        from medgan.training.checkpoint import checkpoint_step  # lazy: keeps --help fast

        which = (
            f"best on validation, step {checkpoint_step(ckpt)}" if ckpt.name.startswith("best") else "last"
        )
        typer.echo(f"trained {cfg.train.steps} steps; checkpoint ({which}) {ckpt}")


def _check_sampler_flags(keep_source_ids: bool, features: str | None) -> None:
    """Flags that only apply to ``--translate``, refused when sampling."""
    if keep_source_ids:
        raise InputError("--keep-source-ids", "records source UIDs of translations; use it with --translate")
    if features is not None:
        raise InputError("--features", "scores translations; use it with --translate (see medgan evaluate)")


@app.command("generate")
def generate_cmd(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            help="Checkpoint .safetensors, or a run folder (its validation-selected best, else its latest; RUN@last for the latest).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (re-running the same command resumes).")],
    n_per_class: Annotated[
        int | None,
        typer.Option("--n-per-class", help="Images per class (a sampler: conditional GAN, diffusion model)."),
    ] = None,
    counts_like: Annotated[
        str | None,
        typer.Option(
            "--counts-like",
            help="Per-class counts of a real split, SOURCE[:split] (default split test), e.g. medmnist:breastmnist:test.",
        ),
    ] = None,
    n_total: Annotated[
        int | None,
        typer.Option(
            "--n-total", help="With --counts-like: N images in all, in that split's class proportions."
        ),
    ] = None,
    translate: Annotated[
        str | None, typer.Option("--translate", help="A2B or B2A: translate real slices with a CycleGAN.")
    ] = None,
    input_spec: Annotated[
        str | None,
        typer.Option("--input", help="Slices to translate: medmnist:NAME, a file/folder, or a config."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Split of --input to translate: train|val|test|all.")
    ] = "train",
    min_target_prob: Annotated[
        float | None,
        typer.Option("--min-target-prob", help="Drop translations the classifier scores below p."),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="With --translate: also score translations against real target-domain test slices "
            "(inception | domain | TorchScript path): FID etc. with the real-real floor, in metrics.json.",
        ),
    ] = None,
    keep_source_ids: Annotated[
        bool,
        typer.Option(
            "--keep-source-ids",
            help="With --translate: also record each source slice's DICOM SOP Instance UID (an identifier).",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="png | nifti | npz | dicom")] = "png",
    classes: Annotated[
        list[str] | None, typer.Option("--classes", help="Class names or indices (repeatable; default all).")
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            min=0,
            max=MAX_SEED - 1,
            help="Run seed; image k of class c uses a seed derived from (S, c, k).",
        ),
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per generator call.")] = 256,
    bits: Annotated[int, typer.Option("--bits", help="PNG bit depth: 8 or 16.")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:N]")] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different generation in --out.")
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="fp32 (reproducible reference) or bf16 (faster where native: CUDA; a diffusion model also on an AVX512-BF16 / AMX CPU).",
        ),
    ] = "fp32",
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            help="A folder of mask images (PNG / JPEG / TIFF / BMP, nonzero = lesion) to draw lesions on, instead of the training masks (model.kind spade).",
        ),
    ] = None,
) -> None:
    """Generate synthetic slices (conditional GAN, diffusion model, SPADE with masks) or translate real ones (CycleGAN), with a traceable manifest."""
    from medgan import distributed  # lazy: keeps --help fast
    from medgan.generate import generate  # lazy: keeps --help fast

    distributed.init_from_env(device)
    from medgan.synthesis import registry  # lazy: keeps --help fast

    entry = registry.checkpoint_kind(checkpoint)  # the checkpoint, not the flags, decides the path
    if translate is None and entry.makes == "translations":
        raise ConfigError(
            f"{checkpoint}: model.kind",
            f"{entry.kind!r} ({entry.description}) translates real slices; give --translate A2B|B2A and --input",
        )
    if translate is not None:
        if masks is not None:
            raise InputError(
                "--masks", "draws lesions for a mask-conditioned sampler; it does not apply to --translate"
            )
        registry.get(entry.kind, makes="translations", where=f"{checkpoint}: model.kind")
        from medgan.translate import translate as run_translate  # lazy: keeps --help fast

        if input_spec is None:
            raise InputError("--input", "--translate needs --input (the slices to translate)")
        m = distributed.on_main(  # not sharded: rank 0 translates, the other ranks wait
            run_translate,
            checkpoint,
            out,
            translate,
            input_spec,
            resolve_data_dir(data_dir),
            split=split,
            fmt=fmt,
            bits=bits,
            batch_size=min(batch_size, 64),
            device=device,
            min_target_prob=min_target_prob,
            overwrite=overwrite,
            features=features,
            keep_source_ids=keep_source_ids,
        )
        if distributed.is_main():
            typer.echo(
                f"translated {len(m)} slices ({translate}) to {out}; label-preservation check in metrics.json"
            )
        return
    _check_sampler_flags(keep_source_ids, features)
    if n_total is not None and counts_like is None:
        raise InputError("--n-total", "needs --counts-like (the split whose class proportions to keep)")
    if n_per_class is not None and counts_like is not None:
        raise InputError("--counts-like", "give --n-per-class or --counts-like, not both")
    counts: int | dict[str, int]
    if counts_like is not None:
        from medgan.generate import counts_like as real_counts  # lazy: keeps --help fast

        counts = real_counts(counts_like, resolve_data_dir(data_dir), n_total)
    elif n_per_class is None:
        raise InputError(
            "--n-per-class",
            "required to generate from a sampler checkpoint (or --counts-like, or --translate)",
        )
    else:
        counts = n_per_class
    names = [c for item in (classes or []) for c in item.split(",") if c]
    m = generate(
        checkpoint,
        out,
        counts,
        classes=names or None,
        fmt=fmt,
        seed=seed,
        batch_size=batch_size,
        bits=bits,
        device=device,
        overwrite=overwrite,
        precision=precision,
        masks=masks,
    )
    if distributed.is_main():
        paired = " with their masks" if "mask" in m.columns else ""
        typer.echo(f"wrote {len(m)} {fmt} images{paired} and manifest.csv to {out}")


@app.command("export-bundle")
def export_bundle_cmd(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Conditional-GAN checkpoint .safetensors, or a run folder (best, else latest; RUN@last for the latest)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to create (written atomically).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Bundle name in metadata.json (default: from the run).")
    ] = None,
    bundle_version: Annotated[
        str, typer.Option("--bundle-version", help="Bundle version in metadata.json.")
    ] = "0.1.0",
    n_per_class: Annotated[
        int, typer.Option("--n-per-class", help="Default images per class when the bundle runs.")
    ] = 16,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED - 1, help="Default run seed when the bundle runs.")
    ] = 0,
    output_ext: Annotated[
        str, typer.Option("--output-ext", help="Default bundle output: .png (8-bit) or .nii.gz (float).")
    ] = ".png",
) -> None:
    """Export a sampler checkpoint (conditional GAN, diffusion model) as a self-contained MONAI bundle (run with python -m monai.bundle run)."""
    from medgan.bundle import export_bundle  # lazy: keeps --help fast

    path = export_bundle(
        checkpoint,
        out,
        overwrite=overwrite,
        name=name,
        version=bundle_version,
        n_per_class=n_per_class,
        seed=seed,
        output_ext=output_ext,
    )
    typer.echo(f"wrote MONAI bundle to {path}")
    typer.echo(
        f"run it: python -m monai.bundle run --config_file {path / 'configs' / 'inference.json'} "
        f"--bundle_root {path} --output_dir OUT"
    )


@app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Argument(help="Run config YAML.")] = Path("configs/quickstart.yaml"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default: runs/<config name>).")
    ] = None,
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
) -> None:
    """The main job: data, the config's synthesizer, samples, metrics, study and report in one run folder (resumable)."""
    from medgan.config import load_config  # lazy: keeps --help fast
    from medgan.run import run  # lazy: keeps --help fast

    cfg = load_config(config, overrides)
    folder = out if out is not None else Path("runs") / cfg.name
    run(cfg, folder, resolve_data_dir(data_dir), log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"report: {folder / 'report.html'}")


@app.command("augment")
def augment_cmd(
    config: Annotated[Path, typer.Argument(help="Run config YAML with an 'augment' section.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the augmented dataset.")],
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different augmented dataset in --out.")
    ] = False,
) -> None:
    """Write a ready-to-train augmented dataset (real + synthetic slices, manifest, MONAI datalist)."""
    from medgan.augment import augment  # lazy: keeps --help fast
    from medgan.config import load_config  # lazy: keeps --help fast

    cfg = load_config(config, overrides)
    m = augment(cfg, out, resolve_data_dir(data_dir), overwrite=overwrite)
    n_syn = int((m["source"] == "synthetic").sum())
    typer.echo(
        f"wrote {len(m) - n_syn} real and {n_syn} synthetic slices to {out}; datalist: {out / 'datalist.json'}"
    )


@app.command("study")
def study_cmd(
    config: Annotated[Path, typer.Argument(help="Run config YAML with a 'study' section.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Study folder (default: runs/<name>/study).")
    ] = None,
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Augmentation-benefit study: classifier metrics with CIs for each arm, paired with real-only."""
    from medgan.config import load_config  # lazy: keeps --help fast
    from medgan.study import run_study, study_report  # lazy: keeps --help fast

    cfg = load_config(config, overrides)
    folder = out if out is not None else Path("runs") / cfg.name / "study"
    report = run_study(cfg, resolve_data_dir(data_dir), folder)
    for g in report.get("gates", {}).values():
        typer.echo(("FAILED GATES: " if not g["passed"] else "gates: ") + g["verdict"])
        for r in g["results"]:
            if r["passed"] is False:
                typer.echo(f"  - {r['sentence']}")
    for rec in report["summary"]:
        ratio = "" if rec["ratio"] is None else f" ratio {rec['ratio']:g}"
        if rec.get("seeds") == 0:
            typer.echo(f"{rec['arm']:<22}{ratio:<10} fraction {rec['fraction']:g}  {rec['verdict']}")
            continue
        lo, hi = rec["auc_ci"]
        line = f"{rec['arm']:<22}{ratio:<10} fraction {rec['fraction']:g}  AUC {rec['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
        if "auc_diff_vs_real" in rec:
            dlo, dhi = rec["auc_diff_ci"]
            line += f"  vs real {rec['auc_diff_vs_real']:+.3f} [{dlo:+.3f}, {dhi:+.3f}] {rec['verdict']}"
        if "auc_diff_vs_classical" in rec:
            clo, chi = rec["auc_diff_vs_classical_ci"]
            line += f"; vs classical {rec['auc_diff_vs_classical']:+.3f} [{clo:+.3f}, {chi:+.3f}]"
        if rec.get("worth_real") is not None and rec["arm"] not in ("real", "classical"):
            line += f"; worth {_worth_words(rec)}"
        typer.echo(line)
    _, html = study_report(cfg, folder, report)
    typer.echo(f"results in {folder}; report: {html}")


def _worth_words(rec: dict) -> str:
    """ "120 real slices [40, 210]" (or "at least ..." / "at most ..." where the curve ends)."""
    lo, hi = rec.get("worth_real_ci") or (float("nan"), float("nan"))
    bound = {"above": "at least ", "below": "at most "}.get(rec.get("worth_censored") or "", "")
    return f"{bound}{rec['worth_real']:+.0f} real slices [{lo:+.0f}, {hi:+.0f}]"


@app.command("evaluate")
def evaluate_cmd(
    real: Annotated[
        str, typer.Option("--real", help="Real slices: SOURCE[:split], e.g. medmnist:breastmnist:test.")
    ],
    synthetic: Annotated[
        str,
        typer.Option(
            "--synthetic",
            help="A generation folder (PNG/NPZ), or any source as SOURCE[:split] (default: every split).",
        ),
    ],
    features: Annotated[
        str, typer.Option("--features", help="inception | domain | path to a TorchScript feature network.")
    ] = "inception",
    classifier: Annotated[
        Path | None,
        typer.Option("--classifier", help="Classifier for --features domain (e.g. RUN/classifier)."),
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Training run folder: adds discriminator accuracy.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for metrics.json and closest_pairs.png.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json to stdout.")] = False,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=2, help="Bootstrap resamples for the CIs (at least 2).")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED - 1)] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:N]")] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="Inception on CUDA: fp32 (reference) or bf16 (faster; see docs/metrics.md)."
        ),
    ] = "fp32",
    label_scores: Annotated[
        bool,
        typer.Option(
            "--label-scores/--no-label-scores",
            help="Add label agreement and CAS (trains classifiers on the real train split and on the samples).",
        ),
    ] = False,
    cas_synthetic: Annotated[
        str | None,
        typer.Option(
            "--cas-synthetic",
            help="With --label-scores: the synthetic set CAS trains on (default --synthetic), e.g. one "
            "generated with --counts-like SOURCE:train.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Run config: its classifier section trains the label-score classifiers and its gates "
            "section is checked (default: the defaults).",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """FID, KID, precision/recall, density/coverage, per-class scores, diversity, memorization and
    quality gates of synthetic slices, with N and the real-real floor (optionally label agreement and CAS)."""
    from medgan import distributed  # lazy: keeps --help fast
    from medgan.device import resolve_device  # lazy: keeps --help fast
    from medgan.metrics.evaluate import evaluate  # lazy: keeps --help fast
    from medgan.metrics.features import get_extractor  # lazy: keeps --help fast

    distributed.init_from_env(device)
    ddir = resolve_data_dir(data_dir)
    if features == "domain" and classifier is None:
        from medgan.metrics.evaluate import ensure_domain_classifier  # lazy: keeps --help fast

        base = run if run is not None else (out if out is not None else Path("."))
        classifier = distributed.on_main(ensure_domain_classifier, real, ddir, base / "classifier")
    ext = get_extractor(features, distributed.local_device(resolve_device(device)), classifier, precision)
    from medgan.config import ClassifierConfig, GatesConfig, load_config  # lazy: keeps --help fast

    cfg = load_config(config) if config is not None else None
    clf_dir = None
    if label_scores and (run is not None or out is not None):
        clf_dir = (run if run is not None else out) / "real_classifier"  # type: ignore[operator]
    m = evaluate(
        real,
        synthetic,
        ext,
        ddir,
        out=out,
        n_boot=n_boot,
        seed=seed,
        run_dir=run,
        label_scores=label_scores,
        classifier=cfg.classifier if cfg is not None else ClassifierConfig(),
        classifier_dir=clf_dir,
        cas_synthetic=cas_synthetic,
        gates=cfg.gates if cfg is not None else GatesConfig(),
    )
    if not distributed.is_main():  # features were sharded; rank 0 computed and wrote the metrics
        return
    if as_json:
        typer.echo(json.dumps(m, default=float))
        return
    floor = m.get("floor_fid")
    lines = [
        f"features      {m['features']}",
        f"N             real {m['n_real']} ({real}), synthetic {m['n_synthetic']}",
        f"FID           {m['fid']:.2f}  95% CI [{m['fid_ci'][0]:.2f}, {m['fid_ci'][1]:.2f}]"
        + (f"   floor (real train vs real, N={m['floor_n']}) {floor:.2f}" if floor is not None else ""),
        f"KID           {m['kid_mean']:.4f} +/- {m['kid_std']:.4f} (subsets of {m['kid_subset_size']})",
        f"precision     {_fmt(m['precision'])}   recall {_fmt(m['recall'])}  (k = 3)"
        + (
            f"   floor {_fmt(m.get('floor_precision'))} / {_fmt(m.get('floor_recall'))}"
            if m.get("floor_fid") is not None
            else ""
        ),
        f"density       {_fmt(m['density'])}   coverage {_fmt(m['coverage'])}  (k = 5)"
        + (
            f"   floor {_fmt(m.get('floor_density'))} / {_fmt(m.get('floor_coverage'))}"
            if m.get("floor_fid") is not None
            else ""
        ),
        f"MS-SSIM       {m['ms_ssim']:.3f} within class (real: {m['ms_ssim_real']:.3f}; lower = more diverse)",
        f"memorized     {m['memorized_count']} of {m['n_synthetic']} near-copies of training images beyond chance"
        + (
            f" ({m['memorization']['count']} flagged, {m['memorization']['allowed']} allowed)"
            if m.get("memorization")
            else ""
        ),
    ]
    if m.get("discriminator_accuracy"):
        da = m["discriminator_accuracy"]
        lines.append(f"D accuracy    real {da['real']:.2f}, fake {da['fake']:.2f} (end of training)")
    for name, pc in m.get("per_class", {}).items():
        lines.append(
            f"class {name[:7]:<7} N {pc['n_real']}/{pc['n_synthetic']}  FID {_fmt(pc['fid'], 2)}"
            f" (floor {_fmt(pc.get('floor_fid'), 2)})  precision {_fmt(pc['precision'])}  recall {_fmt(pc['recall'])}"
            f"  coverage {_fmt(pc['coverage'])}"
        )
    if "label_agreement" in m:
        la, cas = m["label_agreement"], m["cas"]
        lines.append(
            f"labels        agreement {la['agreement']:.3f} (real classifier's test accuracy {la['real_test_acc']:.3f})"
        )
        lines.append(
            f"CAS           test AUC {_fmt(cas['auc'])} trained on {cas['n_synthetic']} synthetic slices"
            f" (real-only {_fmt(cas['real_auc'])}; real at the same N {_fmt(cas['real_same_n_auc'])})"
        )
    if m.get("gates"):
        lines.append(f"gates         {m['gates']['verdict']}")
        lines += [f"  - {r['sentence']}" for r in m["gates"]["results"] if r["passed"] is not True]
    typer.echo("\n".join(lines))


def _fmt(v: float | None, digits: int = 3) -> str:
    """A number for the text output; ``n/a`` when it was not computed."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medgan`` console script; returns the exit code.

    Warnings that libraries (pydicom, Pillow, nibabel, torch) raise while a command runs are
    collected, not printed: a failing command folds the first into its one-line error, a
    successful one shows them only with ``--verbose`` (as ``medgan: note:`` lines).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    set_command(["medgan", *args])
    debug = "--debug" in args
    hook = threading.excepthook
    if not debug:  # a full disk also stops background writers (TensorBoard's); the command itself says so
        threading.excepthook = _quiet_disk_full
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = _run(args, debug, caught)
    finally:
        threading.excepthook = hook
    if code == 0 and "--verbose" in args:
        for line in _warning_lines(caught):
            print(f"medgan: note: {line}", file=sys.stderr)
    return code


def _quiet_disk_full(args: threading.ExceptHookArgs) -> None:
    """Swallow a background thread's disk-full error (the command reports it in one line); pass others on."""
    if args.exc_value is not None and is_disk_full(args.exc_value):
        return
    threading.__excepthook__(args)


def _warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warnings, one line each (category and message), in the order they came."""
    lines = [f"{w.category.__name__}: {' '.join(str(w.message).split())[:300]}" for w in caught]
    return list(dict.fromkeys(lines))


def _error_line(err: BaseException, caught: list[warnings.WarningMessage]) -> str:
    return with_library_warnings(str(err), _warning_lines(caught))


def _run(args: list[str], debug: bool, caught: list[warnings.WarningMessage]) -> int:
    try:
        _check_torchrun(args)
        app(args=args, prog_name="medgan", standalone_mode=False)
        return 0
    except MedganError as err:
        if debug:
            traceback.print_exc()
        print(f"medgan: error: {_error_line(err, caught)}", file=sys.stderr)
        return err.exit_code
    except typer.Exit as err:
        return int(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("medgan: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # the file system refused: a folder that cannot be made, a full disk, no permission
        if debug:
            traceback.print_exc()
        if err.errno in DISK_FULL:
            print(f"medgan: error: {_disk_full_line(err, args)}", file=sys.stderr)
            return MedganError.exit_code
        if debug or err.filename is None:
            return _internal_error(err, debug)
        print(f"medgan: error: {_os_error_line(err)}", file=sys.stderr)
        return MedganError.exit_code
    except Exception as err:
        if hasattr(err, "show") and hasattr(err, "exit_code"):  # click / typer usage errors
            err.show()
            return int(err.exit_code)
        return _internal_error(err, debug)
    finally:
        dist = sys.modules.get("medgan.distributed")  # loaded only by the commands that use it
        if dist is not None:
            dist.destroy()


#: What a rerun does after a full disk, by command: the atomic writers removed every unfinished file.
_AFTER_DISK_FULL = {
    "train": "every checkpoint on disk is whole: free space and rerun (with --resume once one was written)",
    "run": "finished stages and the last checkpoint are kept: free space and rerun the same command",
    "generate": "finished images are kept: free space and rerun the same command to finish",
    "augment": "finished files are kept: free space and rerun the same command to finish",
    "study": "finished cells are kept: free space and rerun the same command",
}


def _disk_full_line(err: OSError, args: list[str]) -> str:
    """One line for a full disk: where, and what a rerun does (nothing half-written is left)."""
    command = next((a for a in args if not a.startswith("-")), "")
    where = os.fsdecode(err.filename) if err.filename is not None else "the output"
    after = _AFTER_DISK_FULL.get(command, "nothing was written: free space and rerun the same command")
    return f"{where}: no space left on the disk ({err.strerror or 'disk full'}); {after}"


def _os_error_line(err: OSError) -> str:
    """One line for a file-system refusal, naming the path (and the file in the way, if one is)."""
    path = Path(os.fsdecode(err.filename))
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if isinstance(err, (FileExistsError, NotADirectoryError)) and blocker is not None:
        return f"{path}: cannot create a folder here, {blocker} is a file"
    return f"{path}: {err.strerror or err.__class__.__name__}"


def _internal_error(err: Exception, debug: bool) -> int:
    if debug:
        raise err
    msg = " ".join(str(err).split())[:300]
    print(
        f"medgan: internal error: {err.__class__.__name__}: {msg} (rerun with --debug for details)",
        file=sys.stderr,
    )
    return 1


#: The commands that run under ``torchrun`` (docs/distributed.md).
DISTRIBUTED_COMMANDS = ("train", "generate", "evaluate")


def _check_torchrun(args: list[str]) -> None:
    """Refuse other commands under ``torchrun``: their processes would all write the same files."""

    command = next((a for a in args if not a.startswith("-")), None)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and command not in (None, *DISTRIBUTED_COMMANDS):
        raise MedganError(
            f"`medgan {command}` does not run under torchrun; only {', '.join(DISTRIBUTED_COMMANDS)} do"
        )


if __name__ == "__main__":
    sys.exit(main())
