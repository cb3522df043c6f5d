"""Typed hand-offs between the training DAG's tasks: what one step gives the next.

Each record is a frozen dataclass with one XCom-safe encoding (:meth:`to_xcom`, a flat JSON object)
and one decoder (:meth:`from_xcom`, which also accepts the JSON text a templated field renders to).
The keys are the same on both backends; locations are ``s3://`` URIs on aws and absolute paths locally.
A decoding error names the record and the field.

Standard library plus the engine's :class:`~seclake_ml.ipinsights.calibration.Threshold` (imported
when a calibration record is decoded): DAG files may import this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from seclake_ml.config import BACKENDS
from seclake_ml.interval import DataInterval

if TYPE_CHECKING:
    from seclake_ml.ipinsights.calibration import Threshold


def decode_mapping(value: Any, name: str) -> dict[str, Any]:
    """``value`` as a dict: a mapping, or the JSON text a templated field renders to; errors name ``name``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: rendered text is not JSON ({exc.msg})") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _number(record: str, key: str, value: Any, *, whole: bool = False, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{record}.{key}: got {value!r}; expected a finite number")
    if whole:
        if float(value) != int(value) or value < 0:
            raise ValueError(f"{record}.{key}: got {value!r}; expected a whole number >= 0")
        return int(value)
    return float(value)


def _text(record: str, key: str, value: Any, *, optional: bool = False) -> str | None:
    if value in (None, "") and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{record}.{key}: got {value!r}; expected a non-empty string")
    return value


@dataclass(frozen=True)
class _Record:
    """Encoding shared by the records: the interval flattened to ``start``/``end``, ``details`` kept
    as JSON (values XCom cannot carry, such as datetimes, become their text)."""

    NAME: ClassVar[str] = "record"

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, DataInterval):
                out.update(value.to_xcom())
            elif f.name == "details":
                out["details"] = json.loads(json.dumps(dict(value), default=str))
            else:
                out[f.name] = value
        return out

    @classmethod
    def _decode(cls, value: Any, name: str | None) -> tuple[str, dict[str, Any]]:
        label = name or cls.NAME
        return label, decode_mapping(value, label)


@dataclass(frozen=True)
class Extraction(_Record):
    """The interval's extracted pairs: one location per ``source:view``, and how many pairs in all."""

    NAME: ClassVar[str] = "extraction"
    window: DataInterval
    pairs: dict[str, str]
    pairs_written: int
    summary_location: str | None = None

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> Extraction:
        label, d = cls._decode(value, name)
        pairs = d.get("pairs")
        if not isinstance(pairs, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                     for k, v in pairs.items()):
            raise ValueError(f"{label}.pairs: got {str(pairs)[:200]!r}; expected source:view -> location")
        return cls(
            window=DataInterval.from_xcom(d, label),
            pairs=dict(pairs),
            pairs_written=_number(label, "pairs_written", d.get("pairs_written", 0), whole=True),
            summary_location=_text(label, "summary_location", d.get("summary_location"), optional=True),
        )


