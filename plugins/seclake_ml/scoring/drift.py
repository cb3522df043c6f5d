"""Drift of the traffic away from what the model learned: per scored batch, against the calibration.

Three figures per batch, each with a configured bound (``extra.scoring.drift_*``):

* **score shift**: the population stability index (PSI) of the batch's anomaly scores against the
  known-normal calibration set's scores, over the deciles of the latter (the *score reference* kept
  with the threshold in the active record). ``PSI = Σ (p_i − q_i) · ln(p_i / q_i)``, with ``q`` the
  reference shares and ``p`` the batch's; empty bins count as a share of 1e-4 so one empty bin does not
  make it infinite. Below 0.1 is usually read as no shift, 0.1-0.25 as moderate, above as large.
* **unknown-entity rate**: the share of distinct scored pairs whose entity the model never saw (new instances,
  new principals). A model that knows fewer and fewer of the entities it scores is stale.
* **findings rate**: findings per 1,000 distinct scored pairs (suppressed findings left out: an
  allow-listed pair is accepted, not drift). A sudden flood is either an incident or a
  model that no longer fits; either way someone should look, and a retrained model settles which.

Rates count *distinct* pairs (per object and chunk), the unit findings and unknown entities are
counted in; batches with fewer distinct pairs than ``drift_min_pairs`` are measured but never
judged. NumPy only.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

BINS = 10
EMPTY_SHARE = 1e-4


def score_reference(normal_scores: Any, bins: int = BINS) -> dict[str, Any] | None:
    """The reference distribution of the known-normal calibration scores: inner quantile edges and the
    share of the scores in each bin (``None`` when fewer than ``bins`` finite scores exist).

    :param normal_scores: the deployed anomaly score of each known-normal calibration pair.
    :param bins: number of quantile bins (10: deciles).
    """
    x = np.asarray(normal_scores, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < bins:
        return None
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c) / x.size for c in counts], "n": int(x.size)}


def check_reference(ref: Any) -> dict[str, Any] | None:
    """``ref`` when it is a usable score reference (edges ascending and finite, one more share than
    edges, shares summing to 1), else ``None`` with a warning: drift is then not measured."""
    if ref is None:
        return None
    try:
        edges = [float(e) for e in ref["edges"]]
        shares = [float(s) for s in ref["shares"]]
        ok = (len(shares) == len(edges) + 1 and all(math.isfinite(e) for e in edges)
              and all(a < b for a, b in zip(edges, edges[1:])) and all(0 <= s <= 1 for s in shares)
              and abs(sum(shares) - 1.0) < 1e-6)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        log.warning("the active record's score_reference is unusable; score drift is not measured")
        return None
    return {"edges": edges, "shares": shares, "n": int(ref.get("n") or 0)}


class ScoreHistogram:
    """Counts of a batch's anomaly scores in the reference's bins (NaN scores are left out)."""

    def __init__(self, reference: Mapping[str, Any]) -> None:
        self.edges = np.asarray(reference["edges"], dtype=np.float64)
        self.shares = np.asarray(reference["shares"], dtype=np.float64)
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)

    def add(self, scores: Any) -> None:
        x = np.asarray(scores, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size:
            self.counts += np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def psi(self) -> float | None:
        """The population stability index against the reference (``None`` before any score)."""
        if self.total == 0:
            return None
        p = np.maximum(self.counts / self.total, EMPTY_SHARE)
        q = np.maximum(self.shares, EMPTY_SHARE)
        return float(np.sum((p - q) * np.log(p / q)))


def judge(totals: Mapping[str, Any], psi: float | None, cfg: Any) -> dict[str, Any]:
    """The drift figures of one batch and the bounds they broke.

    :param totals: the batch totals (``distinct_pairs``, ``unknown_entity``, ``findings``, ``suppressed``).
    :param psi: the batch's score PSI (``None``: not measured).
    :param cfg: the configuration (its ``extra.scoring`` ``drift_*`` bounds and ``drift_min_pairs``).
    :return: ``psi``, ``unknown_rate``, ``findings_per_1k``, ``pairs``, ``judged`` and ``breaches``
        (one line per broken bound; empty when the batch is within bounds or too small to judge).
    """
    pairs = int(totals.get("distinct_pairs") or 0)
    unknown_rate = min(1.0, int(totals.get("unknown_entity") or 0) / pairs) if pairs else None
    raised = int(totals.get("findings") or 0) - int(totals.get("suppressed") or 0)
    per_1k = (1000.0 * max(raised, 0) / pairs) if pairs else None
    psi_max, unknown_max = cfg.scoring.drift_psi_max, cfg.scoring.drift_unknown_rate_max
    findings_max, min_pairs = cfg.scoring.drift_findings_per_thousand_max, cfg.scoring.drift_min_pairs
    judged = pairs >= int(min_pairs)
    breaches: list[str] = []
    if judged:
        if psi is not None and psi > psi_max:
            breaches.append(f"score PSI {psi:.3f} against the calibration set is above {psi_max:g}")
        if unknown_rate is not None and unknown_rate > unknown_max:
            breaches.append(f"unknown-entity rate {unknown_rate:.1%} is above {unknown_max:.1%}")
        if per_1k is not None and per_1k > findings_max:
            breaches.append(f"{per_1k:.1f} findings per 1,000 pairs is above {findings_max:g}")
    return {
        "psi": None if psi is None else round(psi, 6),
        "unknown_rate": None if unknown_rate is None else round(unknown_rate, 6),
        "findings_per_1k": None if per_1k is None else round(per_1k, 4),
        "pairs": pairs,
        "judged": judged,
        "breaches": breaches,
        "bounds": {"psi": psi_max, "unknown_rate": unknown_max,
                   "findings_per_1k": findings_max, "min_pairs": min_pairs},
    }
