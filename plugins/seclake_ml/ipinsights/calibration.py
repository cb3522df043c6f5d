"""Threshold calibration: known-normal and injected-abnormal pairs, ROC AUC, and a threshold object.

Scores here are **anomaly scores**: ``-dot_product``, higher = more anomalous. A pair is flagged
when its anomaly score is strictly greater than the threshold (the tutorial's rule
``dot_product < -threshold``; threshold 0 flags every negative ``dot_product``).

Sets, following the SageMaker tutorial's method:

* **known normal**: later-in-time pairs whose entity was seen in training
  (:func:`known_normal_pairs`);
* **injected abnormal**, each row labelled with its ``kind``:

  ``random_public``   a training entity with a uniformly random public IPv4 (reserved blocks excluded);
  ``unused_private``  a training entity with an address from an RFC 1918 /24 that appears nowhere in
                      the training data (lateral movement to a subnet nobody used);
  ``other_entity``    a training entity with an IP another entity used in training, from a /24 the
                      entity itself never used.

:func:`calibrate_combined` calibrates the score deployed with a combiner instead: the log-odds of
:class:`~seclake_ml.ipinsights.combiner.ScoreCombiner` (``dot_product`` with the entity's history),
higher = more anomalous as well, fitted on one half of the sets and measured on the other.

The threshold is a separate object (:class:`Threshold`) chosen for a target false-positive rate or
for the best F1; :class:`AnomalyDetector` combines a scorer and a threshold. Entities unknown to the
model and invalid IPs are left out of calibration (and counted), since their scores are not
comparable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seclake_ml.ipinsights.ipv4 import PRIVATE_NETWORKS, format_ipv4, network_bounds, parse_ipv4, random_public_ipv4
from seclake_ml.ipinsights.metrics import roc_auc, roc_curve

__all__ = [
    "ABNORMAL_KINDS",
    "AnomalyDetector",
    "CalibrationResult",
    "Threshold",
    "build_calibration_sets",
    "calibrate",
    "calibrate_combined",
    "combined_auc",
    "inject_other_entity_ips",
    "inject_random_public",
    "inject_unused_private",
    "known_normal_pairs",
    "metrics_at",
    "threshold_best_f1",
    "threshold_for_fpr",
]

ABNORMAL_KINDS = ("random_public", "unused_private", "other_entity")


# ---------------------------------------------------------------------------------------------- sets
def _frame(entities: Any, ips: Any, kind: str | None = None) -> Any:
    import pandas as pd

    data = {"entity": np.asarray(entities, dtype=object), "ip": np.asarray(ips, dtype=object)}
    if kind is not None:
        data["kind"] = np.full(len(data["entity"]), kind, dtype=object)
    return pd.DataFrame(data)


def known_normal_pairs(train: Any, later: Any, n: int | None = None, seed: int = 0) -> Any:
    """Pairs from ``later`` whose entity occurs in ``train`` (and, when both carry ``event_time``,
    that happened after the last training event). Optionally a random sample of ``n`` of them.

    :param train: training pairs DataFrame (``entity``, ``ip``, optional ``event_time``).
    :param later: later pairs DataFrame with the same columns.
    """
    known = set(train["entity"].unique().tolist())
    mask = later["entity"].isin(known).to_numpy()
    if "event_time" in later.columns and "event_time" in train.columns and len(train):
        mask = mask & (later["event_time"] > train["event_time"].max()).to_numpy()
    out = later.loc[mask, [c for c in ("entity", "ip", "event_time") if c in later.columns]].reset_index(drop=True)
    if n is not None and len(out) > n:
        idx = np.sort(np.random.default_rng(seed).choice(len(out), n, replace=False))
        out = out.iloc[idx].reset_index(drop=True)
    return out


def _train_entities(train: Any) -> np.ndarray:
    return np.asarray(train["entity"].unique(), dtype=object)


def inject_random_public(train: Any, n: int, seed: int = 0) -> Any:
    """``n`` pairs: a random training entity with a uniformly random public IPv4 address."""
    rng = np.random.default_rng([seed, 101])
    ents = _train_entities(train)
    return _frame(ents[rng.integers(0, ents.size, n)], format_ipv4(random_public_ipv4(rng, n)), "random_public")


def _training_addresses(train: Any) -> np.ndarray:
    addr, ok = parse_ipv4(np.asarray(train["ip"], dtype=object))
    return addr[ok]


def inject_unused_private(train: Any, n: int, seed: int = 0) -> Any:
    """``n`` pairs: a random training entity with an address from an RFC 1918 /24 unused in training."""
    rng = np.random.default_rng([seed, 102])
    ents = _train_entities(train)
    used = np.unique(_training_addresses(train) >> np.uint32(8))
    bounds = network_bounds(PRIVATE_NETWORKS)
    out = np.empty(0, np.uint32)
    for _ in range(100):
        if out.size >= n:
            break
        k = max(64, 2 * (n - out.size))
        block = rng.integers(0, len(bounds), k)
        first, last = bounds[block, 0], bounds[block, 1]
        cand = (first + (rng.random(k) * (last - first + 1)).astype(np.uint64)).astype(np.uint32)
        fresh = ~np.isin(cand >> np.uint32(8), used)
        out = np.concatenate([out, cand[fresh]])
    if out.size < n:
        raise ValueError("inject_unused_private: the training data uses nearly every private /24; cannot inject")
    return _frame(ents[rng.integers(0, ents.size, n)], format_ipv4(out[:n]), "unused_private")


def inject_other_entity_ips(train: Any, n: int, seed: int = 0) -> Any:
    """``n`` pairs: a training entity with another entity's training IP from a /24 it never used itself.

    Raises :class:`ValueError` when the training data has fewer than two entities.
    """
    import pandas as pd

    rng = np.random.default_rng([seed, 103])
    codes, names = pd.factorize(train["entity"])
    names = np.asarray(names, dtype=object)
    addr, ok = parse_ipv4(np.asarray(train["ip"], dtype=object))
    ent_codes, addr = codes[ok].astype(np.int64), addr[ok]
    n_ent = names.size
    if n_ent < 2 or addr.size == 0:
        raise ValueError("inject_other_entity_ips: needs at least two training entities with valid IPs")
    used = np.unique((ent_codes.astype(np.uint64) << np.uint64(24)) | (addr >> np.uint32(8)).astype(np.uint64))
    got_e: list[np.ndarray] = []
    got_ip: list[np.ndarray] = []
    have = 0
    for _ in range(100):
        if have >= n:
            break
        k = max(64, 2 * (n - have))
        src = rng.integers(0, addr.size, k)
        e = rng.integers(0, n_ent, k)
        key = (e.astype(np.uint64) << np.uint64(24)) | (addr[src] >> np.uint32(8)).astype(np.uint64)
        fresh = ~np.isin(key, used) & (e != ent_codes[src])
        got_e.append(e[fresh])
        got_ip.append(addr[src][fresh])
        have += int(fresh.sum())
    if have < n:
        raise ValueError("inject_other_entity_ips: could not find enough IPs of other entities outside each entity's own /24s")
    e = np.concatenate(got_e)[:n]
    ip = np.concatenate(got_ip)[:n]
    return _frame(names[e], format_ipv4(ip), "other_entity")


def build_calibration_sets(train: Any, later: Any, n_normal: int = 100_000, n_per_kind: int | None = None,
                           kinds: Sequence[str] = ABNORMAL_KINDS, seed: int = 0) -> tuple[Any, Any]:
    """``(normal, abnormal)`` DataFrames: known-normal later pairs and injected abnormal pairs of ``kinds``.

    :param n_per_kind: abnormal pairs per kind (default: as many as normal pairs, split over the kinds).
    """
    import pandas as pd

    unknown = [k for k in kinds if k not in ABNORMAL_KINDS]
    if unknown:
        raise ValueError(f"abnormal kinds {unknown} are not known; expected some of {list(ABNORMAL_KINDS)}")
    normal = known_normal_pairs(train, later, n_normal, seed)
    if not len(normal):
        raise ValueError("no known-normal pairs: no later pair has an entity seen in training")
    per = n_per_kind or max(1, len(normal) // max(len(kinds), 1))
    makers = {"random_public": inject_random_public, "unused_private": inject_unused_private, "other_entity": inject_other_entity_ips}
    abnormal = pd.concat([makers[k](train, per, seed) for k in kinds], ignore_index=True)
    return normal, abnormal


# ---------------------------------------------------------------------------------------------- thresholds
def metrics_at(threshold: float, normal_scores: np.ndarray, abnormal_scores: np.ndarray) -> dict[str, float | int]:
    """Confusion counts and rates for the rule ``anomaly score > threshold``."""
    normal = np.asarray(normal_scores, dtype=np.float64)
    abnormal = np.asarray(abnormal_scores, dtype=np.float64)
    fp = int((normal > threshold).sum())
    tp = int((abnormal > threshold).sum())
    fn = abnormal.size - tp
    tn = normal.size - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / abnormal.size if abnormal.size else 0.0
    fpr = fp / normal.size if normal.size else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall, "fpr": fpr, "f1": f1}


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on anomaly scores (``-dot_product``); flags ``score > value``.

    Built by :func:`threshold_for_fpr`, :func:`threshold_best_f1` or directly (``method="fixed"``);
    the metrics are those measured on the calibration sets it was chosen on.
    """

    value: float
    method: str = "fixed"
    target_fpr: float | None = None
    precision: float | None = None
    recall: float | None = None
    fpr: float | None = None
    f1: float | None = None
    n_normal: int | None = None
    n_abnormal: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def flag(self, anomaly_scores: np.ndarray) -> np.ndarray:
        """Boolean flags: ``score > value``; NaN scores (invalid IPs) are never flagged."""
        s = np.asarray(anomaly_scores, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return s > self.value

    @property
    def dot_product_cutoff(self) -> float:
        """The same rule in SageMaker's terms: flag when ``dot_product < -value``."""
        return -self.value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Threshold":
        if "value" not in data:
            raise ValueError("threshold: missing 'value'")
        value = float(data["value"])
        if not np.isfinite(value):
            raise ValueError(f"threshold: value must be finite, got {data['value']!r}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known and k != "value"}, value=value)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Threshold":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError(f"{name}: no finite scores")
    return x


def threshold_for_fpr(normal_scores: np.ndarray, abnormal_scores: np.ndarray, target_fpr: float) -> Threshold:
    """The lowest threshold whose false-positive rate on ``normal_scores`` is at most ``target_fpr``."""
    if not 0.0 <= float(target_fpr) < 1.0:
        raise ValueError(f"target_fpr: expected a number in [0, 1), got {target_fpr!r}")
    normal = np.sort(_finite(normal_scores, "normal scores"))[::-1]
    abnormal = _finite(abnormal_scores, "abnormal scores")
    allowed = int(np.floor(float(target_fpr) * normal.size + 1e-9))
    value = float(normal[allowed]) if allowed < normal.size else float(normal[-1]) - 1e-6
    m = metrics_at(value, normal, abnormal)
    return Threshold(value=value, method="target_fpr", target_fpr=float(target_fpr), precision=m["precision"], recall=m["recall"],
                     fpr=m["fpr"], f1=m["f1"], n_normal=int(normal.size), n_abnormal=int(abnormal.size))


def threshold_best_f1(normal_scores: np.ndarray, abnormal_scores: np.ndarray) -> Threshold:
    """The threshold with the highest F1 (abnormal = positive class); ties go to the higher threshold."""
    normal = _finite(normal_scores, "normal scores")
    abnormal = _finite(abnormal_scores, "abnormal scores")
    scores = np.r_[normal, abnormal]
    is_abn = np.r_[np.zeros(normal.size, bool), np.ones(abnormal.size, bool)]
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], is_abn[order]
    # Candidate thresholds: just below each distinct score, so that score is flagged (rule: > threshold).
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / abnormal.size
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    nxt = s[last[best] + 1] if last[best] + 1 < s.size else s[last[best]] - 1.0
    value = float((s[last[best]] + nxt) / 2.0)
    m = metrics_at(value, normal, abnormal)
    return Threshold(value=value, method="best_f1", precision=m["precision"], recall=m["recall"], fpr=m["fpr"], f1=m["f1"],
                     n_normal=int(normal.size), n_abnormal=int(abnormal.size))


# ---------------------------------------------------------------------------------------------- calibration
@dataclass
class CalibrationResult:
    """What :func:`calibrate` measured; ``threshold`` is the one to deploy."""

    threshold: Threshold
    best_f1: Threshold
    auc: float
    auc_by_kind: dict[str, float]
    recall_by_kind: dict[str, float]
    normal_scores: np.ndarray
    abnormal_scores: np.ndarray
    abnormal_kinds: np.ndarray
    counts: dict[str, int]
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    combiner: dict[str, Any] | None = None
    combiner_declined: str | None = None  # why a fitted combination was not deployed (model alone instead)

    @property
    def score_description(self) -> str:
        """The score the threshold applies to, in words."""
        if self.combiner is not None:
            return ("anomaly score = combined log-odds of dot_product and entity history (higher = more anomalous); "
                    "flagged when score > threshold")
        return "anomaly score = -dot_product; flagged when score > threshold"

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = np.r_[np.zeros(self.normal_scores.size, bool), np.ones(self.abnormal_scores.size, bool)]
        return roc_curve(labels, np.r_[self.normal_scores, self.abnormal_scores])

    def metrics(self) -> dict[str, Any]:
        """JSON-safe summary (no score arrays)."""
        out = {
            "score": self.score_description,
            "roc_auc": self.auc,
            "roc_auc_by_kind": self.auc_by_kind,
            "threshold": self.threshold.to_dict(),
            "recall_by_kind_at_threshold": self.recall_by_kind,
            "best_f1_threshold": self.best_f1.to_dict(),
            "counts": self.counts,
            "normal_score_quantiles": _quantiles(self.normal_scores),
            "abnormal_score_quantiles": _quantiles(self.abnormal_scores),
        }
        if self.components:
            out["components"] = self.components
        if self.combiner is not None:
            out["combiner"] = self.combiner
        if self.combiner_declined:
            out["combiner_declined"] = self.combiner_declined
        return out


def _quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    return {f"p{int(q * 100)}": float(v) for q, v in zip(qs, np.quantile(x, qs))} if x.size else {}


def _auc_by_kind(n_scores: np.ndarray, a_scores: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    by_kind = {}
    for k in sorted(set(kinds.tolist())):
        sel = a_scores[kinds == k]
        by_kind[str(k)] = roc_auc(np.r_[np.zeros(n_scores.size, bool), np.ones(sel.size, bool)], np.r_[n_scores, sel])
    return by_kind


def _result(n_scores: np.ndarray, a_scores: np.ndarray, kinds: np.ndarray, counts: dict[str, int],
            target_fpr: float | None, **extra: Any) -> CalibrationResult:
    labels = np.r_[np.zeros(n_scores.size, bool), np.ones(a_scores.size, bool)]
    auc = roc_auc(labels, np.r_[n_scores, a_scores])
    by_kind = _auc_by_kind(n_scores, a_scores, kinds)
    best = threshold_best_f1(n_scores, a_scores)
    chosen = threshold_for_fpr(n_scores, a_scores, target_fpr) if target_fpr is not None else best
    recall_by_kind = {str(k): float(chosen.flag(a_scores[kinds == k]).mean()) for k in sorted(set(kinds.tolist()))}
    return CalibrationResult(chosen, best, auc, by_kind, recall_by_kind, n_scores, a_scores, kinds, counts, **extra)


def calibrate(scorer: Any, normal: Any, abnormal: Any, target_fpr: float | None = 0.01) -> CalibrationResult:
    """Score both sets, measure ROC AUC (overall and per abnormal ``kind``), and choose a threshold.

    The score is ``-dot_product``; see :func:`calibrate_combined` for the score combined with history.

    :param scorer: an :class:`~seclake_ml.ipinsights.scorer.IPInsightsScorer` (or anything with
        ``score(entities, ips)`` returning ``dot_product``, ``known_entity`` and ``valid_ip``).
    :param normal: DataFrame of known-normal pairs (``entity``, ``ip``).
    :param abnormal: DataFrame of abnormal pairs (``entity``, ``ip``, optional ``kind``).
    :param target_fpr: choose the threshold for this false-positive rate; ``None`` for the best F1.
    """
    sets, kinds = _scored_sets(scorer, normal, abnormal)
    return _result(-sets["normal"][0], -sets["abnormal"][0], kinds, sets["counts"], target_fpr)


def _scored_sets(scorer: Any, normal: Any, abnormal: Any) -> tuple[dict[str, Any], np.ndarray]:
    counts: dict[str, int] = {}
    out: dict[str, Any] = {"counts": counts}
    kinds = None
    for name, frame in (("normal", normal), ("abnormal", abnormal)):
        ents, ips = np.asarray(frame["entity"], dtype=object), np.asarray(frame["ip"], dtype=object)
        res = scorer.score(ents, ips)
        keep = np.asarray(res.valid_ip, dtype=bool) & np.asarray(res.known_entity, dtype=bool)
        counts[f"{name}_pairs"] = int(len(frame))
        counts[f"{name}_invalid_ip_dropped"] = int((~np.asarray(res.valid_ip, dtype=bool)).sum())
        counts[f"{name}_unknown_entity_dropped"] = int((np.asarray(res.valid_ip, dtype=bool) & ~np.asarray(res.known_entity, dtype=bool)).sum())
        counts[f"{name}_scored"] = int(keep.sum())
        out[name] = (np.asarray(res.dot_product, dtype=np.float64)[keep], ents[keep], ips[keep])
        if name == "abnormal":
            all_kinds = (np.asarray(frame["kind"], dtype=object) if "kind" in frame.columns
                         else np.full(len(frame), "abnormal", object))
            kinds = all_kinds[keep]
    if out["normal"][0].size == 0 or out["abnormal"][0].size == 0:
        raise ValueError(f"calibration needs scored pairs in both sets (after dropping invalid IPs and unknown entities): {counts}")
    return out, kinds


def calibrate_combined(scorer: Any, normal: Any, abnormal: Any, history: Any, target_fpr: float | None = 0.01,
                       seed: int = 0, fit_fraction: float = 0.5) -> CalibrationResult:
    """Fit a :class:`~.combiner.ScoreCombiner` of ``dot_product`` and entity history, then calibrate it.

    Both sets are split at random (stratified, seeded): a ``fit_fraction`` share fits the combiner,
    the rest measures every AUC and chooses the threshold, so the reported figures and the
    threshold come from pairs the combiner never saw. The score is the combiner's anomaly
    log-odds (higher = more anomalous; flagged when ``score > threshold``). ``components`` holds the
    AUC of each part on the same pairs: the model (``-dot_product``), the nearest-known-IP baseline
    (``distance_bits``) and the combination.

    :param scorer: as for :func:`calibrate`.
    :param normal: known-normal pairs.
    :param abnormal: injected abnormal pairs (with ``kind``).
    :param history: a :class:`~.history.HistoryIndex` of the training pairs (the scoring profile).
    :param target_fpr: threshold for this false-positive rate; ``None`` for the best F1.
    :param seed: seed of the split.
    :param fit_fraction: share of each set used to fit the combiner (0.1 .. 0.9).
    """
    from seclake_ml.ipinsights.combiner import fit_combiner

    if not 0.1 <= float(fit_fraction) <= 0.9:
        raise ValueError(f"fit_fraction: expected a number in [0.1, 0.9], got {fit_fraction!r}")
    sets, kinds = _scored_sets(scorer, normal, abnormal)
    rng = np.random.default_rng([seed, 211])
    parts = {}
    for name in ("normal", "abnormal"):
        dots, ents, ips = sets[name]
        feats = history.features(ents, ips)
        fit = rng.random(dots.size) < float(fit_fraction)
        if fit.all() or not fit.any():  # tiny sets: keep at least one pair on each side
            fit = np.arange(dots.size) % 2 == 0
        parts[name] = (dots, feats, fit)
    if parts["normal"][2].all() or parts["abnormal"][2].all():
        raise ValueError("calibration with a combiner needs at least two scored pairs in each set")
    fit_dots = np.r_[parts["normal"][0][parts["normal"][2]], parts["abnormal"][0][parts["abnormal"][2]]]
    fit_feats = {k: np.r_[parts["normal"][1][k][parts["normal"][2]], parts["abnormal"][1][k][parts["abnormal"][2]]]
                 for k in parts["normal"][1] if k != "known_entity"}
    labels = np.r_[np.zeros(int(parts["normal"][2].sum()), bool), np.ones(int(parts["abnormal"][2].sum()), bool)]
    combiner = fit_combiner(fit_dots, fit_feats, labels)

    def held_out(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dots, feats, fit = parts[name]
        ev = ~fit
        combined = combiner.decision_function(dots[ev], {k: v[ev] for k, v in feats.items()})
        return combined, -dots[ev], feats["distance_bits"][ev]

    n_comb, n_model, n_base = held_out("normal")
    a_comb, a_model, a_base = held_out("abnormal")
    a_kinds = kinds[~parts["abnormal"][2]]
    labels_ev = np.r_[np.zeros(n_comb.size, bool), np.ones(a_comb.size, bool)]
    components = {}
    for name, (ns, as_) in (("model", (n_model, a_model)), ("nearest_known_ip", (n_base, a_base)),
                            ("combined", (n_comb, a_comb))):
        components[name] = {"roc_auc": roc_auc(labels_ev, np.r_[ns, as_]), "roc_auc_by_kind": _auc_by_kind(ns, as_, a_kinds)}
    counts = dict(sets["counts"])
    declined = _decline_reason(combiner, components)
    if declined:
        # The model stays the detector: a combination that leaves dot_product out ranks every pair of an
        # unseen network alike (ties), and one that does not beat the model on held-out pairs adds risk only.
        counts.update(evaluated_normal=int(n_model.size), evaluated_abnormal=int(a_model.size))
        return _result(n_model, a_model, a_kinds, counts, target_fpr, components=components, combiner=None,
                       combiner_declined=declined)
    counts.update(combiner_fit_normal=int(parts["normal"][2].sum()), combiner_fit_abnormal=int(parts["abnormal"][2].sum()),
                  evaluated_normal=int(n_comb.size), evaluated_abnormal=int(a_comb.size))
    return _result(n_comb, a_comb, a_kinds, counts, target_fpr, components=components, combiner=combiner.to_dict())


def _decline_reason(combiner: Any, components: dict[str, dict[str, Any]]) -> str | None:
    """Why the fitted combination must not replace the model's score, or ``None`` when it may."""
    if "dot_product" not in combiner.features:
        why = (combiner.fit or {}).get("dropped", {}).get("dot_product", "not used")
        return f"the fitted combination left dot_product out ({why}); the model's score is used alone"
    comb, model = components["combined"]["roc_auc"], components["model"]["roc_auc"]
    if not comb > model:
        return (f"the combination's held-out AUC {comb:.4f} is not above the model's {model:.4f}; "
                "the model's score is used alone")
    return None


def combined_auc(scorer: Any, normal: Any, abnormal: Any, combiner: Any, history: Any) -> float:
    """ROC AUC of an already fitted combiner (its JSON form or a :class:`~.combiner.ScoreCombiner`) on
    both sets, all pairs (e.g. the active model on a candidate's sets, which it was not fitted on)."""
    from seclake_ml.ipinsights.combiner import ScoreCombiner

    comb = combiner if isinstance(combiner, ScoreCombiner) else ScoreCombiner.from_dict(combiner)
    sets, _ = _scored_sets(scorer, normal, abnormal)
    scores = []
    for name in ("normal", "abnormal"):
        dots, ents, ips = sets[name]
        scores.append(comb.decision_function(dots, history.features(ents, ips, comb.features) if comb.needs_history else None))
    labels = np.r_[np.zeros(scores[0].size, bool), np.ones(scores[1].size, bool)]
    return roc_auc(labels, np.r_[scores[0], scores[1]])


class AnomalyDetector:
    """A scorer and a threshold together (PyOD style): ``decision_function`` and ``predict``.

    :param scorer: an :class:`~seclake_ml.ipinsights.scorer.IPInsightsScorer`.
    :param threshold: the :class:`Threshold` to apply.
    """

    def __init__(self, scorer: Any, threshold: Threshold) -> None:
        self.scorer = scorer
        self.threshold = threshold

    @property
    def threshold_(self) -> float:
        return self.threshold.value

    def decision_function(self, entities: Sequence[object], ips: Sequence[object]) -> np.ndarray:
        """Anomaly scores ``-dot_product`` (higher = more anomalous; NaN for invalid IPs)."""
        return self.scorer.decision_function(entities, ips)

    def predict(self, entities: Sequence[object], ips: Sequence[object]) -> np.ndarray:
        """1 for anomalous pairs, 0 otherwise (invalid IPs give 0; check validity separately)."""
        return self.threshold.flag(self.decision_function(entities, ips)).astype(np.int8)
