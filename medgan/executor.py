"""Where independent jobs run: in this process one after another, or as Ray tasks.

A study is a grid of independent jobs (a synthesizer per real subset, a classifier per cell).
:class:`LocalExecutor` runs each job when its result is first asked for (so a caller that saves
results as they arrive saves each one as soon as it exists); :class:`RayExecutor` submits it as a
Ray task with its CPU / GPU needs, on a local Ray started for the run or on an existing cluster
(``address: auto``, or ``$RAY_ADDRESS``). Both run the same functions with the same arguments,
so with the same thread count per job (``cpus_per_task``) they give the same numbers; what the
caller does with the results (caches, files) stays in the driver.

A leaf module: it imports nothing of medgan's but its errors.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from medgan.errors import ConfigError, MedganError

#: Executors a config may name (``study.executor``).
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Resources:
    """What one job needs: CPU cores (also its torch thread count when set) and GPUs."""

    cpus: int | None = None
    gpus: float = 0.0


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads (``None``: leave the setting as it is)."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _run(fn: Callable[..., Any], threads: int | None, *args: Any) -> Any:
    # top-level arguments, so that Ray resolves the refs among them before the job starts
    with torch_threads(threads):
        return fn(*args)


class LocalExecutor:
    """Runs every job in this process, one at a time, when its result is first asked for
    (:meth:`get`, :meth:`as_completed`: submission order there). A job given another job's handle
    among its arguments gets that job's result, as with Ray's refs."""

    name = "local"

    def put(self, value: Any) -> Any:
        """Share a large value with jobs (here: the value itself)."""
        return value

    def submit(
        self, fn: Callable[..., Any], *args: Any, resources: Resources = Resources(), name: str = ""
    ) -> Any:
        """A handle of ``fn(*args)`` (run with ``resources.cpus`` torch threads when set), run on demand."""
        return _Deferred(fn, resources.cpus, args)

    def as_completed(self, handles: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """``(handle, result)`` for every handle, each run as it is reached (here: in order)."""
        for h in handles:
            yield h, h.value

    def get(self, handle: Any) -> Any:
        """The result of one job."""
        return handle.value

    def close(self) -> None:
        """Nothing to release."""


class _Deferred:
    """A local job: runs once, the first time its ``value`` is read; its arguments are then dropped."""

    def __init__(self, fn: Callable[..., Any], threads: int | None, args: tuple[Any, ...]) -> None:
        self._job: tuple[Callable[..., Any], int | None, tuple[Any, ...]] | None = (fn, threads, args)
        self._value: Any = None

    @property
    def value(self) -> Any:
        """The job's result (running it now if it has not run)."""
        if self._job is not None:
            fn, threads, args = self._job
            args = tuple(a.value if isinstance(a, _Deferred) else a for a in args)
            self._value = _run(fn, threads, *args)
            self._job = None
        return self._value


