"""safetensors bytes that depend only on the tensors and metadata."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from medgan.io.tensors import canonical_safetensors, write_safetensors

_SCRIPT = """
import hashlib, sys, torch
from medgan.io.tensors import canonical_safetensors
t = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
meta = {k: str(i) for i, k in enumerate("qwertyuiopasdfgh")}
print(hashlib.sha256(canonical_safetensors(t, meta)).hexdigest())
"""


def test_same_state_gives_same_bytes_in_any_process_and_metadata_order() -> None:
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    meta = {k: str(i) for i, k in enumerate("qwertyuiopasdfgh")}
    here = {hashlib.sha256(canonical_safetensors(tensors, meta)).hexdigest() for _ in range(5)}
    here.add(hashlib.sha256(canonical_safetensors(tensors, dict(reversed(meta.items())))).hexdigest())
    others = {
        subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(here) == 1 and others == here


def test_canonical_file_loads_with_safetensors(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 5), "z": torch.arange(4, dtype=torch.int32), "m": torch.zeros(0)}
    path = write_safetensors(tmp_path / "x.safetensors", tensors, {"format": "f", "step": "7"})
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata() == {"format": "f", "step": "7"}
    (n,) = __import__("struct").unpack("<Q", path.read_bytes()[:8])
    assert n % 8 == 0  # the header stays aligned, as the format requires
