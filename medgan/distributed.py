"""torch.distributed support for ``torchrun -m medgan train|generate|evaluate`` (see docs/distributed.md).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) nothing is
initialised and every function here is a cheap no-op: rank 0 of a world of 1, shards that
cover everything, gathers that return their input. The single-process code paths therefore
stay exactly what they were.

Under ``torchrun`` :func:`init_from_env` joins the process group (NCCL when the command runs on
CUDA, gloo otherwise) and, with NCCL, also opens a gloo group for the small CPU-side
collectives (flags, metadata, feature rows), so those never touch the GPU stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from medgan.errors import MedganError
from medgan.seeding import derive_seed

T = TypeVar("T")

_CPU_GROUP: Any = None  # gloo group for CPU collectives (the default group when it is gloo itself)


def _env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def is_initialized() -> bool:
    """Whether a process group is up (``torchrun`` with more than one process)."""
    return dist.is_available() and dist.is_initialized()


def _wants_cuda(device: str | torch.device) -> bool:
    name = str(device)
    return torch.cuda.is_available() and (name == "auto" or name.startswith("cuda"))


def init_from_env(device: str | torch.device = "auto") -> bool:
    """Join the process group ``torchrun`` describes in the environment; returns whether one is up.

    A no-op unless ``WORLD_SIZE`` > 1 (or when already initialised). The backend is ``nccl``
    when CUDA is available and ``device`` (``auto``, ``cpu``, ``cuda[:N]``) resolves to CUDA,
    else ``gloo``. With NCCL each process is bound to ``cuda:LOCAL_RANK``.
    """
    global _CPU_GROUP
    if is_initialized():
        return True
    if _env_world() <= 1 or not dist.is_available():
        return False
    if _wants_cuda(device):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
        _CPU_GROUP = dist.new_group(backend="gloo")
    else:
        dist.init_process_group(backend="gloo")
        _CPU_GROUP = dist.group.WORLD
    return True


def destroy(timeout_s: float = 60.0) -> None:
    """Leave the process group together (a no-op when none is up).

    Every rank first meets at a barrier: rank 0 hosts the rendezvous store, and when it tore its
    group down while another rank still talked to the store, that process could abort at exit
    ("terminate called without an active exception"). The barrier gives up after
    ``timeout_s`` (a rank that failed alone may never arrive).
    """
    global _CPU_GROUP
    if is_initialized():
        import contextlib
        import datetime

        # bounded: a rank that failed on its own must not leave the others waiting for ever
        with contextlib.suppress(Exception):
            dist.monitored_barrier(group=_CPU_GROUP, timeout=datetime.timedelta(seconds=timeout_s))
        dist.destroy_process_group()
    _CPU_GROUP = None


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 without a process group)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() else 0


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes run folders, manifests and metrics."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (CPU-side; a no-op without a process group)."""
    if is_initialized():
        dist.barrier(group=_CPU_GROUP)


def local_device(device: torch.device) -> torch.device:
    """``device``, except that CUDA means ``cuda:LOCAL_RANK`` under ``torchrun`` (one GPU per process)."""
    if is_initialized() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def rank_seed(seed: int) -> int:
    """A per-rank seed for a random stream: ``seed`` itself in a single process, else derived from (seed, rank)."""
    if world_size() == 1:
        return seed
    return derive_seed(seed, rank())


def shard(
    n_items: int,
    *,
    align: int = 1,
    strided: bool = False,
    rank_: int | None = None,
    world: int | None = None,
) -> range:
    """The items of ``range(n_items)`` this rank handles; the ranks' shards partition it, no padding.

    Contiguous blocks by default (concatenating the shards in rank order gives the original
    order back), cut only at multiples of ``align`` (e.g. a fixed batch size, so that every item
    is computed in the same batch as in a single process). ``strided`` gives ``rank, rank +
    world, ...`` instead (a class-sorted list still gives each rank every class).
    ``rank_`` / ``world`` default to this process's.
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if strided:
        return range(r, n_items, w)
    align = max(1, int(align))
    units = -(-n_items // align)
    lo, hi = units * r // w, units * (r + 1) // w
    return range(min(lo * align, n_items), min(hi * align, n_items))


def gather_objects(obj: T) -> list[T]:
    """Every rank's picklable ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_CPU_GROUP)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if not is_initialized():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_CPU_GROUP)
    return box[0]


