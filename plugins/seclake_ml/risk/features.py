"""Per-event risk features, each judged against the principal's and the account's history.

:func:`build_features` takes the event table (:mod:`seclake_ml.risk.columns`) of a *history* period
followed by the events to score and returns one row per scored event. History is day-granular: an
event of day ``d`` is compared with the events of ``[d - lookback_days, d)``, so every event of one
scoring batch sees the same history, a burst within the day stays new all day, and training over a
week sees each day as the scoring DAG saw it.

Categorical fields (:data:`FIELDS`) are compared per principal and per account: the prior count of the
value, ``new_<field>`` (the principal has history but never used this value) and ``rarity_<field>`` =
``-log10((n_value + 1) / (n_scope + 2))``. Trailing one-hour windows per principal count failures,
access-denied errors, events whose operation is new for the principal, and the event rate against the
principal's usual hourly rate. A batch is scored after the fact, so these windows reach one hour
either side of the event: the first reconnaissance call of a session shares the session's evidence. The sensitive-operation catalogue gives each operation a weight.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from seclake_ml.risk.catalog import Catalog, load_catalog
from seclake_ml.risk.useragent import family

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# field -> what it is, in the words of a probable cause
FIELDS: dict[str, str] = {
    "op": "operation",
    "service": "service",
    "net": "network",
    "asn": "ASN",
    "country": "country",
    "ua_family": "client type",
    "ua": "user agent",
    "error": "error code",
    "hour": "hour of day (UTC, 3-hour bucket)",
}
ACCOUNT_FIELDS = ("op", "service", "net", "asn", "country", "ua_family")
# Per-principal counts within one hour either side of the event (inclusive).
WINDOW_COUNTS = ("fails_1h", "denied_1h", "new_ops_1h", "events_1h")
DENIED_CODES = ("AccessDenied", "AccessDeniedException", "Client.UnauthorizedOperation", "UnauthorizedOperation",
                "UnauthorizedAccess", "Forbidden", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken")
NOT_IP = "not_ip"
NEW_ACCOUNT_RARITY = 2.0  # account rarity of every value in an account with no history
# What an operation's name says it does: 0 reads, 1 changes, 2 removes or stops, 3 signs in.
_READ_VERBS = ("Describe", "List", "Get", "Head", "Lookup", "Search", "Scan", "Query", "BatchGet", "Select",
               "Check", "Validate", "Estimate", "Preview", "Simulate", "View", "Test")
_REMOVE_VERBS = ("Delete", "Remove", "Detach", "Disable", "Deregister", "Revoke", "Stop", "Terminate", "Cancel",
                 "Schedule", "Deactivate", "Disassociate", "Leave", "Purge", "Reject", "Release")
# Tactics of the sensitive-operation catalogue, as a small categorical code for the boosted model.
CATEGORIES = ("", "change", "discovery", "credential_access", "collection", "execution", "persistence",
              "privilege_escalation", "lateral_movement", "defense_evasion", "exfiltration", "impact",
              "initial_access")


def verb_class(operation: str | None) -> int:
    """0 read, 1 change, 2 remove/stop, 3 console sign-in, from the operation's name (``-1`` unknown)."""
    if not operation:
        return -1
    if operation in ("ConsoleLogin", "SwitchRole", "CheckMfa"):
        return 3
    if operation.startswith(_READ_VERBS):
        return 0
    if operation.startswith(_REMOVE_VERBS):
        return 2
    return 1


@dataclass
class FeatureFrame:
    """Features of the scored events and the context an explanation needs."""

    frame: Any  # pandas.DataFrame, one row per scored event: event columns + derived + features
    lookback_days: int
    history_events: int
    history_principals: int

    @property
    def rows(self) -> int:
        return len(self.frame)


def _net(ip: Any) -> str:
    """/24 of an IPv4 address, /48 of an IPv6 one; ``not_ip`` for service domains and junk; ``none`` for empty."""
    if not isinstance(ip, str) or not ip or ip == "-":
        return "none"
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return NOT_IP
    if addr.version == 4:
        return str(ipaddress.ip_network(f"{addr}/24", strict=False).network_address) + "/24"
    return str(ipaddress.ip_network(f"{addr}/48", strict=False).network_address) + "/48"


