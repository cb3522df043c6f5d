"""Categorical outliers: values of an event that are new for its principal and rare in its account.

An event is an outlier when at least one of its fields (:data:`seclake_ml.risk.features.FIELDS`) is

* new for a principal with at least :data:`MIN_PRINCIPAL_HISTORY` events of history, and, for the
  fields also kept per account, seen in less than :data:`RARE_SHARE` of the account's events; or
* for a principal without history (first seen), a value seen in less than :data:`RARE_SHARE` of the
  account's events.

The probable cause names those fields, most surprising first, with the counts behind them, e.g.
``operation iam:CreateAccessKey new for this principal (0 of 412 events in 14 days), 2 of 81,003 in
the account``. Works with zero labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seclake_ml.risk.features import ACCOUNT_FIELDS, FIELDS

MIN_PRINCIPAL_HISTORY = 20
RARE_SHARE = 0.01
MAX_CAUSES = 3
_RARE = -np.log10(RARE_SHARE)  # acct_rarity above this = value in less than RARE_SHARE of the account's events


def outlier_fields(frame: Any) -> dict[str, np.ndarray]:
    """Per field, a boolean array: this field makes the event an outlier."""
    known = frame["principal_history"].to_numpy() >= MIN_PRINCIPAL_HISTORY
    first_seen = frame["new_principal"].to_numpy() == 1
    out = {}
    for f in FIELDS:
        new = frame[f"new_{f}"].to_numpy() == 1
        if f in ACCOUNT_FIELDS:
            rare_acct = frame[f"acct_rarity_{f}"].to_numpy() >= _RARE
            out[f] = (known & new & rare_acct) | (first_seen & rare_acct)
        else:
            out[f] = known & new
    # "none" values (an empty field) are never a cause on their own
    for f, col in (("net", "net"), ("asn", "asn"), ("country", "country"), ("error", "error"), ("ua", "ua")):
        out[f] &= frame[col].to_numpy() != "none"
    return out


def detect(frame: Any, lookback_days: int) -> tuple[np.ndarray, list[str]]:
    """``is_outlier`` and ``probable_cause`` (empty string when not an outlier) for every row."""
    flags = outlier_fields(frame)
    is_out = np.zeros(len(frame), dtype=bool)
    for v in flags.values():
        is_out |= v
    causes = [""] * len(frame)
    if not is_out.any():
        return is_out, causes
    rows = np.nonzero(is_out)[0]
    value_col = {"op": "op", "service": "service_v", "net": "net", "asn": "asn", "country": "country",
                 "ua_family": "ua_family", "ua": "ua", "error": "error", "hour": "hour"}
    values = {f: frame[c].to_numpy()[rows] for f, c in value_col.items()}
    surprise = {f: frame[f"rarity_{f}"].to_numpy()[rows]
                + (frame[f"acct_rarity_{f}"].to_numpy()[rows] if f in ACCOUNT_FIELDS else 0.0) for f in FIELDS}
    acct_n = {f: frame[f"acct_n_{f}"].to_numpy()[rows] for f in ACCOUNT_FIELDS}
    flag = {f: flags[f][rows] for f in FIELDS}
    history = frame["principal_history"].to_numpy()[rows]
    first = frame["new_principal"].to_numpy()[rows] == 1
    new_account = frame["new_account"].to_numpy()[rows] == 1 if "new_account" in frame else np.zeros(len(rows), bool)
    for j, i in enumerate(rows):
        cand = [f for f in FIELDS if flag[f][j]]
        cand.sort(key=lambda f: -surprise[f][j])
        parts = []
        for f in cand[:MAX_CAUSES]:
            value = values[f][j]
            if f == "hour":
                value = f"{int(value) * 3:02d}-{int(value) * 3 + 3:02d}h"
            if first[j]:
                text = f"{FIELDS[f]} {value} (first-seen principal{' of a first-seen account' if new_account[j] else ''})"
            else:
                text = f"{FIELDS[f]} {value} new for this principal (0 of {int(history[j]):,} events in {lookback_days} days)"
            if f in ACCOUNT_FIELDS:
                text += f", {int(acct_n[f][j]):,} times in the account"
            parts.append(text)
        causes[i] = "; ".join(parts)
    return is_out, causes
