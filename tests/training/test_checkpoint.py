"""Checkpoints: safetensors + JSON, hash-verified, pruned, never unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medgan.errors import InputError
from medgan.training.checkpoint import (
    flatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    restore_optimizer,
    save_checkpoint,
)


def test_round_trip_and_keep_last(tmp_path: Path) -> None:
    t = {"w": torch.arange(6.0).reshape(2, 3), "rng": torch.zeros(4, dtype=torch.uint8)}
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, t, {"classes": ["a", "b"]}, keep_last=2)
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["step-0000030.safetensors", "step-0000040.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in ckpts] + [p.with_suffix(".json").name for p in ckpts]
    )
    tensors, meta = load_checkpoint(tmp_path)
    assert torch.equal(tensors["w"], t["w"]) and meta["step"] == 40 and meta["classes"] == ["a", "b"]
    assert meta["sha256"] and meta["medgan_version"]
    assert resolve_checkpoint(ckpts[0].with_suffix(".json")) == ckpts[0]


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    p = save_checkpoint(tmp_path, 1, {"w": torch.ones(100)}, {})
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        load_checkpoint(p)


def test_pickle_is_refused_never_unpickled(tmp_path: Path) -> None:
    evil = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, evil)
    (tmp_path / "model.json").write_text(json.dumps({"format": "medgan-checkpoint/1", "sha256": "x"}))
    with pytest.raises(InputError, match="never unpickles"):
        load_checkpoint(evil)


def test_foreign_file_without_metadata_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(other))
    with pytest.raises(InputError, match="not a medgan checkpoint"):
        load_checkpoint(other)
    (tmp_path / "other.json").write_text(json.dumps({"format": "somebody-else"}))
    with pytest.raises(InputError, match="not a medgan checkpoint"):
        load_checkpoint(other)


def test_missing_checkpoint_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path)


def test_optimizer_state_round_trip() -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, info = flatten_optimizer("opt", opt)
    opt2 = torch.optim.Adam(net.parameters(), lr=5.0)
    restore_optimizer("opt", opt2, tensors, json.loads(json.dumps(info)))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name in a["state"][k]:
            assert torch.equal(torch.as_tensor(a["state"][k][name]), torch.as_tensor(b["state"][k][name]))


def test_a_device_file_or_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    """A checkpoint path that is a symlink to an endless device, or a FIFO, used to hang (issue 17)."""
    import os

    link = tmp_path / "step-0000001.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="not a regular file"):
        load_checkpoint(link)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_checkpoint(fifo)