@dataclass(frozen=True)
class PreparedData(_Record):
    """The interval's pairs split in time: the training set and the held-out set."""

    NAME: ClassVar[str] = "prepared data"
    window: DataInterval
    backend: str
    train_uri: str
    holdout_uri: str | None
    train_rows: int
    holdout_rows: int
    split_time: str
    profile_uri: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> PreparedData:
        label, d = cls._decode(value, name)
        return cls(
            window=DataInterval.from_xcom(d, label),
            backend=_backend(label, d.get("backend")),
            train_uri=_text(label, "train_uri", d.get("train_uri")),
            holdout_uri=_text(label, "holdout_uri", d.get("holdout_uri"), optional=True),
            train_rows=_number(label, "train_rows", d.get("train_rows", 0), whole=True),
            holdout_rows=_number(label, "holdout_rows", d.get("holdout_rows", 0), whole=True),
            split_time=_text(label, "split_time", d.get("split_time")),
            profile_uri=_text(label, "profile_uri", d.get("profile_uri"), optional=True),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class TrainedModel(_Record):
    """A trained candidate: its version (from the interval) and where its artifact is.

    ``model_uri`` is the model folder locally and the training job's ``model.tar.gz`` on aws.
    """

    NAME: ClassVar[str] = "trained model"
    window: DataInterval
    backend: str
    version: str
    model_uri: str
    hyperparameters: dict[str, Any]
    train_rows: int
    profile_uri: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> TrainedModel:
        label, d = cls._decode(value, name)
        return cls(
            window=DataInterval.from_xcom(d, label),
            backend=_backend(label, d.get("backend")),
            version=_text(label, "version", d.get("version")),
            model_uri=_text(label, "model_uri", d.get("model_uri")),
            hyperparameters=dict(d.get("hyperparameters") or {}),
            train_rows=_number(label, "train_rows", d.get("train_rows", 0), whole=True),
            profile_uri=_text(label, "profile_uri", d.get("profile_uri"), optional=True),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class Calibration(_Record):
    """The calibrated threshold of a candidate, with the sets it was chosen on and the report.

    ``threshold`` is the engine's :class:`~seclake_ml.ipinsights.calibration.Threshold` in its dict
    form; :attr:`rule` gives it back as the object scoring flags with.
    """

    NAME: ClassVar[str] = "calibration"
    window: DataInterval
    version: str
    auc: float
    threshold: dict[str, Any]
    threshold_mode: str
    normal_set: str
    abnormal_set: str
    report_uri: str | None = None
    target_fpr: float | None = None
    components: dict[str, Any] = field(default_factory=dict)
    combiner: dict[str, Any] | None = None
    score_reference: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rule(self) -> Threshold:
        from seclake_ml.ipinsights.calibration import Threshold

        return Threshold.from_dict(dict(self.threshold))

    @property
    def threshold_value(self) -> float:
        return float(self.threshold["value"])

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> Calibration:
        from seclake_ml.ipinsights.calibration import Threshold

        label, d = cls._decode(value, name)
        raw = d.get("threshold")
        if not isinstance(raw, Mapping):
            raise ValueError(f"{label}.threshold: got {raw!r}; expected the calibrated threshold as a mapping")
        try:
            rule = Threshold.from_dict(dict(raw))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}.threshold: {exc}") from None
        return cls(
            window=DataInterval.from_xcom(d, label),
            version=_text(label, "version", d.get("version")),
            auc=_number(label, "auc", d.get("auc")),
            threshold=rule.to_dict(),
            threshold_mode=_text(label, "threshold_mode", d.get("threshold_mode")),
            normal_set=_text(label, "normal_set", d.get("normal_set")),
            abnormal_set=_text(label, "abnormal_set", d.get("abnormal_set")),
            report_uri=_text(label, "report_uri", d.get("report_uri"), optional=True),
            target_fpr=_number(label, "target_fpr", d.get("target_fpr"), optional=True),
            components=dict(d.get("components") or {}),
            combiner=dict(d["combiner"]) if isinstance(d.get("combiner"), Mapping) else None,
            score_reference=dict(d["score_reference"]) if isinstance(d.get("score_reference"), Mapping) else None,
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class GateDecision(_Record):
    """Whether a candidate may become active, and why not."""

    NAME: ClassVar[str] = "gate decision"
    passed: bool
    candidate: str
    candidate_auc: float
    auc_floor: float
    tolerance: float
    reasons: list[str] = field(default_factory=list)
    active: str | None = None
    active_auc: float | None = None

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> GateDecision:
        label, d = cls._decode(value, name)
        if not isinstance(d.get("passed"), bool):
            raise ValueError(f"{label}.passed: got {d.get('passed')!r}; expected true or false")
        return cls(
            passed=d["passed"],
            candidate=_text(label, "candidate", d.get("candidate")),
            candidate_auc=_number(label, "candidate_auc", d.get("candidate_auc")),
            auc_floor=_number(label, "auc_floor", d.get("auc_floor")),
            tolerance=_number(label, "tolerance", d.get("tolerance")),
            reasons=[str(r) for r in d.get("reasons") or []],
            active=_text(label, "active", d.get("active"), optional=True),
            active_auc=_number(label, "active_auc", d.get("active_auc"), optional=True),
        )


@dataclass(frozen=True)
class Activation(_Record):
    """The outcome of a rollout: the version now active, its threshold and the one it replaced."""

    NAME: ClassVar[str] = "activation"
    backend: str
    version: str
    threshold: float
    previous_version: str | None = None
    activated: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> Activation:
        label, d = cls._decode(value, name)
        return cls(
            backend=_backend(label, d.get("backend")),
            version=_text(label, "version", d.get("version")),
            threshold=_number(label, "threshold", d.get("threshold")),
            previous_version=_text(label, "previous_version", d.get("previous_version"), optional=True),
            activated=bool(d.get("activated", True)),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class ScoringBatch(_Record):
    """A batch handed off for scoring (its manifest is in the ledger): what the scoring tasks pass on."""

    NAME: ClassVar[str] = "batch"
    batch_id: str
    origin: str | None = None
    objects: int = 0
    rejected: int = 0
    ignored: int = 0

    @classmethod
    def of_manifest(cls, manifest: Mapping[str, Any]) -> ScoringBatch:
        """The hand-off of a batch manifest (:class:`~seclake_ml.scoring.ledger.Ledger`)."""
        return cls(batch_id=str(manifest["batch_id"]), origin=manifest.get("origin"),
                   objects=len(manifest.get("objects") or []), rejected=len(manifest.get("rejected") or []),
                   ignored=len(manifest.get("ignored") or []))

    @classmethod
    def from_xcom(cls, value: Any, name: str | None = None) -> ScoringBatch:
        """The batch named by an upstream scoring task's result (extra keys, e.g. its totals, are ignored)."""
        label, d = cls._decode(value, name)
        return cls(
            batch_id=_text(label, "batch_id", d.get("batch_id")),
            origin=_text(label, "origin", d.get("origin"), optional=True),
            objects=_number(label, "objects", d.get("objects", 0), whole=True),
            rejected=_number(label, "rejected", d.get("rejected", 0), whole=True),
            ignored=_number(label, "ignored", d.get("ignored", 0), whole=True),
        )


@dataclass(frozen=True)
class Wait:
    """A step that must wait for AWS: the operator defers to ``trigger`` and resumes in ``method_name``.

    :param trigger: a serializable Airflow trigger (it runs in the triggerer, not in a worker slot).
    :param timeout_seconds: how long the deferral may last before the task fails.
    :param method_name: the operator method the trigger's event resumes.
    :param kwargs: JSON-safe values handed to ``method_name`` besides the event (what the step started).
    """

    trigger: Any
    timeout_seconds: float
    method_name: str = "execute_complete"
    kwargs: dict[str, Any] = field(default_factory=dict)


def _backend(label: str, value: Any) -> str:
    if value not in BACKENDS:
        raise ValueError(f"{label}.backend: got {value!r}; allowed: {' | '.join(BACKENDS)}")
    return value
