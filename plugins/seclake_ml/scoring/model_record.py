"""The model a scoring run uses: version, calibrated threshold rule, where it is served, and how it
is explained. One record for the active model, the model pinned in a batch and the model findings name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from seclake_ml.config import BACKENDS
from seclake_ml.ipinsights.calibration import Threshold


@dataclass
class ActiveModel:
    """The model a batch is scored with: the active record as scoring reads it, pinned in the batch
    manifest, and the model that findings name.

    :param version: model version (also the findings' ``finding_info.analytic.uid``).
    :param threshold: the calibrated threshold; scores above it are flagged.
    :param backend: ``local`` (a model folder) or ``aws`` (an endpoint).
    :param severity_scale: score distance past the threshold per severity band unit.
    :param endpoint_name: the SageMaker endpoint of an ``aws`` model.
    """

    version: str
    threshold: float
    backend: str
    model_dir: str | None = None
    endpoint_name: str | None = None
    profile_uri: str | None = None
    severity_scale: float = 1.0
    endpoint_config_name: str | None = None  # aws: the endpoint config the rollout put this model in
    combiner: dict[str, Any] | None = None  # the score combiner the threshold was calibrated with (None: -dot_product)
    threshold_rule: dict[str, Any] | None = None  # the calibration's Threshold (method, target FPR, metrics)
    score_reference: dict[str, Any] | None = None  # deciles of the known-normal calibration scores (drift)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"model backend must be one of {', '.join(repr(b) for b in BACKENDS)}; "
                             f"got {repr(self.backend)[:60]}")
        if not isinstance(self.version, str) or not self.version:
            raise ValueError(f"model version must be a non-empty string, got {repr(self.version)[:60]}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def decision(self) -> Threshold:
        """The calibrated :class:`~seclake_ml.ipinsights.calibration.Threshold` this model flags with.

        Its value is always :attr:`threshold` (the validated number of the record); the rest of the
        rule (method, target FPR, the metrics it was chosen with) comes from the calibration when the
        record carries it.
        """
        rule = dict(self.threshold_rule or {})
        rule["value"] = float(self.threshold)
        try:
            return Threshold.from_dict(rule)
        except (TypeError, ValueError):
            return Threshold(value=float(self.threshold))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActiveModel":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
