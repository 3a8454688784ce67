"""torch.distributed on CPU (gloo, 2 processes): train, generate and evaluate agree with one process.

The ``torchrun`` tests launch ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m
medgan ...`` in a subprocess, as a user would; the in-process checks of DDP, sharding, gathering and
resume run in two processes started by :func:`torch.multiprocessing.spawn`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medgan import distributed
from medgan.cli import main
from tests.conftest import TINY_DIFFUSION, tiny_config, write_fake_medmnist

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def _files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (hidden ones included) but ``generate.json`` (it holds the creation time)."""
    found = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    found.pop("generate.json")
    return found


def _torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m medgan ARGS`` on CPU (gloo); fails the test on a non-zero exit."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}"]
    proc = subprocess.run(
        [*cmd, "-m", "medgan", *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


class _one_thread:
    """Run the single-process reference with one thread, as torchrun runs each rank (OMP_NUM_THREADS=1)."""

    def __enter__(self) -> None:
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.n)


# ------------------------------------------------------------------ single process: everything is a no-op


def test_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env("cpu") is False and not distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(10) == range(10) and distributed.rank_seed(5) == 5
    x = np.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(x) is x and distributed.gather_objects(1) == [1]
    assert distributed.any_flags(True, False) == (True, False) and distributed.all_true(True)
    assert distributed.mean_scalars({"a": 2.0}) == {"a": 2.0}
    assert distributed.on_main(lambda v: v + 1, 1) == 2
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap_ddp(net, torch.device("cpu")) is net and distributed.unwrap(net) is net
    t = torch.arange(4)
    assert distributed.shard_rows(t) is t
    distributed.barrier()
    distributed.destroy()


@pytest.mark.parametrize("align", [1, 3])
def test_shards_partition_in_order_without_padding(align: int) -> None:
    for n in range(0, 23):
        for world in (1, 2, 3, 4):
            parts = [distributed.shard(n, align=align, rank_=r, world=world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))  # contiguous, ordered, no duplicates
            assert all(p.start % align == 0 for p in parts if len(p))  # cut at multiples of align
            strided = [distributed.shard(n, strided=True, rank_=r, world=world) for r in range(world)]
            assert sorted(i for p in strided for i in p) == list(range(n))
            assert max(map(len, strided)) - min(map(len, strided)) <= 1


def test_other_commands_are_refused_under_torchrun(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--debug", "study", "x.yaml"]) == 2
    assert "does not run under torchrun" in capsys.readouterr().err


def test_python_m_medgan_returns_the_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "medgan", "generate", "--checkpoint", str(tmp_path / "none"), "--out", "o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "medgan: error:" in proc.stderr  # torchrun sees a failed rank


# ------------------------------------------------------------------ two processes, in process (DDP, gather, resume)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_primitives() -> None:
    from medgan.errors import InputError, MedganError

    r = distributed.rank()
    assert distributed.world_size() == WORLD and distributed.is_main() == (r == 0)
    # rows of any count (0 too; that rank's trailing shape does not matter), back in rank order
    rows = distributed.gather_rows(np.arange(6.0).reshape(3, 2) if r == 0 else np.zeros(0))
    assert np.array_equal(rows, np.arange(6.0).reshape(3, 2))
    rows = distributed.gather_rows(np.full((r + 1, 2, 2), r, np.int64))
    assert rows.shape == (3, 2, 2) and rows.dtype == np.int64 and rows[:, 0, 0].tolist() == [0, 1, 1]
    assert distributed.gather_objects(r) == [0, 1]
    assert distributed.any_flags(r == 1, False) == (True, False) and distributed.all_true(r == 0) is False
    assert distributed.mean_scalars({"a": float(r), "b": 1.0}) == {"a": 0.5, "b": 1.0}
    seeds = distributed.gather_objects(distributed.rank_seed(7))
    assert seeds[0] != seeds[1]
    assert distributed.on_main(distributed.rank) == 0

    def broken() -> None:
        raise InputError("x", "broken")

    with pytest.raises(MedganError, match="x: broken"):  # on every rank, not only rank 0
        distributed.on_main(broken)


def _assert_in_sync(tensors: dict[str, torch.Tensor], local_loss: float) -> None:
    """Networks and optimizers equal on every rank; random streams and losses (own data) differ."""
    from medgan.training.loop import PER_RANK_PREFIXES

    assert not any(".module." in k or k.startswith("module.") for k in tensors)  # same names as one process
    shared = {k: v for k, v in tensors.items() if not k.startswith(PER_RANK_PREFIXES)}
    every = distributed.gather_objects(shared)
    assert [k for k in shared if not torch.equal(every[0][k], every[1][k])] == []
    streams = distributed.gather_objects(tensors["rng.train"])
    assert not torch.equal(streams[0], streams[1])
    losses = distributed.gather_objects(local_loss)
    assert math.isfinite(losses[0]) and losses[0] != losses[1]


def _check_ddp_cgan() -> None:
    from medgan.config import config_from_dict
    from medgan.synthesis.cgan import ConditionalGAN
    from medgan.training.loop import scalars

    cfg = config_from_dict(tiny_config(loss="wgan-gp"))  # the gradient penalty: double backward through DDP
    task = ConditionalGAN(cfg.model, cfg.train, 2, (1, 16, 16), torch.device("cpu"), 0)
    gen = torch.Generator().manual_seed(0)
    task.attach_data(torch.rand((20, 1, 16, 16), generator=gen) * 2 - 1, torch.arange(20) % 2, 0)
    assert task.sampler is not None and len(task.sampler.images) == 10  # its own half of the images
    for step in range(2):
        stats = scalars(task.train_step(step))
    _assert_in_sync(task.state_tensors()[0], stats["loss_d"])


def _check_ddp_cyclegan() -> None:
    from medgan.config import CycleGANConfig, TrainConfig
    from medgan.synthesis.cyclegan import CycleGAN
    from medgan.training.loop import scalars

    mc = CycleGANConfig(kind="cyclegan", g_channels=8, n_res_blocks=1, d_channels=8, pool_size=2, d_scales=2)
    task = CycleGAN(mc, TrainConfig(batch_size=2), (1, 32, 32), torch.device("cpu"), 0)
    gen = torch.Generator().manual_seed(1)
    task.attach_data(torch.rand((6, 1, 32, 32), generator=gen), torch.rand((5, 1, 32, 32), generator=gen), 0)
    for step in range(2):
        stats = scalars(task.train_step(step))
    _assert_in_sync(task.state_tensors()[0], stats["loss_d"])


def _check_ddp_diffusion() -> None:
    from medgan.config import config_from_dict
    from medgan.synthesis.diffusion import DiffusionTask
    from medgan.training.loop import scalars

    cfg = config_from_dict({**tiny_config(batch_size=4), "model": dict(TINY_DIFFUSION)})
    task = DiffusionTask(cfg.model, cfg.train, 2, (1, 16, 16), torch.device("cpu"), 0)
    gen = torch.Generator().manual_seed(2)
    task.attach_data(torch.rand((20, 1, 16, 16), generator=gen) * 2 - 1, torch.arange(20) % 2, 0)
    assert task.sampler is not None and len(task.sampler.images) == 10  # its own half of the images
    for step in range(2):
        stats = scalars(task.train_step(step))
    _assert_in_sync(task.state_tensors()[0], stats["loss"])


def _check_resume(tmp: Path, data_dir: Path) -> None:
    """With 2 processes, 2 steps + ``--resume`` to 4 give the same checkpoint as 4 steps (every rank's streams)."""
    from medgan.config import config_from_dict
    from medgan.train import train
    from medgan.training.checkpoint import load_checkpoint

    cycle = {"kind": "cyclegan", "g_channels": 8, "n_res_blocks": 1, "d_channels": 8, "pool_size": 2}
    for name, model in (("cgan", None), ("cyclegan", cycle), ("diffusion", TINY_DIFFUSION)):

        def cfg(steps: int, model: dict | None = model) -> object:
            d = tiny_config(steps=steps, batch_size=4)
            if model is not None:
                d["model"] = dict(model)
            return config_from_dict(d)

        full = train(cfg(4), tmp / f"{name}-full", data_dir)
        train(cfg(2), tmp / f"{name}-resumed", data_dir)
        resumed = train(cfg(4), tmp / f"{name}-resumed", data_dir, resume=True)
        if distributed.is_main():
            (a, meta), (b, _) = load_checkpoint(full), load_checkpoint(resumed)
            assert meta["world_size"] == WORLD and any(k.startswith("rank1.rng.") for k in a)
            assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
            steps = [json.loads(x)["step"] for x in (tmp / f"{name}-resumed" / "stats.jsonl").open()]
            assert steps == [1, 2, 3, 4]  # rank 0 alone wrote the stats, no duplicates
        distributed.barrier()


def _check_generate(tmp: Path, checkpoint: str, diffusion: str) -> None:
    import medgan.generate as gen_mod

    gen_mod.NPZ_SHARD = 4  # 10 images -> 3 shards: rank 0 writes one, rank 1 two
    gen_mod.generate(checkpoint, tmp / "npz", 5, fmt="npz", seed=3, device="cpu")
    gen_mod.generate(checkpoint, tmp / "nifti", 5, fmt="nifti", seed=3, batch_size=3, device="cpu")
    gen_mod.generate(diffusion, tmp / "dnpz", 5, fmt="npz", seed=3, device="cpu")


def _worker(rank: int, port: int, tmp: str, data_dir: str, checkpoint: str, diffusion: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MEDGAN_CACHE_DIR=str(Path(tmp) / "cache"),
    )
    torch.set_num_threads(1)
    assert distributed.init_from_env("cpu")
    try:
        _check_primitives()
        _check_ddp_cgan()
        _check_ddp_cyclegan()
        _check_ddp_diffusion()
        _check_resume(Path(tmp), Path(data_dir))
        _check_generate(Path(tmp), checkpoint, diffusion)
    finally:
        distributed.destroy()


@pytest.mark.slow
def test_two_processes_ddp_gather_resume_and_sharded_generation(
    tiny_data_dir: Path,
    tiny_checkpoint: Path,
    tiny_diffusion_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch.multiprocessing as mp

    import medgan.generate as gen_mod

    mp.spawn(
        _worker,
        args=(
            _free_port(),
            str(tmp_path),
            str(tiny_data_dir),
            str(tiny_checkpoint),
            str(tiny_diffusion_checkpoint),
        ),
        nprocs=WORLD,
        join=True,
    )
    # the sharded generations are the same files, byte for byte, as one process's
    monkeypatch.setattr(gen_mod, "NPZ_SHARD", 4)
    with _one_thread():
        gen_mod.generate(tiny_checkpoint, tmp_path / "npz1", 5, fmt="npz", seed=3, device="cpu")
        gen_mod.generate(
            tiny_checkpoint, tmp_path / "nifti1", 5, fmt="nifti", seed=3, batch_size=3, device="cpu"
        )
        gen_mod.generate(tiny_diffusion_checkpoint, tmp_path / "dnpz1", 5, fmt="npz", seed=3, device="cpu")
    npz = _files(tmp_path / "npz")
    assert len([f for f in npz if f.startswith("shards/")]) == 3
    assert npz == _files(tmp_path / "npz1")
    assert _files(tmp_path / "dnpz") == _files(tmp_path / "dnpz1")  # the diffusion model's shards too
    assert _files(tmp_path / "nifti") == _files(tmp_path / "nifti1")


# ------------------------------------------------------------------ torchrun -m medgan (subprocesses)


@pytest.fixture(scope="module")
def torchrun_run(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``torchrun --nproc_per_node=2 -m medgan train`` for 4 steps (checkpoints at 2 and 4)."""
    tmp = tmp_path_factory.mktemp("ddp-train")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=4)))
    run = tmp / "run"
    proc = _torchrun(
        "train", str(config), "--out", str(run), "--data-dir", str(tiny_data_dir), "--set", "train.device=cpu"
    )
    return run, proc.stdout


@pytest.mark.slow
def test_torchrun_train_writes_the_run_folder_once(torchrun_run: tuple[Path, str], tmp_path: Path) -> None:
    from medgan.synthesis.cgan import CGANSynthesizer
    from medgan.training.checkpoint import list_checkpoints, load_checkpoint

    run, stdout = torchrun_run
    assert stdout.count("trained 4 steps") == 1  # only rank 0 reports
    ckpts = list_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["step-0000002.safetensors", "step-0000004.safetensors"]
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.resolved.yaml",
        "provenance.json",  # written once, by rank 0
        "samples",
        "stats.jsonl",
        "tensorboard",  # the default tracker when installed: rank 0 alone writes events
    ]
    assert len(list((run / "tensorboard").iterdir())) == 1
    assert "earlier" not in json.loads((run / "provenance.json").read_text())
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]  # one line per step: rank 0 alone writes
    assert all(math.isfinite(x[k]) for x in lines for k in ("loss_d", "loss_g"))
    tensors, meta = load_checkpoint(ckpts[-1])
    assert meta["world_size"] == WORLD and meta["step"] == 4
    assert not any(k.startswith("module.") or ".module." in k for k in tensors)
    imgs = CGANSynthesizer(ckpts[-1]).generate(
        [0, 1], [1, 2]
    )  # the same format as a single-process checkpoint
    assert imgs.shape == (2, 1, 16, 16) and torch.isfinite(imgs).all()


@pytest.mark.slow
def test_resume_with_another_process_count_is_refused(
    torchrun_run: tuple[Path, str], tiny_data_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from medgan.config import config_from_dict
    from medgan.errors import ConfigError
    from medgan.train import train

    run = tmp_path / "run"
    shutil.copytree(torchrun_run[0], run)
    with pytest.raises(ConfigError, match="written by 2 process"):
        train(config_from_dict(tiny_config(steps=6)), run, tiny_data_dir, resume=True)


@pytest.mark.slow
def test_torchrun_generate_gives_the_single_process_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from medgan.generate import generate

    args = ["--checkpoint", str(tiny_checkpoint), "--n-per-class", "7", "--batch-size", "3", "--seed", "4"]
    proc = _torchrun("generate", *args, "--out", str(tmp_path / "two"), "--device", "cpu")
    assert proc.stdout.count("wrote 14 png images") == 1
    with _one_thread():
        generate(tiny_checkpoint, tmp_path / "one", 7, batch_size=3, seed=4, device="cpu")
    two = _files(tmp_path / "two")
    assert len(two) == 15 and two == _files(
        tmp_path / "one"
    )  # 14 PNGs + manifest.csv, no shard manifests left


@pytest.mark.slow
def test_torchrun_evaluate_gives_the_single_process_fid(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from medgan.generate import generate
    from medgan.metrics.evaluate import evaluate
    from medgan.metrics.features import TorchScriptExtractor

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    features = tmp_path / "pool.pt"
    torch.jit.script(Pool()).save(str(features))
    data = tmp_path / "data"
    write_fake_medmnist(
        data / "medmnist" / "bigmnist.npz", n_train=160
    )  # > 64 (the batch): both ranks extract
    generate(tiny_checkpoint, tmp_path / "gen", 40, fmt="npz")
    real = "medmnist:bigmnist:all"
    args = ["--real", real, "--synthetic", str(tmp_path / "gen"), "--features", str(features)]
    cache = tmp_path / "cache-two"
    proc = _torchrun(
        "evaluate",
        *args,
        *(
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "ev"),
            "--json",
            "--n-boot",
            "20",
            "--device",
            "cpu",
        ),
        env={"MEDGAN_CACHE_DIR": str(cache)},
    )
    two = json.loads(proc.stdout)  # one JSON document: only rank 0 prints
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["fid"] == two["fid"] and two["n_real"] == 176 and two["n_synthetic"] == 80
    assert len(list((cache / "features").glob("*.npz"))) == 2  # real and train features, written by rank 0
    with _one_thread():
        one = evaluate(
            real,
            str(tmp_path / "gen"),
            TorchScriptExtractor(features),
            data,
            n_boot=20,
            cache=tmp_path / "c1",
        )
    assert abs(one["fid"] - two["fid"]) <= 1e-6
    assert one["floor_fid"] == pytest.approx(two["floor_fid"], abs=1e-6)
    assert one["fid_ci"] == pytest.approx(two["fid_ci"], abs=1e-6)
