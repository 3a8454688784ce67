"""The study on Ray: every cell and per-subset synthesizer a Ray task, the same numbers as local."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medgan.config import config_from_dict
from medgan.executor import LocalExecutor, Resources, make_executor
from medgan.study import run_study
from tests.study.test_study import _study_cfg

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> object:
    """A local Ray with 2 CPUs for this module (CI's machine), shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _cfg(executor: str) -> dict:
    cfg = _study_cfg(
        arms=["real", "cgan", "cyclegan"],
        fractions=[1.0, 0.5],
        seeds=2,
        executor=executor,
        cpus_per_task=1,  # the same threads per job in both executors: the same float sums
        min_confidence=None,
    )
    cfg["study"]["levers"] = [{"name": "filtered", "arms": ["cgan"], "min_confidence": 0.3}]
    return cfg


def test_ray_gives_the_local_results_and_resumes_from_its_cell_cache(
    local_ray: object, tiny_data_dir: Path, tmp_path: Path
) -> None:
    run_study(config_from_dict(_cfg("local")), tiny_data_dir, tmp_path / "local")
    report = run_study(config_from_dict(_cfg("ray")), tiny_data_dir, tmp_path / "ray")
    a = pd.read_csv(tmp_path / "local" / "results.csv")
    b = pd.read_csv(tmp_path / "ray" / "results.csv")
    assert len(a) == (3 + 1) * 2 * 2  # (arms + lever) x fractions x seeds
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (tmp_path / "local" / "summary.csv").read_text() == (tmp_path / "ray" / "summary.csv").read_text()
    assert report["summary"]
    # a killed driver (or worker) loses only unfinished cells: the rerun recomputes just those
    cells = next((tmp_path / "ray" / "cells").iterdir())
    files = sorted(cells.glob("*.json"))
    lost = [p for p in files if p.name.startswith(("cgan-r0.5-f0.5-s1", "filtered"))]
    kept = {p: p.stat().st_mtime_ns for p in files if p not in lost}
    for p in lost:
        p.unlink()
    run_study(config_from_dict(_cfg("ray")), tiny_data_dir, tmp_path / "ray")
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert all(p.is_file() for p in lost)
    pd.testing.assert_frame_equal(a, pd.read_csv(tmp_path / "ray" / "results.csv"), check_exact=True)


def _boom(x: int) -> int:
    from medgan.errors import InputError

    raise InputError("data", f"job {x} failed")


def test_a_jobs_own_error_reaches_the_driver_as_itself(local_ray: object) -> None:
    from medgan.errors import InputError

    ex = make_executor("ray")
    with pytest.raises(InputError, match=r"^data: job 3 failed$"):
        ex.get(ex.submit(_boom, 3, resources=Resources(cpus=1)))
    ex.close()
    assert ray.is_initialized()  # joined, not started: left running


def test_local_executor_sets_threads_only_when_asked() -> None:
    import torch

    before = torch.get_num_threads()
    ex = LocalExecutor()
    assert ex.get(ex.submit(torch.get_num_threads, resources=Resources(cpus=1))) == 1
    assert ex.get(ex.submit(torch.get_num_threads)) == before == torch.get_num_threads()


def test_medgan_errors_survive_pickling() -> None:
    import pickle

    from medgan.errors import ConfigError, InputError, MedganError

    for err in (InputError("a.dcm", "bad"), ConfigError("study.seeds", "must be >= 1"), MedganError("x: y")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
    assert pickle.loads(pickle.dumps(InputError("a.dcm", "bad"))).path == "a.dcm"


def test_a_cluster_that_cannot_be_joined_or_cannot_place_the_tasks_is_refused_up_front(
    local_ray: object, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An address that refuses connections (Ray would retry for ever), one that is not an address,
    a task asking more CPUs than any node has or a GPU where there is none (Ray would wait for
    ever, silently): one line naming the setting, exit 2, and no study folder."""
    import socket

    import yaml

    from medgan.cli import main
    from medgan.errors import ConfigError
    from medgan.executor import check_local_placement, check_ray_address

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConfigError, match=r"study\.ray_address: cannot reach the Ray cluster at 127\.0\.0\.1:\d+"
    ):
        check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=r"is not a Ray address"):
        check_ray_address("ray://nowhere")
    with pytest.raises(ConfigError, match=r"study\.cpus_per_task: asks 4096 CPUs per task"):
        check_local_placement(Resources(cpus=4096))
    ex = make_executor("ray")  # joins the module's local Ray (2 CPUs, no GPU)
    with pytest.raises(
        ConfigError, match=r"study\.cpus_per_task: asks 3 CPUs per task; the largest node .* has 2"
    ):
        ex.check_placement(Resources(cpus=3))
    with pytest.raises(
        ConfigError, match=r"study\.gpus_per_task: asks 1 GPU\(s\) per task; .* has 0 \(no GPU\)"
    ):
        ex.check_placement(Resources(cpus=1, gpus=1.0))
    ex.check_placement(Resources(cpus=2))

    def refused(study: dict, says: str) -> None:
        """``medgan study`` with these study settings: exit 2, one line saying ``says``, no folder."""
        cfg = _study_cfg(arms=["real"], fractions=[1.0], seeds=1, executor="ray", **study)
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        out = tmp_path / "study"
        args = ["study", str(tmp_path / "c.yaml"), "--out", str(out), "--data-dir", str(tiny_data_dir)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and not out.exists(), err

    refused({"cpus_per_task": 3}, "study.cpus_per_task")
    refused({"gpus_per_task": 1.0}, "study.gpus_per_task")
    ray.shutdown()  # a driver that has not joined yet: the address is probed before ray.init
    try:
        refused({"ray_address": f"127.0.0.1:{port}"}, "cannot reach the Ray cluster")
    finally:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
