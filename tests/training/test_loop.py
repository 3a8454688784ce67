"""The shared fit loop: exact resume, refusals, Ctrl-C checkpoints, stats."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from medgan.config import config_from_dict
from medgan.errors import ConfigError, InputError
from medgan.train import train
from medgan.training.checkpoint import list_checkpoints, load_checkpoint
from medgan.training.loop import TrainingInterrupted
from tests.conftest import tiny_config


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0]


def test_resume_equals_uninterrupted_run(tiny_data_dir: Path, tmp_path: Path) -> None:
    full = train(config_from_dict(tiny_config(steps=6)), tmp_path / "a", tiny_data_dir)
    train(config_from_dict(tiny_config(steps=3, checkpoint_every=3)), tmp_path / "b", tiny_data_dir)
    resumed = train(config_from_dict(tiny_config(steps=6)), tmp_path / "b", tiny_data_dir, resume=True)
    a, b = _tensors(full), _tensors(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    # the bytes too: manifests and synthetic UIDs derive from the checkpoint's SHA-256
    assert full.read_bytes() == resumed.read_bytes()
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # no duplicate lines after resuming


def test_run_folder_contents(tiny_checkpoint: Path) -> None:
    run = tiny_checkpoint.parents[1]
    assert (run / "config.resolved.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert {"step", "loss_d", "loss_g", "d_acc_real", "d_acc_fake", "lr_g", "lr_d", "images_per_s"} <= set(
        lines[-1]
    )
    meta = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert meta["classes"] == ["0", "1"] and meta["shape"] == [1, 16, 16] and meta["step"] == 4
    assert meta["data"]["intensity"]["lo"] == 0.0 and meta["data"]["intensity"]["hi"] == 255.0


def test_existing_run_needs_resume_and_same_config(tiny_data_dir: Path, tmp_path: Path) -> None:
    train(config_from_dict(tiny_config(steps=2)), tmp_path / "r", tiny_data_dir)
    with pytest.raises(InputError, match="pass --resume"):
        train(config_from_dict(tiny_config(steps=4)), tmp_path / "r", tiny_data_dir)
    changed = tiny_config(steps=4)
    changed["train"]["lr_g"] = 1e-3
    with pytest.raises(ConfigError, match=r"cannot resume: the config changed: train\.lr_g"):
        train(config_from_dict(changed), tmp_path / "r", tiny_data_dir, resume=True)
    with pytest.raises(InputError, match="nothing to resume"):
        train(config_from_dict(tiny_config(steps=4)), tmp_path / "new", tiny_data_dir, resume=True)


def test_ctrl_c_writes_a_checkpoint(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medgan.synthesis.cgan import ConditionalGAN

    original = ConditionalGAN.train_step

    def step_then_interrupt(self: ConditionalGAN, step: int) -> dict:
        out = original(self, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(ConditionalGAN, "train_step", step_then_interrupt)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3") as ei:
        train(config_from_dict(tiny_config(steps=20, checkpoint_every=10)), tmp_path / "r", tiny_data_dir)
    assert ei.value.exit_code == 130
    assert [p.name for p in list_checkpoints(tmp_path / "r" / "checkpoints")] == ["step-0000003.safetensors"]


def test_unlabelled_data_is_refused(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    nib.save(
        nib.Nifti1Image(np.random.rand(8, 8, 4).astype(np.float32), np.eye(4)), str(tmp_path / "v.nii.gz")
    )
    cfg = config_from_dict({"data": {"source": {"kind": "nifti", "image": "v.nii.gz"}, "size": 8}})
    with pytest.raises(InputError, match="unlabelled"):
        train(cfg, tmp_path / "run", tmp_path)
