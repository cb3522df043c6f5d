"""IP Insights hyperparameters: SageMaker's names, defaults and valid ranges.

Values may be given as numbers or as strings (``"128"``, ``"1e-5"``), the way SageMaker training
jobs receive them. Every invalid value raises :class:`ValueError` naming the parameter and its range.

Defaults follow the SageMaker developer guide. Two parameters are *required* by SageMaker and have
no documented default; here they take the built-in container's defaults (``num_entity_vectors``
100000, ``vector_dim`` 128). The guide lists ``mini_batch_size`` 10000 while the container log shows
5000; the guide's value is used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

__all__ = ["IPInsightsHyperparameters", "HYPERPARAMETER_RANGES"]

_INF = math.inf

# name: (type, low, high): inclusive bounds.
HYPERPARAMETER_RANGES: dict[str, tuple[type, float, float]] = {
    "num_entity_vectors": (int, 1, 250_000_000),
    "vector_dim": (int, 4, 4096),
    "batch_metrics_publish_interval": (int, 1, _INF),
    "epochs": (int, 1, _INF),
    "learning_rate": (float, 1e-6, 10.0),
    "mini_batch_size": (int, 1, 500_000),
    "num_ip_encoder_layers": (int, 0, 100),
    "random_negative_sampling_rate": (int, 0, 500),
    "shuffled_negative_sampling_rate": (int, 0, 500),
    "weight_decay": (float, 0.0, 10.0),
}


def _range_text(name: str) -> str:
    kind, low, high = HYPERPARAMETER_RANGES[name]
    what = "an integer" if kind is int else "a number"
    hi = "inf)" if high == _INF else f"{high:g}]"
    return f"{what} in [{low:g}, {hi}"


def _coerce(name: str, value: Any) -> int | float:
    kind, low, high = HYPERPARAMETER_RANGES[name]
    bad = ValueError(f"{name}: expected {_range_text(name)}, got {value!r}")
    if isinstance(value, bool) or value is None:
        raise bad
    if isinstance(value, str):
        text = value.strip()
        try:
            number: int | float = int(text) if kind is int else float(text)
        except ValueError:
            raise bad from None
    elif kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            number = int(value)
        else:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise bad from None
            if number != value:
                raise bad
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
    if isinstance(number, float) and not math.isfinite(number):
        raise bad
    if not low <= number <= high:
        raise bad
    return number


@dataclass(frozen=True)
class IPInsightsHyperparameters:
    """SageMaker IP Insights hyperparameters (validated and coerced on construction).

    :param num_entity_vectors: rows of the entity hash table, 1-250,000,000; SageMaker recommends
        twice the number of distinct entities.
    :param vector_dim: embedding width of entities and IPs, 4-4096 (recommended 128).
    :param epochs: passes over the training data, >= 1.
    :param learning_rate: Adam step size, 1e-6 to 10.
    :param mini_batch_size: real (positive) pairs per step, 1-500,000; negatives come on top.
    :param num_ip_encoder_layers: fully connected layers after the IP prefix embeddings, 0-100.
    :param random_negative_sampling_rate: R, random IPv4 negatives per real pair, 0-500.
    :param shuffled_negative_sampling_rate: S, in-batch shuffled negatives per real pair, 0-500;
        1 <= R + S <= 500.
    :param weight_decay: L2 factor, 0-10.
    :param batch_metrics_publish_interval: log training speed every this many mini-batches, >= 1.
    """

    num_entity_vectors: int = 100_000
    vector_dim: int = 128
    epochs: int = 10
    learning_rate: float = 0.001
    mini_batch_size: int = 10_000
    num_ip_encoder_layers: int = 1
    random_negative_sampling_rate: int = 1
    shuffled_negative_sampling_rate: int = 1
    weight_decay: float = 0.00001
    batch_metrics_publish_interval: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        total = self.random_negative_sampling_rate + self.shuffled_negative_sampling_rate
        if not 1 <= total <= 500:
            raise ValueError(
                "random_negative_sampling_rate + shuffled_negative_sampling_rate: expected a sum in [1, 500], "
                f"got {self.random_negative_sampling_rate} + {self.shuffled_negative_sampling_rate} = {total}"
            )

    @property
    def negatives_per_pair(self) -> int:
        return self.random_negative_sampling_rate + self.shuffled_negative_sampling_rate

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> "IPInsightsHyperparameters":
        """Build from a mapping such as a SageMaker ``HyperParameters`` dict (string values are fine).

        Unknown names raise :class:`ValueError` listing the accepted names.
        """
        merged = {**(values or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; expected some of {sorted(known)}")
        return cls(**merged)

    def replace(self, **changes: Any) -> "IPInsightsHyperparameters":
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def to_sagemaker(self) -> dict[str, str]:
        """The values as strings, ready for a SageMaker training job's ``HyperParameters``."""
        return {k: (repr(v) if isinstance(v, float) else str(v)) for k, v in self.to_dict().items()}
