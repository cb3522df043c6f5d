"""Ranking metrics in NumPy: ROC AUC (ties count half) and the ROC curve.

Convention: ``labels`` are 1 for the positive class; ``scores`` rank positives higher.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "roc_curve"]


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; drop or impute them before computing ROC metrics")
    return y, s


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random negative.

    Ties count one half. Raises :class:`ValueError` when either class is empty.
    """
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positive and {n_neg} negative")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Average ranks (1-based) over ties.
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    rank_sum = ranks[y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` for the rule ``score >= threshold``, thresholds decreasing.

    The first point is ``(0, 0)`` at threshold ``+inf``.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tps = np.cumsum(y_sorted)[last_of_group]
    fps = (last_of_group + 1) - tps
    n_pos = max(int(y.sum()), 1)
    n_neg = max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_group]]
    return fpr, tpr, thresholds
