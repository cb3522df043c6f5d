"""The unsupervised risk score (0-100) and its contributions: works with zero labels.

Each component adds points; ``risk = 100 * (1 - exp(-points / SCALE))``, so one strong signal gives a
moderate score and several together approach 100. The components (``features`` names in brackets):

========================  ===========================================================================
sensitive operation       catalogue weight 0-3 [sensitive]; doubled when the operation is new for the
                          principal [new_op]
new operation             2 + the operation's rarity in the account (log10 scale, capped at 2)
new service               1.5
new network / ASN         1 each [new_net, new_asn]; new country 1.5 [new_country]
new client type           2 [new_ua_family]; a penetration-testing OS in the user agent adds 4
new user agent            0.5 [new_ua]; new error code 1 [new_error]; unusual hour 0.5 [new_hour]
first-seen principal      2, plus the account rarity of its operation and network (capped at 2 each)
failures                  log2(1 + failures in the principal's last hour), capped at 3 [fails_1h]
novelty burst             log2(1 + new-operation events in the last hour), capped at 3 [new_ops_1h]
rate                      (rate_ratio_1h - 2) / 2, between 0 and 2: three times the usual hourly rate
sign-in                   failed 1, without MFA 1 [signin_failed, signin_no_mfa]; root activity 2
IP Insights               the active model's anomaly log-odds / 2, between 0 and 3 [ipinsights]
========================  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALE = 8.0
COMPONENTS = (
    "sensitive_operation", "new_operation", "new_service", "new_network", "new_client", "new_detail",
    "first_seen_principal", "failures", "novelty_burst", "rate", "sign_in", "root", "ipinsights",
)  # fmt: skip


def components(f: Any) -> dict[str, np.ndarray]:
    """Points per component for every row of a feature frame."""
    g = lambda c: f[c].to_numpy(dtype=float)  # noqa: E731
    new_op = g("new_op")
    new_principal = g("new_principal")
    pentest = (f["ua_family"].to_numpy() == "pentest-os").astype(float)
    ipi = np.nan_to_num(g("ipinsights"), nan=0.0)
    return {
        "sensitive_operation": g("sensitive") * (1.0 + new_op),
        "new_operation": new_op * (2.0 + np.minimum(g("acct_rarity_op"), 2.0)),
        "new_service": 1.5 * g("new_service"),
        "new_network": g("new_net") + g("new_asn") + 1.5 * g("new_country"),
        "new_client": 2.0 * g("new_ua_family") + 4.0 * pentest,
        "new_detail": 0.5 * g("new_ua") + g("new_error") + 0.5 * g("new_hour"),
        "first_seen_principal": new_principal * (2.0 + np.minimum(g("acct_rarity_op"), 2.0) + np.minimum(g("acct_rarity_net"), 2.0)),
        "failures": np.minimum(np.log2(1.0 + g("fails_1h")), 3.0),
        "novelty_burst": np.minimum(np.log2(1.0 + g("new_ops_1h")), 3.0),
        "rate": np.clip((g("rate_ratio_1h") - 2.0) / 2.0, 0.0, 2.0),
        "sign_in": g("signin_failed") + g("signin_no_mfa"),
        "root": 2.0 * g("root"),
        "ipinsights": np.clip(ipi / 2.0, 0.0, 3.0),
    }


def unsupervised_score(f: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(risk 0-100, points per component)`` for every row."""
    parts = components(f)
    points = np.zeros(len(f))
    for v in parts.values():
        points += v
    return 100.0 * (1.0 - np.exp(-points / SCALE)), parts


def contributions_json(parts: dict[str, np.ndarray], k: int = 3, scale: float = 1.0) -> np.ndarray:
    """Per row, ``[{"feature": name, "effect": x}, ...]`` of the ``k`` largest positive contributions, as
    JSON text built in bulk with Arrow's string kernels (names are the package's identifiers; effects
    finite numbers rounded to 3 decimals)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = np.array(list(parts), dtype=object)
    n = len(next(iter(parts.values()))) if len(names) else 0
    if not len(names) or n == 0:
        return np.full(n, "[]", dtype=object)
    mat = np.nan_to_num(np.column_stack([parts[x] for x in names]) * scale, nan=0.0, posinf=0.0, neginf=0.0)
    idx = np.argsort(-mat, axis=1)[:, :k]
    vals = np.round(np.take_along_axis(mat, idx, axis=1), 3)
    name_dict = pa.array([str(x) for x in names], pa.string())
    text = pa.array(np.full(n, "", dtype=object), pa.string())
    for j in range(idx.shape[1]):
        keep = pa.array(vals[:, j] > 0)
        item = pc.binary_join_element_wise(
            '{"feature": "', name_dict.take(pa.array(idx[:, j])), '", "effect": ',
            pc.cast(pa.array(vals[:, j]), pa.string()), "}", "")
        sep = pc.if_else(pc.equal(text, ""), "", ", ")
        text = pc.if_else(keep, pc.binary_join_element_wise(text, sep, item, ""), text)
    out = pc.binary_join_element_wise("[", text, "]", "")
    return np.asarray(out.to_numpy(zero_copy_only=False), dtype=object)
