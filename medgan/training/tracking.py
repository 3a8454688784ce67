"""Experiment tracking: TensorBoard and MLflow records of a training run or a study, in its folder.

``train.tracking`` (and ``study.tracking``) name the trackers: ``[tensorboard]``,
``[tensorboard, mlflow]``, ``[]`` for none; unset means TensorBoard when it is installed. What
goes in:

* training: every logged step's losses, discriminator accuracies, learning rates and speed
  (``train/<key>``), every validation score of checkpoint selection (``val/<key>``), and every
  sample grid, whole (``samples``) and one image per row (``samples/<class>``; a CycleGAN's
  rows are ``A``, ``A2B``, ``A2B2A``, ``B``, ``B2A``, ``B2A2B``);
* a study: each cell's metrics (``<arm>/<metric>``, one point per seed) and, in MLflow, one
  nested run per cell with its arm, ratio, fraction and seed as parameters.

TensorBoard writes event files into ``<folder>/tensorboard`` (``tensorboard --logdir
<folder>``) with ``torch.utils.tensorboard.SummaryWriter``, the writer MONAI's
``TensorBoardStatsHandler`` uses. MLflow writes to ``$MLFLOW_TRACKING_URI`` when it is set, else
to a SQLite store in ``<folder>/mlruns`` (``mlflow ui --backend-store-uri
sqlite:///<folder>/mlruns/mlflow.db``). A resumed run continues its records: TensorBoard drops
the points after the checkpoint it resumes from, MLflow reopens the same run (its id is kept in
``<folder>/mlflow_run.json``). Only the main process (rank 0) tracks.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from medgan.errors import ConfigError, InputError
from medgan.io.atomic import atomic_write_text

#: The trackers medgan can write to, and the module each needs.
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
#: The pip extra that installs them.
EXTRA = "medgan[tracking]"


def installed(name: str) -> bool:
    """Whether the package tracker ``name`` needs is importable."""
    return importlib.util.find_spec(TRACKERS[name]) is not None


def resolve(requested: Sequence[str] | None, key: str = "train.tracking") -> list[str]:
    """The trackers to use: ``requested``, or TensorBoard when installed if None.

    A requested tracker that is not installed, or an MLflow store that cannot be used
    (:func:`check_mlflow_store`), is a one-line :class:`ConfigError`, before anything is written.
    """
    if requested is None:
        return ["tensorboard"] if installed("tensorboard") else []
    missing = [n for n in requested if not installed(n)]
    if missing:
        raise ConfigError(
            key, f"{', '.join(missing)} is not installed; pip install '{EXTRA}' (or set {key}: [])"
        )
    names = list(dict.fromkeys(requested))
    if "mlflow" in names:
        check_mlflow_store(key)
    return names


#: Seconds to wait for an MLflow server before a run refuses to start.
PROBE_TIMEOUT = 5.0
#: Schemes of MLflow stores medgan cannot probe cheaply (database servers): passed to MLflow as they are.
_DB_SCHEMES = ("postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")


def check_mlflow_store(key: str = "train.tracking") -> None:
    """Refuse an ``$MLFLOW_TRACKING_URI`` that cannot be used, before anything is written: not a
    URI MLflow takes, an HTTP server that does not answer within :data:`PROBE_TIMEOUT` s (MLflow
    itself would retry for minutes in silence), or a local store whose folder cannot be written.
    Unset, the store is the run folder's own (checked with the folder). MLflow's own HTTP retries
    are capped (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 2, timeout 20 s, unless set), so a server lost
    mid-run costs seconds, and :class:`Tracker` then goes on without it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    hint = f"unset MLFLOW_TRACKING_URI to track into the run folder, or set {key} without mlflow"
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        _check_server(uri, hint)
    elif scheme in ("file", "sqlite", ""):
        _check_local_store(uri, hint)
    elif scheme not in _DB_SCHEMES:
        raise ConfigError(
            "MLFLOW_TRACKING_URI",
            f"{uri!r}: unknown store scheme {scheme!r} (http, https, file, sqlite, ...); {hint}",
        )