class RayExecutor:
    """Runs jobs as Ray tasks (``pip install 'medgan[ray]'``).

    ``address``: ``None`` starts a local Ray with this machine's cores (or joins
    ``$RAY_ADDRESS`` when set), ``"auto"`` joins the cluster ``ray start`` runs on this machine,
    ``"ray://host:10001"`` a remote one. Every node needs medgan installed and the study folder
    on a file system it sees (synthesizer checkpoints and the real classifier are read from
    there). A task that dies with its worker is retried (``max_retries``); a job's own error is
    raised in the driver as itself.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("study.executor", "ray is not installed; pip install 'medgan[ray]'") from None
        self.ray = ray
        self.max_retries = max_retries
        self._started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            check_ray_address(address)
            kwargs: dict[str, Any] = {
                "address": address,
                "include_dashboard": False,
                "logging_level": logging.ERROR,
                "log_to_driver": False,
                "configure_logging": True,
            }
            if address is None:
                kwargs["num_cpus"] = os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError, grpc's own, ...
                where = address or "a local Ray"
                why = " ".join(str(exc).split())[:200] or exc.__class__.__name__
                raise ConfigError("study.ray_address", f"cannot start or join {where} ({why})") from None
            self._started = True
        self._remote = ray.remote(_run)

    def check_placement(self, resources: Resources) -> None:
        """Refuse tasks no node of the cluster can run (Ray would wait for them forever, silently)."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        cpus = max((float(r.get("CPU", 0)) for r in nodes), default=0.0)
        gpus = max((float(r.get("GPU", 0)) for r in nodes), default=0.0)
        _check_fits(resources, cpus, gpus, "node of the Ray cluster")

    def put(self, value: Any) -> Any:
        """Put a large value (the study's slices) in Ray's object store once; jobs get it zero-copy."""
        return self.ray.put(value)

    def submit(
        self, fn: Callable[..., Any], *args: Any, resources: Resources = Resources(), name: str = ""
    ) -> Any:
        """Submit ``fn(*args)`` as a task needing ``resources`` (1 CPU when unset); returns its ref.

        Arguments that are refs of other jobs make this one wait for them.
        """
        opts: dict[str, Any] = {"num_cpus": resources.cpus or 1, "max_retries": self.max_retries}
        if resources.gpus:
            opts["num_gpus"] = resources.gpus
        if name:
            opts["name"] = name
        return self._remote.options(**opts).remote(fn, resources.cpus or 1, *args)

    def _result(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, MedganError):
                raise cause from None
            raise

    def as_completed(self, handles: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """``(ref, result)`` for every ref, in the order they finish."""
        pending = list(handles)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield done[0], self._result(done[0])

    def get(self, handle: Any) -> Any:
        """The result of one task (waits for it)."""
        return self._result(handle)

    def close(self) -> None:
        """Shut down the local Ray this executor started (a joined cluster keeps running)."""
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


#: Seconds to wait for a Ray cluster's address before a study refuses to start.
PROBE_TIMEOUT = 5.0


def check_ray_address(address: str | None) -> None:
    """Refuse a Ray address that cannot be joined before anything is written (``ray.init`` would
    retry a refused connection for ever): ``auto`` / ``local`` / unset pass; ``host:port`` and
    ``ray://host:port`` must accept a TCP connection within :data:`PROBE_TIMEOUT` seconds."""
    if address is None or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "study.ray_address", f"{address!r} is not a Ray address (auto, host:port or ray://host:port)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or exc.__class__.__name__
        raise ConfigError("study.ray_address", f"cannot reach the Ray cluster at {address} ({why})") from None


def _check_fits(resources: Resources, cpus: float, gpus: float, where: str) -> None:
    if resources.cpus and resources.cpus > cpus:
        raise ConfigError(
            "study.cpus_per_task", f"asks {resources.cpus} CPUs per task; the largest {where} has {cpus:g}"
        )
    if resources.gpus and resources.gpus > gpus:
        raise ConfigError(
            "study.gpus_per_task",
            f"asks {resources.gpus:g} GPU(s) per task; the largest {where} has {gpus:g}"
            + (" (no GPU)" if not gpus else ""),
        )


def check_local_placement(resources: Resources) -> None:
    """Refuse tasks this machine cannot run (a local Ray is started with its CPUs and GPUs)."""
    gpus = 0
    if resources.gpus:
        import torch

        gpus = torch.cuda.device_count()
    _check_fits(resources, float(os.cpu_count() or 1), float(gpus), "machine (a local Ray)")


def preflight(name: str, address: str | None, resources: Resources) -> None:
    """What can be checked of an executor before a command writes anything: the Ray address and,
    for a local Ray, whether this machine can place the tasks (a cluster's placement is checked
    when it is joined, :meth:`RayExecutor.check_placement`)."""
    if name != "ray":
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_ray_address(address)
    if address is None:
        check_local_placement(resources)


def make_executor(name: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor ``name`` (``local`` or ``ray``)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ConfigError("study.executor", f"must be one of {', '.join(EXECUTORS)} (got {name!r})")
