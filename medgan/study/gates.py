"""The quality gates of the study's synthesizers, each evaluated once and cached."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.config import RunConfig
from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.io.atomic import atomic_write_text
from medgan.metrics.evaluate import (
    ensure_real_classifier,
    eval_counts,
    evaluate_sets,
    gate_report,
    split_class_counts,
)
from medgan.metrics.features import get_extractor
from medgan.study.cells import study_precision
from medgan.synthesis import registry
from medgan.training.checkpoint import (
    checkpoint_meta,
)
from medgan.translate import translation_scores


class Gates:
    """The quality gates of the study's synthesizers (docs/study.md), each evaluated once and cached.

    Gates decide which arms run, so they are scored on the **validation** split, never on test
    (test scores stay for reporting): a synthesizer's metrics are computed as ``medgan run``
    computes them, but against the validation split, its N in its class proportions,
    ``pipeline.features`` (real features cached), label scores with the classifier section's
    settings (CAS early-stops on the same split it is scored on, so it reads slightly high).
    CycleGANs are scored on translations of the validation split into the other class
    (:func:`medgan.translate.translation_scores`), the worse direction counting.
    """

    SPLIT = "val"

    def __init__(
        self,
        cfg: RunConfig,
        ss: Any,
        out: Path,
        clf_dir: Path,
    ) -> None:
        self.cfg, self.ss, self.folder, self.clf_dir = cfg, ss, out / "gates", clf_dir
        self.records: dict[str, dict[str, Any]] = {}
        self._ext: Any = None
        self._clf: Any = None

    @property
    def active(self) -> bool:
        """Whether any gate is switched on."""
        return self.cfg.gates is not None and self.cfg.gates.active()

    def extractor(self) -> Any:
        """The feature extractor of ``pipeline.features`` (built on first use)."""
        if self._ext is None:
            self._ext = get_extractor(self.cfg.pipeline.features, resolve_device(self.cfg.train.device))
        return self._ext

    def check(self, name: str, kind: str, ckpt: Path, fraction: float, seed: int) -> dict[str, Any]:
        """The gate record of synthesizer ``name`` (computed, or read from ``gates/<name>.json``)."""
        if name in self.records:
            return self.records[name]
        key = {
            "checkpoint": checkpoint_meta(ckpt).sha256,
            "split": self.SPLIT,
            "seed": self.cfg.seed,
            "data": self.cfg.data.model_dump(mode="json"),
            "pipeline": self.cfg.pipeline.model_dump(mode="json"),
            "classifier": self.cfg.classifier.model_dump(mode="json"),
        }
        cache = self.folder / f"{name}.json"
        metrics = None
        source = "the study's evaluation on the validation split"
        if cache.is_file():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                rec = json.loads(cache.read_text(encoding="utf-8"))
                if rec["key"] == key:
                    metrics = rec["metrics"]
        if metrics is None:
            try:
                sized = registry.get(kind).sized
                metrics = self._sample_metrics(ckpt, name) if sized else self._translation_metrics(ckpt)
            except InputError as err:  # e.g. a validation split too small to score: every gate "not measured"
                metrics = {"not_measured": str(err)}
            atomic_write_text(cache, json.dumps({"key": key, "metrics": metrics}, indent=2, default=float))
        assert self.cfg.gates is not None
        rep = gate_report(metrics, self.cfg.gates, name)
        rec = {
            "kind": kind,
            "fraction": fraction,
            "seed": None if fraction == 1.0 else seed,
            "checkpoint": str(ckpt),
            "metrics_from": source,
            **rep,
        }
        self.records[name] = rec
        return rec

    def _sets(self) -> tuple[Any, Any, Any, np.ndarray, np.ndarray, np.ndarray]:
        """Train, val and the split the gates are scored on (``SPLIT``), with their labels."""
        tr, va, ev = (self.ss.split(n) for n in ("train", "val", self.SPLIT))
        ty, vy, ey = (p.manifest["label"].to_numpy().astype(np.int64) for p in (tr, va, ev))
        return tr, va, ev, ty, vy, ey

    def _sample_metrics(self, ckpt: Path, name: str) -> dict[str, Any]:
        cfg, ss = self.cfg, self.ss
        tr, _, ev, _, _, _ = self._sets()
        n_classes = len(ss.classes)

        def as_list(c: int | dict[int, int]) -> list[int]:
            return [c] * n_classes if isinstance(c, int) else [c.get(i, 0) for i in range(n_classes)]

        synth = registry.load_sampler(ckpt)
        prec = study_precision(cfg)
        syn, syn_y = synth.sample_counts(
            as_list(eval_counts(cfg.pipeline, ev, tr, n_classes)), cfg.seed, prec
        )
        cas = None
        if cfg.pipeline.label_scores:
            n = cfg.pipeline.cas_n or len(tr)
            cas = synth.sample_counts(as_list(split_class_counts(tr, n, n_classes)), cfg.seed, prec)
        return evaluate_sets(
            ss,
            self.SPLIT,
            syn,
            syn_y,
            self.extractor(),
            tag=cfg.data.model_dump_json(),
            real_name=f"{cfg.data.source.kind} source from the config:{self.SPLIT}",
            syn_name=name,
            seed=cfg.seed,
            label_scores="if-possible" if cfg.pipeline.label_scores else False,
            classifier=cfg.classifier,
            classifier_dir=self.clf_dir,
            cas_set=cas,
        )

    def _translation_metrics(self, ckpt: Path) -> dict[str, Any]:
        tr, va, ev, ty, vy, ey = self._sets()
        clf = None
        if self.cfg.pipeline.label_scores:
            with contextlib.suppress(InputError):
                clf = ensure_real_classifier(
                    tr.images, ty, va.images, vy, list(self.ss.classes), self.cfg.classifier, self.clf_dir
                )
        translator = registry.load_translator(ckpt)
        ia, ib = int(translator.domains["label_a"]), int(translator.domains["label_b"])
        tag = self.cfg.data.model_dump_json()
        dirs: dict[str, Any] = {}
        accepted: list[np.ndarray] = []
        for direction, src, dst in (("A2B", ia, ib), ("B2A", ib, ia)):
            if (ey == src).sum() < 2 or (ey == dst).sum() < 2:
                continue
            out = translator.translate(torch.from_numpy(ev.images[ey == src]), direction).numpy()
            p = None if clf is None else clf.predict_proba(out)
            if p is not None:
                accepted.append(p.argmax(1) == dst)
            dirs[direction] = translation_scores(
                out,
                ev.images[ey == dst],
                tr.images[ty == dst],
                self.extractor(),
                tag=f"{tag}:{self.SPLIT}:class{dst}",
                target_prob=None if p is None else p[:, dst],
                seed=self.cfg.seed,
            )
        m: dict[str, Any] = {
            "kind": translator.meta.kind,
            "directions": dirs,
            "gate_basis": "the worse direction",
        }

        def ratio(d: dict[str, Any]) -> float:
            f, fl = d.get("fid"), d.get("floor_fid")
            return math.inf if f is None or not fl else f / fl

        if dirs:
            worst = max(dirs.values(), key=ratio)
            m["fid"], m["floor_fid"] = worst.get("fid"), worst.get("floor_fid")
            for k in ("precision", "recall", "density", "coverage"):
                vals = [d[k] for d in dirs.values() if d.get(k) is not None]
                m[k] = min(vals) if vals else None
        if clf is not None and accepted:
            acc = float((clf.predict_proba(ev.images).argmax(1) == ey).mean())
            m["label_agreement"] = {"agreement": float(np.concatenate(accepted).mean()), "real_test_acc": acc}
        return m
