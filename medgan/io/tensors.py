"""safetensors files whose bytes are a pure function of their tensors and metadata.

``safetensors.torch.save_file`` writes the ``__metadata__`` mapping in the order of a Rust
hash map, which changes from call to call, so the same tensors saved twice can differ in
bytes (and in SHA-256, which checkpoint manifests and synthetic UIDs derive from). This
module writes the same header with its keys sorted, so equal state gives equal bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save

from medgan.io.atomic import atomic_write_bytes


def canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors bytes of ``tensors`` (on CPU, contiguous) with the header's keys sorted.

    The data section is what ``safetensors`` writes (its tensor order is already deterministic);
    only the JSON header is rewritten (keys sorted, no spaces, padded with spaces to 8 bytes as
    the format requires), and the offsets in it are relative to the data section, so they hold.
    """
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = save(clean, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write :func:`canonical_safetensors` to ``path`` atomically (temporary name, fsync, rename)."""
    return atomic_write_bytes(path, canonical_safetensors(tensors, metadata))