def any_flags(*flags: bool) -> tuple[bool, ...]:
    """For each flag, whether it is set on any rank (one small CPU all-reduce)."""
    if not is_initialized():
        return tuple(bool(f) for f in flags)
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CPU_GROUP)
    return tuple(bool(v) for v in t.tolist())


def all_true(flag: bool) -> bool:
    """Whether ``flag`` is set on every rank."""
    return not any_flags(not flag)[0]


def mean_scalars(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value (same keys in the same order on every rank)."""
    if not is_initialized() or not values:
        return dict(values)
    t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=_CPU_GROUP)
    return dict(zip(values, (t / world_size()).tolist(), strict=True))


def gather_rows(array: np.ndarray) -> np.ndarray:
    """Concatenate every rank's rows (axis 0; row counts may differ, even be 0) in rank order, on every rank.

    Ranks send tensors padded to the largest row count plus their sizes, and the padding is
    trimmed, so any number of rows and any dtype torch knows travel without pickling. A rank
    with no rows may pass an array of any trailing shape: the others' shape and dtype are used.
    """
    array = np.asarray(array)
    if not is_initialized():
        return array
    meta = gather_objects((int(array.shape[0]) if array.ndim else 0, array.shape[1:], array.dtype.str))
    sizes = [m[0] for m in meta]
    ref = next((m for m in meta if m[0] > 0), meta[0])
    tail, dtype = tuple(ref[1]), np.dtype(ref[2])
    if any(m[0] > 0 and (tuple(m[1]) != tail or m[2] != ref[2]) for m in meta):
        raise ValueError(f"gather_rows: ranks disagree on row shape / dtype: {meta}")
    if sum(sizes) == 0:
        return np.zeros((0, *tail), dtype)
    local = array if sizes[rank()] > 0 else np.zeros((0, *tail), dtype)
    padded = np.zeros((max(sizes), *tail), dtype)
    padded[: len(local)] = local
    mine = torch.from_numpy(padded)
    parts = [torch.empty_like(mine) for _ in sizes]
    dist.all_gather(parts, mine, group=_CPU_GROUP)
    return np.concatenate([p.numpy()[:n] for p, n in zip(parts, sizes, strict=True)])


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on rank 0 only and hand its (picklable) result to every rank.

    A :class:`~medgan.errors.MedganError` raised on rank 0 is raised on every rank with the same
    one-line message, so all processes stop together instead of waiting on each other.
    """
    if not is_initialized():
        return fn(*args, **kwargs)
    result: Any = None
    failure: tuple[str, str] | None = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except MedganError as exc:
            failure, error = ("medgan", str(exc)), exc
        except Exception as exc:
            failure, error = ("internal", f"{exc.__class__.__name__}: {exc}"), exc
    result, failure = broadcast_object((result, failure))
    if error is not None:
        raise error
    if failure is not None:
        kind, msg = failure
        if kind == "medgan":
            raise MedganError(msg)
        raise RuntimeError(f"rank 0 failed: {msg}")
    return result


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` under ``torchrun``, else itself.

    Only gradients are synchronised (averaged over ranks in the backward pass). Buffers are not
    broadcast before every forward pass: they are spectral-norm vectors, a deterministic
    function of the (identical) weights, or per-rank running statistics of which rank 0's are
    saved; a broadcast per forward would add collectives to every launch-bound step.
    """
    if world_size() == 1:
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    # newer torch renames the option (and syncs buffers once at init either way: they are equal then)
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = (
        {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(module, device_ids=ids, **no_sync)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP wrapper (the module itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


def shard_rows(x: torch.Tensor | np.ndarray | Sequence[Any], *, strided: bool = True) -> Any:
    """This rank's rows of ``x`` (:func:`shard` of its length; ``x`` itself in a single process)."""
    if world_size() == 1:
        return x
    idx = shard(len(x), strided=strided)
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(list(idx), dtype=torch.long, device=x.device)]
    if isinstance(x, np.ndarray):
        return x[np.asarray(idx, dtype=np.int64)]
    return [x[i] for i in idx]
