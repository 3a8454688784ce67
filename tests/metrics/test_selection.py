"""Checkpoint selection on the validation split: scores in stats.jsonl, the best pointer, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgan.config import SelectConfig, config_from_dict
from medgan.metrics.selection import ValidationSelector, proportional_counts
from medgan.train import train
from medgan.training.checkpoint import checkpoint_step, load_checkpoint, resolve_checkpoint, save_best
from tests.conftest import tiny_config


def test_proportional_counts() -> None:
    y = np.array([0] * 27 + [1] * 73)
    assert proportional_counts(y, 200, 2) == [54, 146]
    assert proportional_counts(y, 7, 2) == [2, 5]
    assert proportional_counts(np.array([0] * 99 + [1]), 10, 3) == [9, 1, 0]  # a rare class keeps one
    assert proportional_counts(np.array([0, 1]), 1, 2) in ([1, 0], [0, 1])  # n below the classes: no hang


def test_selector_scores_fixed_samples_in_val_proportions(pool_features: str) -> None:
    rng = np.random.default_rng(0)
    val = rng.uniform(-1, 1, size=(12, 1, 16, 16)).astype(np.float32)
    labels = np.array([0] * 3 + [1] * 9)
    sel = ValidationSelector(SelectConfig(every=5, n=20, features=pool_features), val, labels, 2)
    assert sel.labels.count(0) == 5 and sel.labels.count(1) == 15
    seen: list[tuple[list[int], list[int]]] = []

    def gen(noise: float):
        def f(lab, seeds):
            seen.append((list(lab), list(seeds)))
            return np.clip(
                val[np.arange(len(lab)) % 12] + noise * rng.normal(size=(len(lab), 1, 16, 16)), -1, 1
            )

        return f

    s1, imp1 = sel(gen(0.5), 5)
    s2, imp2 = sel(gen(0.0), 10)  # closer to the validation images: better
    s3, imp3 = sel(gen(1.0), 15)
    assert imp1 and imp2 and not imp3
    assert s2["val_fid"] < s1["val_fid"] and sel.best_step == 10 and s3["best_step"] == 10
    assert seen[0] == seen[1] == seen[2]  # the same labels and seeds every time
    st = json.loads(json.dumps(sel.state()))
    other = ValidationSelector(SelectConfig(every=5, n=20, features=pool_features), val, labels, 2)
    other.load_state(st)
    assert other.best_step == 10 and other.best_score == sel.best_score and other.history == sel.history


def _cfg(steps: int, features: str, **train: object) -> dict:
    return tiny_config(steps=steps, select={"every": 2, "n": 16, "features": features}, **train)


def test_training_keeps_the_best_checkpoint_and_resumes_its_state(
    tiny_data_dir: Path, tmp_path: Path, pool_features: str
) -> None:
    run = tmp_path / "run"
    best = train(config_from_dict(_cfg(6, pool_features)), run, tiny_data_dir)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "val_fid" in r]
    assert [r["step"] for r in scored] == [2, 4, 6]
    best_step = min(scored, key=lambda r: r["val_fid"])["step"]
    assert best.name == "best.safetensors" and checkpoint_step(best) == best_step
    assert resolve_checkpoint(run) == best  # generate / augment / study / plug-in default
    assert checkpoint_step(resolve_checkpoint(f"{run}@last")) == 6
    assert resolve_checkpoint(f"{run}@best") == best
    meta = json.loads((run / "checkpoints" / "step-0000006.json").read_text())
    assert meta["select"]["best_step"] == best_step and len(meta["select"]["history"]) == 3

    # interrupted at step 4, resumed to 6: the same scores, the same best, the same weights
    part = tmp_path / "part"
    train(config_from_dict(_cfg(4, pool_features)), part, tiny_data_dir)
    resumed = train(config_from_dict(_cfg(6, pool_features)), part, tiny_data_dir, resume=True)
    rows_b = [json.loads(x) for x in (part / "stats.jsonl").read_text().splitlines()]
    assert [r["val_fid"] for r in rows_b if "val_fid" in r] == [r["val_fid"] for r in scored]
    assert checkpoint_step(resumed) == best_step
    a, b = load_checkpoint(best)[0], load_checkpoint(resumed)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_repairs_a_best_copy_left_behind_by_a_kill(
    tiny_data_dir: Path, tmp_path: Path, pool_features: str
) -> None:
    run = tmp_path / "run"
    train(config_from_dict(_cfg(4, pool_features, keep_last=5)), run, tiny_data_dir)
    meta = json.loads((run / "checkpoints" / "step-0000004.json").read_text())
    recorded = meta["select"]["best_step"]
    # a kill between writing a checkpoint and copying it to best: best is an older (wrong) copy
    wrong = 2 if recorded == 4 else 4
    save_best(run / "checkpoints" / f"step-{wrong:07d}.safetensors")
    assert checkpoint_step(resolve_checkpoint(run)) == wrong
    train(config_from_dict(_cfg(4, pool_features, keep_last=5)), run, tiny_data_dir, resume=True)
    assert checkpoint_step(resolve_checkpoint(run)) == recorded


def test_selection_needs_validation_slices(tmp_path: Path) -> None:
    from medgan.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2"):
        ValidationSelector(SelectConfig(every=1), np.zeros((1, 1, 8, 8), np.float32), np.zeros(1), 2)