def _check_server(uri: str, hint: str) -> None:
    """An MLflow server that accepts a connection and answers its REST API within the timeout."""
    env, parsed = "MLFLOW_TRACKING_URI", urlparse(uri)
    if not parsed.hostname:
        raise ConfigError(env, f"{uri!r} is not a server URL (http://host:port); {hint}")
    try:
        port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
        socket.create_connection((parsed.hostname, port), timeout=PROBE_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        raise ConfigError(env, f"cannot reach the MLflow server at {uri} ({why}); {hint}") from None
    probe = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(probe, timeout=PROBE_TIMEOUT) as r:
            r.read(1)
    except urllib.error.HTTPError as exc:
        raise ConfigError(
            env, f"{uri} answers but is not an MLflow server (HTTP {exc.code}); {hint}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(env, f"no answer from the MLflow server at {uri} ({exc}); {hint}") from None


def _check_local_store(uri: str, hint: str) -> None:
    """A ``file:`` / ``sqlite:///`` / plain-path store whose folder exists (or can be made) and is writable."""
    env, parsed = "MLFLOW_TRACKING_URI", urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or not uri[len("sqlite:///") :].strip():
            raise ConfigError(env, f"{uri!r} is not a store MLflow takes (sqlite:///path/mlflow.db); {hint}")
        folder = Path(uri[len("sqlite:///") :]).parent
    else:
        folder = Path(parsed.path if scheme == "file" else uri)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(env, f"{uri}: the store's folder {probe} cannot be written; {hint}")


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and its database migrations log INFO lines to stderr; keep them out of the user's way."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _key(name: str) -> str:
    """A metric or image name MLflow accepts (letters, digits, ``_ - . /`` and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def _uint8(grid: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in [-1, 1] as (H, W, 3) uint8."""
    arr = np.clip(np.rint((np.asarray(grid, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    arr = np.moveaxis(arr, 0, -1)
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def grid_rows(grid: np.ndarray, n_rows: int, pad: int = 2) -> list[np.ndarray]:
    """The rows of a :func:`medgan.grids.make_grid` sheet with ``n_rows`` rows (padding dropped)."""
    height = (grid.shape[1] - pad) // max(n_rows, 1) - pad
    if n_rows < 1 or height < 1:
        return []
    return [grid[:, pad + r * (height + pad) : pad + r * (height + pad) + height, :] for r in range(n_rows)]


class Tracker:
    """Scalars and images of one run (or study) sent to the configured trackers; a no-op for none."""

    def __init__(
        self,
        names: Sequence[str],
        folder: str | Path,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        start_step: int = 0,
    ) -> None:
        self.folder, self.names = Path(folder), list(names)
        self.tb: Any = None
        self.mlflow: Any = None
        self.run_id: str | None = None
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops the points a killed run wrote after its checkpoint
            self.tb = SummaryWriter(
                log_dir=str(self.folder / "tensorboard"), purge_step=start_step + 1 if start_step else None
            )
        if "mlflow" in self.names:
            self._start_mlflow(run_name, dict(params or {}))

    def _start_mlflow(self, run_name: str, params: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        store = self.folder / "mlruns"
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store.resolve()}/mlflow.db"
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            store.mkdir(parents=True, exist_ok=True)
        record = self.folder / "mlflow_run.json"
        with _quiet():
            self.mlflow = MlflowClient(tracking_uri=uri)
            if record.is_file():
                self.run_id = _recorded_run(record)
                try:
                    self.mlflow.update_run(self.run_id, status="RUNNING")
                except Exception as exc:  # MlflowException: the store does not hold the run
                    raise InputError(
                        record,
                        f"names MLflow run {self.run_id}, which the store {uri} does not hold "
                        f"({' '.join(str(exc).split())[:120]}); delete {record.name} to start a new MLflow run",
                    ) from None
                return
            exp = self.mlflow.get_experiment_by_name("medgan")
            exp_id = (
                exp.experiment_id
                if exp is not None
                else self.mlflow.create_experiment(
                    "medgan",
                    artifact_location=None
                    if os.environ.get("MLFLOW_TRACKING_URI")
                    else (store / "artifacts").resolve().as_uri(),
                )
            )
            run = self.mlflow.create_run(
                exp_id, run_name=run_name, tags={"medgan.folder": str(self.folder.resolve())}
            )
            self.run_id = run.info.run_id
            for k, v in list(params.items())[:500]:
                self.mlflow.log_param(self.run_id, k, str(v)[:6000])
        atomic_write_text(record, json.dumps({"run_id": self.run_id, "tracking_uri": uri}) + "\n")

    def _mlflow_call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Call MLflow; if the store stops answering, say so once and go on without it (the run is
        worth more than its records; TensorBoard and the run folder keep theirs)."""
        if self.mlflow is None:
            return
        try:
            with _quiet():
                fn(*args, **kwargs)
        except Exception as exc:
            print(
                f"medgan: warning: MLflow stopped accepting records ({exc.__class__.__name__}: "
                f"{' '.join(str(exc).split())[:160]}); the run goes on without it",
                file=sys.stderr,
            )
            self.mlflow = None

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Log numbers (non-finite and non-numeric ones are skipped) under ``prefix/``."""
        clean = {
            f"{prefix}/{k}" if prefix else k: float(v)
            for k, v in values.items()
            if isinstance(v, int | float | np.floating | np.integer)
            and not isinstance(v, bool)
            and np.isfinite(v)
        }
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
        if self.mlflow is not None and clean:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            metrics = [Metric(_key(k), v, ts, step) for k, v in clean.items()]
            self._mlflow_call(self.mlflow.log_batch, self.run_id, metrics=metrics)

    def grid(self, tag: str, grid: np.ndarray, step: int, row_names: Sequence[str] = ()) -> None:
        """A sample sheet (C, H, W) in [-1, 1], whole and one image per named row."""
        images = [(tag, grid)]
        if row_names:
            images += [
                (f"{tag}/{name}", row)
                for name, row in zip(row_names, grid_rows(grid, len(row_names)), strict=False)
            ]
        for name, img in images:
            rgb = _uint8(img)
            if self.tb is not None:
                self.tb.add_image(name, rgb, step, dataformats="HWC")
            if self.mlflow is not None:
                self._mlflow_call(self.mlflow.log_image, self.run_id, rgb, key=_key(name), step=step)

    def flush(self) -> None:
        """Write buffered TensorBoard events to disk."""
        if self.tb is not None:
            self.tb.flush()

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close; an MLflow run is marked ``status`` (FINISHED, KILLED or FAILED)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.mlflow is not None and self.run_id is not None:
            self._mlflow_call(self.mlflow.set_terminated, self.run_id, status=status)
            self.mlflow = None


def _recorded_run(record: Path) -> str:
    """The MLflow run id in ``mlflow_run.json``; a record that cannot be read is a one-line error."""
    try:
        rec = json.loads(record.read_text(encoding="utf-8"))
        run_id = rec["run_id"] if isinstance(rec, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError):
        run_id = None
    if not isinstance(run_id, str) or not run_id.strip():
        raise InputError(
            record, f"not a readable MLflow run record; delete {record.name} to start a new MLflow run"
        )
    return run_id


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.steps": 2000, ...}`` (lists kept whole): MLflow's params, the resume check."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v
    return out
