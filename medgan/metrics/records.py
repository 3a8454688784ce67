"""Typed records of the metrics stage: what ``metrics.json`` holds (:class:`EvaluationResult`).

``medgan evaluate`` / ``medgan run`` build the record through this model, so every field has one
type and one meaning, and readers (the run, the report, the study's gates) read attributes
instead of guessing string keys. ``record`` versions the layout; a ``metrics.json`` from another
version, or one that does not fit, is a one-line error when read with :meth:`EvaluationResult.read`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from medgan.errors import InputError
from medgan.io.atomic import atomic_write_text

#: The layout of ``metrics.json`` written by this medgan.
EVALUATION_RECORD = "medgan-evaluation/1"


class EvaluationResult(BaseModel):
    """Synthetic slices scored against a real split (docs/metrics.md says what each score means).

    Declared fields are present in every record (None where a score could not be computed);
    extra fields are allowed for scores added by options (``floor_*``, ``memorization``,
    ``per_class``, ``ms_ssim_per_class``, ...), in the order they were computed.
    """

    model_config = ConfigDict(extra="allow")

    record: str = EVALUATION_RECORD
    features: str
    real: str
    synthetic: str
    n_real: int
    n_synthetic: int
    class_counts: dict[str, dict[str, int]]
    fid: float
    fid_ci: list[float]
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    precision: float | None
    recall: float | None
    density: float | None
    coverage: float | None
    floor_fid: float | None = None
    ms_ssim: float | None = None
    memorized_count: int | None = None
    label_agreement: dict[str, Any] | None = None
    cas: dict[str, Any] | None = None
    label_scores_skipped: str | None = None
    discriminator_accuracy: dict[str, Any] | None = None
    gates: dict[str, Any] | None = None

    @property
    def fid_ratio(self) -> float | None:
        """FID over the real-real floor (None without a floor)."""
        return None if not self.floor_fid else self.fid / self.floor_fid

    def as_dict(self) -> dict[str, Any]:
        """The record as ``metrics.json`` holds it (fields never set are left out)."""
        return self.model_dump(mode="json", exclude_unset=True) | {"record": self.record}

    def write(self, path: Path) -> None:
        """Write ``metrics.json`` atomically."""
        atomic_write_text(path, json.dumps(self.as_dict(), indent=2, default=float))

    @classmethod
    def read(cls, path: str | Path) -> EvaluationResult:
        """A ``metrics.json`` of this layout; another layout or a record that does not fit is a one-line error."""
        p = Path(path)
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, f"not a readable metrics.json ({exc.__class__.__name__})") from None
        if not isinstance(raw, dict) or raw.get("record", EVALUATION_RECORD) != EVALUATION_RECORD:
            raise InputError(p, f"not a {EVALUATION_RECORD} record")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            e = err.errors()[0]
            raise InputError(p, f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