def _nets(ips: Any) -> np.ndarray:
    """:func:`_net` of every address: dotted IPv4 in bulk, the rest (IPv6, domains, junk) once per distinct value."""
    import pandas as pd

    from seclake_ml.ipinsights.ipv4 import format_ipv4, parse_ipv4

    codes, uniques = pd.factorize(ips, use_na_sentinel=False)
    uniq = np.asarray(uniques, dtype=object)
    addr, ok = parse_ipv4(uniq)
    # a trailing NUL survives NumPy's fixed-width strings: such a value is not a clean address
    ok &= np.array([isinstance(u, str) and "\x00" not in u and len(u) <= 15 for u in uniq], dtype=bool) if len(uniq) else ok
    out = np.empty(len(uniq), dtype=object)
    if ok.any():
        nets, inverse = np.unique(addr[ok] & np.uint32(0xFFFFFF00), return_inverse=True)
        out[ok] = (format_ipv4(nets).astype(object) + "/24")[inverse]
    for i in np.nonzero(~ok)[0]:
        u = uniq[i]
        out[i] = _net(u if isinstance(u, str) else None)
    return out[codes] if len(uniq) else np.array([], dtype=object)


def _per_distinct(values: Any, fn: Callable[[Any], Any]) -> np.ndarray:
    """``fn`` of every value, computed once per distinct value (``None`` for missing ones)."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    mapped = np.array([fn(u if isinstance(u, str) else None) for u in uniques], dtype=object)
    return mapped[codes] if len(mapped) else np.array([], dtype=object)


def _codes(values: Any) -> tuple[np.ndarray, int]:
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64), max(len(uniques), 1)


def _combine(a: np.ndarray, b: np.ndarray, nb: int) -> tuple[np.ndarray, int]:
    return _codes(a * nb + b)


def derive(events: Any, geo: Any | None = None) -> Any:
    """The event table (pyarrow or pandas) with the derived columns the features read."""
    import pandas as pd

    df = events.to_pandas() if hasattr(events, "to_pandas") and not isinstance(events, pd.DataFrame) else events.copy()
    df = df.reset_index(drop=True)
    t = pd.to_datetime(df["time"], utc=True)
    df["time"] = t
    epoch = pd.Timestamp(0, tz="UTC")
    ms = ((t - epoch) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64) if len(df) else np.zeros(0, np.int64)
    df["_ms"] = ms
    df["_day"] = ms // DAY_MS
    svc = df["service"].fillna("").astype(str)
    op = df["operation"].fillna("").astype(str)
    df["op"] = (svc.str.replace(".amazonaws.com", "", regex=False) + ":" + op).where((svc != "") | (op != ""), "none")
    df["service_v"] = svc.where(svc != "", "none")
    df["net"] = _nets(df["source_ip"])
    df["ua_family"] = _per_distinct(df["user_agent"], family)
    df["ua"] = df["user_agent"].fillna("none").astype(str)
    df["error"] = df["error_code"].fillna("none").astype(str)
    hour = (ms // HOUR_MS) % 24
    df["hour_of_day"] = hour
    df["hour"] = (hour // 3).astype(str)
    df["weekend"] = (((ms // DAY_MS) + 3) % 7 >= 5).astype(np.int8)  # 1970-01-01 was a Thursday
    country, asn = _geo(df["source_ip"], df["net"].to_numpy(), geo)
    df["country"] = country
    df["asn"] = asn
    err = df["error_code"].fillna("")
    df["failed"] = ((err != "") | (df["status"].fillna("") == "Failure")).astype(np.int8)
    df["denied"] = err.isin(DENIED_CODES).astype(np.int8)
    df["principal_v"] = df["principal"].fillna("none").astype(str)
    df["account_v"] = df["account"].fillna("none").astype(str)
    return df


def _geo(ips: Any, nets: np.ndarray, geo: Any | None) -> tuple[np.ndarray, np.ndarray]:
    n = len(ips)
    if geo is None:
        country = np.where(nets == "none", "none", np.where(nets == NOT_IP, NOT_IP, "unknown")).astype(object)
        return country, country.copy()
    import pandas as pd

    codes, uniques = pd.factorize(ips, use_na_sentinel=False)
    res = geo.lookup([u if isinstance(u, str) else None for u in uniques])
    cu = np.asarray(res.country, dtype=object)
    special = ("none", NOT_IP, "private", "reserved")
    au = np.array([f"AS{a}" if a else (c if c in special else "unknown") for a, c in zip(res.asn, res.country)],
                  dtype=object)
    if n == 0:
        return np.array([], dtype=object), np.array([], dtype=object)
    return cu[codes], au[codes]


def build_features(
    events: Any,
    start_ms: int,
    *,
    lookback_days: int = 14,
    catalog: Catalog | None = None,
    geo: Any | None = None,
    ip_scorer: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None,
    target_uids: set[str] | None = None,
) -> FeatureFrame:
    """Features of the events at or after ``start_ms`` (epoch ms); earlier rows are history only.

    :param events: event table (pyarrow Table or pandas DataFrame) of ``[start - lookback, end)``.
    :param lookback_days: days of history each event is compared with.
    :param catalog: sensitive-operation catalogue (default: the packaged one).
    :param geo: a :class:`seclake_ml.risk.geoip.GeoProvider`; without one country and ASN are ``unknown``.
    :param ip_scorer: ``(principals, ips) -> anomaly log-odds`` (the active IP Insights model), NaN
        where it has no opinion; without one the ``ipinsights`` feature is NaN.
    :param target_uids: score only these events (of those at or after ``start_ms``); the others of the
        same days are context: they count in the one-hour windows, not in the day-granular history.
    """
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
    import pandas as pd

    catalog = catalog or load_catalog()
    df = derive(events, geo)
    n = len(df)
    day = df["_day"].to_numpy()
    ms = df["_ms"].to_numpy()
    target = ms >= start_ms
    if target_uids is not None:
        target &= df["uid"].isin(target_uids).to_numpy()
    p_codes, n_p = _codes(df["principal_v"])
    a_codes, n_a = _codes(df["account_v"])
    target_days = np.unique(day[target]) if n else np.zeros(0, np.int64)

    feats: dict[str, np.ndarray] = {}

    def prior(keys: np.ndarray, nkeys: int) -> np.ndarray:
        """Per row, how many rows with the same key fall in ``[day - lookback, day)``."""
        out = np.zeros(n, dtype=np.int64)
        for d in target_days:
            hist = (day >= d - lookback_days) & (day < d)
            counts = np.bincount(keys[hist], minlength=nkeys)
            rows = target & (day == d)
            out[rows] = counts[keys[rows]]
        return out

    n_principal = prior(p_codes, n_p)
    n_account = prior(a_codes, n_a)
    feats["new_principal"] = (n_principal == 0).astype(np.int8)
    feats["new_account"] = (n_account == 0).astype(np.int8)
    feats["principal_history"] = n_principal
    field_codes = {f: _codes(df[f]) for f in FIELDS}
    for f in FIELDS:
        fc, nf = field_codes[f]
        k, nk = _combine(p_codes, fc, nf)
        nv = prior(k, nk)
        feats[f"n_{f}"] = nv
        feats[f"new_{f}"] = ((nv == 0) & (n_principal > 0)).astype(np.int8)
        feats[f"rarity_{f}"] = -np.log10((nv + 1.0) / (n_principal + 2.0))
        if f in ACCOUNT_FIELDS:
            k, nk = _combine(a_codes, fc, nf)
            nv_a = prior(k, nk)
            feats[f"acct_n_{f}"] = nv_a
            # an account without history (first seen): every value counts as rare (1 in 100)
            feats[f"acct_rarity_{f}"] = np.where(n_account > 0, -np.log10((nv_a + 1.0) / (n_account + 2.0)),
                                                 NEW_ACCOUNT_RARITY)
    op_codes, op_uniques = pd.factorize(df["service"].fillna("") + "\x1f" + df["operation"].fillna(""), use_na_sentinel=False)
    pairs = [str(u).split("\x1f", 1) for u in op_uniques]
    w, cats = catalog.lookup_many([p[0] or None for p in pairs], [p[1] or None for p in pairs])
    feats["sensitive"] = np.asarray(w, dtype=np.int8)[op_codes] if len(pairs) else np.zeros(n, np.int8)
    df["sensitive_category"] = np.asarray(cats, dtype=object)[op_codes] if len(pairs) else np.array([], dtype=object)
    verbs = np.array([verb_class(p[1]) for p in pairs], dtype=np.int8)
    feats["verb"] = verbs[op_codes] if len(pairs) else np.zeros(n, np.int8)
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}
    feats["category"] = (np.array([cat_index.get(c, 0) for c in cats], dtype=np.int8)[op_codes]
                         if len(pairs) else np.zeros(n, np.int8))

    # one hour either side of each event, per principal, over history and scored rows alike
    order = np.lexsort((ms, p_codes))
    key = p_codes[order] * (1 << 42) + ms[order]
    lo = np.searchsorted(key, key - HOUR_MS, side="left")
    hi = np.searchsorted(key, key + HOUR_MS, side="right")
    new_op_all = np.zeros(n, dtype=np.int64)
    new_op_all[target] = feats["new_op"][target]
    for name, flag in (("fails_1h", df["failed"].to_numpy()), ("denied_1h", df["denied"].to_numpy()),
                       ("new_ops_1h", new_op_all), ("events_1h", np.ones(n, dtype=np.int64))):
        cs = np.concatenate([[0], np.cumsum(flag[order].astype(np.int64))])
        counts = np.empty(n, dtype=np.int64)
        counts[order] = cs[hi] - cs[lo]
        feats[name] = counts
    hourly = n_principal / (lookback_days * 24.0)
    feats["rate_ratio_1h"] = np.log2((feats["events_1h"] + 1.0) / (hourly + 1.0))

    kind = df["kind"].fillna("").to_numpy()
    ptype = df["principal_type"].fillna("").to_numpy()
    status = df["status"].fillna("").to_numpy()
    mfa = df["mfa"]
    signin = kind == "signin"
    feats["signin"] = signin.astype(np.int8)
    feats["signin_failed"] = (signin & (status == "Failure")).astype(np.int8)
    human_login = signin & np.isin(ptype, ("IAMUser", "Root")) & (status != "Failure")
    feats["signin_no_mfa"] = (human_login & ~mfa.fillna(False).astype(bool).to_numpy()).astype(np.int8)
    feats["root"] = (ptype == "Root").astype(np.int8)
    if ip_scorer is not None and target.any():
        scores = np.full(n, np.nan)
        rows = np.nonzero(target)[0]
        scores[rows] = np.asarray(ip_scorer(df["principal_v"].to_numpy()[rows], df["source_ip"].to_numpy()[rows]), dtype=float)
        feats["ipinsights"] = scores
    else:
        feats["ipinsights"] = np.full(n, np.nan)

    rows = np.nonzero(target)[0]
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        pick = slice(int(rows[0]), int(rows[-1]) + 1)  # events come time-ordered: the scored ones are a slice
    else:
        pick = rows
    # features as one float64 block (one allocation, no per-dtype consolidation); counts stay exact
    names = list(feats)
    matrix = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, k in enumerate(names):
        matrix[:, j] = feats[k][pick]
    out = pd.concat([df.iloc[pick].reset_index(drop=True), pd.DataFrame(matrix, columns=names, copy=False)], axis=1)
    hist = ~target
    return FeatureFrame(out, lookback_days, int(hist.sum()), int(len(np.unique(p_codes[hist]))) if hist.any() else 0)
