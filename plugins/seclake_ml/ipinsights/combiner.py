"""Combine the model's ``dot_product`` with the entity's history into one calibrated anomaly score.

:class:`ScoreCombiner` is a logistic regression over ``dot_product`` and the history features of
:mod:`seclake_ml.ipinsights.history`. Its score is the **log-odds that the pair is abnormal**:
higher = more anomalous, the same convention as ``-dot_product``, and thresholds apply to it with
the same rule (flag when ``score > threshold``). NaN ``dot_product`` (an invalid IP) gives NaN.

Why it carries to data it was not fitted on:

* it is refitted for every model, on that model's own calibration sets (later pairs of the same
  estate against injected abnormal pairs), so it weighs the model against history where the
  model is used, instead of a weighting tuned once on one data set;
* ``dot_product`` is already a log-odds (the model is trained with a logistic loss), and every
  history feature is a monotone measure of closeness to the entity's own past; each coefficient
  must carry its expected sign (more normal-looking input never raises the score), and a feature
  whose fitted sign contradicts that is dropped and the rest refitted, so the combination cannot
  learn a quirk of the injected sets (e.g. "addresses in this range are normal");
* no feature describes the entity alone (activity, age, number of IPs): normal and injected pairs
  pick their entities differently, and such a feature would learn that difference, not anomalies;
* the estate features (how many other entities used the IP's network) may only lower the score:
  the injected ``other_entity`` pairs are by construction from networks others use, and a fit that
  learned "used by others = abnormal" from them would be learning the injection, so that sign is
  refused like any other.

Stored as JSON (no pickle) with :meth:`ScoreCombiner.to_dict`; :meth:`ScoreCombiner.from_dict`
validates every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from seclake_ml.ipinsights.history import FEATURE_NAMES

__all__ = ["COMBINER_FORMAT", "EXPECTED_SIGNS", "ScoreCombiner", "fit_combiner"]

COMBINER_FORMAT = "seclake-ipinsights-combiner"
COMBINER_VERSION = 1

# Sign each coefficient must have in the anomaly log-odds (+1: the feature raises it).
EXPECTED_SIGNS: dict[str, int] = {
    "dot_product": -1,
    "prefix_bits": -1,
    "distance_bits": +1,
    "share_24": -1,
    "share_16": -1,
    "known_ip": -1,
    "estate_24": -1,
    "estate_16": -1,
}
INPUTS = ("dot_product", *FEATURE_NAMES)


@dataclass(frozen=True)
class ScoreCombiner:
    """A fitted combination: ``score = intercept + sum(coef * (x - mean) / scale)``, higher = more anomalous.

    :param features: input names (``dot_product`` and names of :data:`~.history.FEATURE_NAMES`).
    :param mean: centring per input.
    :param scale: scaling per input (positive).
    :param coef: coefficient per input.
    :param intercept: the log-odds at the mean input.
    :param fit: how it was fitted (counts, dropped features), for reports.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if n == 0:
            raise ValueError("combiner: no features")
        unknown = [f for f in self.features if f not in INPUTS]
        if unknown:
            raise ValueError(f"combiner: unknown feature(s) {unknown}; expected some of {list(INPUTS)}")
        if len(set(self.features)) != n:
            raise ValueError(f"combiner: repeated features {list(self.features)}")
        for name in ("mean", "scale", "coef"):
            values = getattr(self, name)
            if len(values) != n:
                raise ValueError(f"combiner: {len(values)} values in {name!r} for {n} features")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ValueError(f"combiner: {name!r} must hold finite numbers, got {list(values)!r}")
        if any(v <= 0 for v in self.scale):
            raise ValueError(f"combiner: 'scale' must be positive, got {list(self.scale)!r}")
        if isinstance(self.intercept, bool) or not isinstance(self.intercept, (int, float)) or not math.isfinite(self.intercept):
            raise ValueError(f"combiner: 'intercept' must be a finite number, got {self.intercept!r}")

    @property
    def uses_estate(self) -> bool:
        """Whether the score depends on how common the IP's network is across the estate."""
        return any(f.startswith("estate_") for f in self.features)

    @property
    def needs_history(self) -> bool:
        """Whether scoring needs the entity history (any input other than ``dot_product``)."""
        return any(f != "dot_product" for f in self.features)

    def decision_function(self, dot_product: np.ndarray, history: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Anomaly log-odds per pair (higher = more anomalous; NaN where ``dot_product`` is NaN).

        :param dot_product: the model's scores.
        :param history: :meth:`~.history.HistoryIndex.features` of the same pairs.
        """
        dots = np.asarray(dot_product, dtype=np.float64)
        out = np.full(dots.shape, float(self.intercept))
        for name, mu, sd, w in zip(self.features, self.mean, self.scale, self.coef):
            if name == "dot_product":
                x = dots
            else:
                if history is None or name not in history:
                    raise ValueError(f"combiner: history feature {name!r} is missing")
                x = np.asarray(history[name], dtype=np.float64)
                if x.shape != dots.shape:
                    raise ValueError(f"combiner: {name!r} has {x.size} values for {dots.size} pairs")
            out += w * (x - mu) / sd
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (format, version, arrays as lists)."""
        return {"format": COMBINER_FORMAT, "version": COMBINER_VERSION, "score": "anomaly log-odds; higher = more anomalous",
                "features": list(self.features), "mean": [float(v) for v in self.mean],
                "scale": [float(v) for v in self.scale], "coef": [float(v) for v in self.coef],
                "intercept": float(self.intercept), "fit": dict(self.fit)}

    @classmethod
    def from_dict(cls, data: Any) -> "ScoreCombiner":
        """Validate and build; raises :class:`ValueError` naming the field that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"combiner: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != COMBINER_FORMAT:
            raise ValueError(f"combiner: format {data.get('format')!r}; expected {COMBINER_FORMAT!r}")
        if data.get("version") != COMBINER_VERSION:
            raise ValueError(f"combiner: version {data.get('version')!r}; this package reads version {COMBINER_VERSION}")
        try:
            features = tuple(str(f) for f in data["features"])
            values = {k: tuple(data[k]) for k in ("mean", "scale", "coef")}
            intercept = data["intercept"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"combiner: missing or malformed field {exc}") from None
        fit = data.get("fit") if isinstance(data.get("fit"), Mapping) else {}
        return cls(features=features, intercept=intercept, fit=dict(fit), **values)


def _logistic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weighted L2-penalised logistic regression by Newton steps; returns ``(coef, intercept)``."""
    n, k = x.shape
    design = np.c_[np.ones(n), x]
    beta = np.zeros(k + 1)
    penalty = np.r_[0.0, np.full(k, l2)]
    for _ in range(iterations):
        z = np.clip(design @ beta, -35, 35)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = design.T @ (w * (p - y)) + penalty * beta
        hess = (design * (w * p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[1:], float(beta[0])


def fit_combiner(dot_product: np.ndarray, history: Mapping[str, np.ndarray], is_abnormal: np.ndarray, *,
                 features: tuple[str, ...] = INPUTS, l2: float = 1.0) -> ScoreCombiner:
    """Fit a :class:`ScoreCombiner` on labelled pairs (classes weighted equally).

    Inputs with no spread are left out; a fitted coefficient against its :data:`EXPECTED_SIGNS` sign
    drops that input and the rest is refitted. Raises :class:`ValueError` when a class is empty or
    no input is left.

    :param dot_product: the model's scores of the pairs (NaN rows are ignored).
    :param history: history features of the same pairs.
    :param is_abnormal: labels (True = injected abnormal).
    :param features: inputs to consider.
    :param l2: ridge penalty on standardised coefficients (in units of total sample weight).
    """
    y = np.asarray(is_abnormal, dtype=bool)
    cols = {"dot_product": np.asarray(dot_product, dtype=np.float64), **{k: np.asarray(v, dtype=np.float64)
                                                                          for k, v in history.items()}}
    missing = [f for f in features if f not in cols]
    if missing:
        raise ValueError(f"fit_combiner: inputs {missing} are missing")
    if not features:
        raise ValueError("fit_combiner: no inputs given")
    ok = np.all([np.isfinite(cols[f]) for f in features], axis=0)
    y = y[ok]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"fit_combiner: needs both classes; got {n_neg} normal and {n_pos} abnormal pairs")
    weights = np.where(y, 0.5 / n_pos, 0.5 / n_neg)
    use = []
    stats: dict[str, tuple[float, float]] = {}
    dropped: dict[str, str] = {}
    for f in features:
        v = cols[f][ok]
        sd = float(v.std())
        if not sd > 1e-12:
            dropped[f] = "no spread"
            continue
        use.append(f)
        stats[f] = (float(v.mean()), sd)
    while use:
        x = np.column_stack([(cols[f][ok] - stats[f][0]) / stats[f][1] for f in use])
        coef, intercept = _logistic_fit(x, y.astype(np.float64), weights, l2 / (n_pos + n_neg))
        wrong = [(abs(c), f) for c, f in zip(coef, use) if np.sign(c) == -EXPECTED_SIGNS[f] and abs(c) > 1e-9]
        if not wrong:
            return ScoreCombiner(features=tuple(use), mean=tuple(stats[f][0] for f in use),
                                 scale=tuple(stats[f][1] for f in use), coef=tuple(float(c) for c in coef),
                                 intercept=intercept, fit={"normal": n_neg, "abnormal": n_pos, "l2": l2, "dropped": dropped})
        worst = max(wrong)[1]
        dropped[worst] = "sign against expectation"
        use.remove(worst)
    raise ValueError(f"fit_combiner: no usable input left ({dropped})")
