"""SYNTHETIC analyst risk labels for the sample lake's CloudTrail events.

The CloudTrail risk engine trains a supervised regressor on analyst-assigned risk scores (0-100). A
sample lake has no analysts, so the generator writes a stand-in label file,
``ground_truth/synthetic_risk_labels.csv`` (a drop-batch day: ``ground_truth/batches/<YYYYMMDD>/``),
in the analysts' CSV shape (:data:`seclake_ml.risk.columns.LABEL_CSV_COLUMNS`). Every row says
``analyst = synthetic-policy`` and its note says it is synthetic: the scores come from the small,
explicit policy below, a noisy function of the generator's own ground truth (which rows are injected
anomalies) and of plain event features. It is *not* derived from, and not what, the risk engine
computes; a model fitted on it only shows that the supervised path runs end to end.

Which events get a label
------------------------
Analysts label a sample, not everything. Every CloudTrail row of an injected anomaly is labelled; any
other sign-in or API call is labelled with the largest of the probabilities that apply to it:

==========================================================  ===========
event                                                        probability
==========================================================  ===========
root user                                                    1.0
security-sensitive write (class ``security_write``)          0.9
console sign-in without MFA (IAM user or root)               0.8
rare principal/operation combination (prior share < 1 %)     0.6
failed call or failed sign-in                                0.5
other write (class ``write``)                                0.5
console sign-in                                              0.4
sensitive read (class ``sensitive_read``)                    0.3
off-hours activity of a person (see below)                   0.15
credential access (class ``credential_access``)              0.12
anything else (discovery, routine machine calls)             0.08
==========================================================  ===========

The draw is reproducible: each generated chunk has its own random stream from the seed, so the labels
are the same for a seed and arguments whatever the number of workers. About 10-20 % of CloudTrail rows
get a label with the default estate.

The score
---------
``score = base(class) + Σ modifiers + noise``, clipped to 0-100 and rounded::

    class              base   operations
    signin               15   signin:ConsoleLogin
    discovery             8   any other read-only call (Describe*, List*, Get*, Lookup* …)
    routine              12   ssm:UpdateInstanceInformation, logs:CreateLogStream, ec2:CreateTags,
                              ec2:CreateNetworkInterface, kms:Decrypt, kms:GenerateDataKey
    credential_access    25   sts:AssumeRole, secretsmanager:GetSecretValue, ssm:GetParameter(s),
                              ecr:GetAuthorizationToken
    sensitive_read       22   iam:GetAccountAuthorizationDetails, iam:ListAccessKeys,
                              iam:ListAttachedUserPolicies, secretsmanager:ListSecrets,
                              s3:GetBucketPolicy, s3:GetBucketAcl, kms:GetKeyPolicy, cloudtrail:LookupEvents
    write                38   any other write (ec2 Run/Start/Stop/TerminateInstances, lambda code
                              updates, ecr:PutImage, cloudformation change sets, ssm:StartSession …)
    security_write       62   writes to IAM, STS, KMS, CloudTrail, Organizations; S3 bucket policy / ACL
                              / public access block; security group rules

    modifier                                                        points
    injected anomaly row (ground truth: an unseen network)           +45
    root user                                                        +25
    access denied (AccessDenied*, *UnauthorizedOperation)            +20
    other API error (throttling, not found)                          +4
    failed console sign-in                                           +18
    console sign-in without MFA (IAM user or root)                   +20
    off-hours for the principal's person (local time before 07:00
      or from 20:00, or a local weekend)                             +8
    rare principal/operation combination (prior share < 1 %)          +6
    noise                                                            N(0, 8)
    analyst disagreement (5 % of labels)                             ±U(20, 40)

The prior share of an operation for a principal is what the generator's channel catalogues give it
(channel weight × operation weight), so "rare" is a property of the estate, not of the sampled data.
Verdict from the final score: ``malicious`` at 70 or more, ``benign`` at 30 or less, else ``unsure``.

Rows are sorted by ``eventTime``, then ``eventID``. Each row is exactly matchable to the lake: ``eventID`` is the row's ``metadata.uid``, ``eventTime`` its
``time`` (ISO 8601 UTC with milliseconds), ``userIdentityArn`` the principal ARN as written (for failed
sign-ins, whose ARN is null, the ``arn:aws:iam::<account>:user/<name>`` or ``…:root`` the pair
extraction rebuilds; AWS service principals have none and leave it empty), ``eventSource`` /
``eventName`` are ``api.service.name`` / ``api.operation``, ``sourceIPAddress`` is ``src_endpoint.ip``,
``userAgent``, ``errorCode`` (``api.response.error``), ``recipientAccountId`` and ``awsRegion`` as in
the row.
"""

from __future__ import annotations

import csv
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seclake_ml.risk.columns import LABEL_CSV_COLUMNS, VERDICTS

from .gen_anomalies import AnomalyPlan
from .gen_cloudtrail import ct_tables
from .gen_common import DAY_MS, rng_for
from .gen_env import Environment, Site

__all__ = ["LABEL_FILE", "ANALYST", "NOTE", "LabelCollector", "op_class", "score_events", "CLASS_BASE"]

LABEL_FILE = "synthetic_risk_labels.csv"
ANALYST = "synthetic-policy"
NOTE = "SYNTHETIC: seclake_lakegen.gen_labels policy, not an analyst"

# ----------------------------------------------------------------------------- the policy
CLASS_BASE = {
    "signin": 15.0,
    "discovery": 8.0,
    "routine": 12.0,
    "credential_access": 25.0,
    "sensitive_read": 22.0,
    "write": 38.0,
    "security_write": 62.0,
}
_EXPLICIT_CLASS = {
    **dict.fromkeys(
        ("ssm:UpdateInstanceInformation", "logs:CreateLogStream", "ec2:CreateTags", "ec2:CreateNetworkInterface",
         "kms:Decrypt", "kms:GenerateDataKey"), "routine"),
    **dict.fromkeys(
        ("sts:AssumeRole", "secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParameters",
         "ecr:GetAuthorizationToken"), "credential_access"),
    **dict.fromkeys(
        ("iam:GetAccountAuthorizationDetails", "iam:ListAccessKeys", "iam:ListAttachedUserPolicies",
         "secretsmanager:ListSecrets", "s3:GetBucketPolicy", "s3:GetBucketAcl", "kms:GetKeyPolicy",
         "cloudtrail:LookupEvents"), "sensitive_read"),
}  # fmt: skip
_SECURITY_SERVICES = frozenset({"iam", "sts", "kms", "cloudtrail", "organizations"})
_SECURITY_WRITE_OPS = frozenset({
    "PutBucketPolicy", "DeleteBucketPolicy", "PutBucketAcl", "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock", "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "CreateSecurityGroup", "ModifySecurityGroupRules",
})  # fmt: skip
_READ_ACTIVITY = 2  # gen_env.ACTIVITY_PREFIXES: Describe / List / Get / Head / Lookup / Search / Filter

MOD_ANOMALY = 45.0
MOD_ROOT = 25.0
MOD_DENIED = 20.0
MOD_OTHER_ERROR = 4.0
MOD_SIGNIN_FAILED = 18.0
MOD_NO_MFA = 20.0
MOD_OFF_HOURS = 8.0
MOD_RARE = 6.0
NOISE_SD = 8.0
DISAGREE_P = 0.05
DISAGREE_RANGE = (20.0, 40.0)
RARE_SHARE = 0.01
OFF_HOURS = (7.0, 20.0)  # working from 07:00 to 20:00 local, Monday to Friday

P_ROOT, P_SECURITY_WRITE, P_NO_MFA, P_RARE, P_FAILED, P_WRITE = 1.0, 0.9, 0.8, 0.6, 0.5, 0.5
P_SIGNIN, P_SENSITIVE_READ, P_OFF_HOURS, P_CREDENTIAL, P_OTHER = 0.4, 0.3, 0.15, 0.12, 0.08
_CLASS_P = {"security_write": P_SECURITY_WRITE, "write": P_WRITE, "sensitive_read": P_SENSITIVE_READ,
            "credential_access": P_CREDENTIAL, "signin": P_SIGNIN}  # fmt: skip

MALICIOUS_AT, BENIGN_AT = 70, 30
_S_LABELS = 21  # random stream key (generate.py uses 11-14)
_KIND_KEY = {"signin": 1, "api": 2}


def op_class(service: str, operation: str, activity: int) -> str:
    """The policy's operation class of ``service`` (``iam.amazonaws.com``) and ``operation``."""
    prefix = service.split(".", 1)[0]
    explicit = _EXPLICIT_CLASS.get(f"{prefix}:{operation}")
    if explicit:
        return explicit
    if activity == _READ_ACTIVITY:
        return "discovery"
    if prefix in _SECURITY_SERVICES or operation in _SECURITY_WRITE_OPS:
        return "security_write"
    return "write"


def verdict_of(score: np.ndarray) -> np.ndarray:
    """``malicious`` (>= 70), ``benign`` (<= 30) or ``unsure``."""
    return np.where(score >= MALICIOUS_AT, "malicious", np.where(score <= BENIGN_AT, "benign", "unsure"))


def score_events(rng: np.random.Generator, f: dict[str, np.ndarray]) -> np.ndarray:
    """Integer scores 0-100 for events with features ``f`` (arrays of one length):

    ``base`` (float, from :data:`CLASS_BASE`), bools ``anomaly``, ``root``, ``denied``, ``other_error``,
    ``signin_failed``, ``no_mfa``, ``off_hours``, ``rare``.
    """
    n = len(f["base"])
    s = f["base"].astype(np.float64).copy()
    s += MOD_ANOMALY * f["anomaly"] + MOD_ROOT * f["root"] + MOD_DENIED * f["denied"]
    s += MOD_OTHER_ERROR * f["other_error"] + MOD_SIGNIN_FAILED * f["signin_failed"] + MOD_NO_MFA * f["no_mfa"]
    s += MOD_OFF_HOURS * f["off_hours"] + MOD_RARE * f["rare"]
    s += rng.normal(0.0, NOISE_SD, size=n)
    disagree = rng.random(n) < DISAGREE_P
    shift = rng.uniform(*DISAGREE_RANGE, size=n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    s = np.where(disagree, s + shift, s)
    return np.clip(np.rint(s), 0, 100).astype(np.int64)


# ----------------------------------------------------------------------------- collecting
class _Policy:
    """Per-environment lookup arrays of the policy (built once)."""

    def __init__(self, env: Environment, plan: AnomalyPlan) -> None:
        t = ct_tables(env)
        cat = env.catalog
        n_ops = len(cat.op_service)
        classes = [
            op_class(cat.service[int(cat.op_service[o])], cat.operation[int(cat.op_operation[o])], int(cat.op_activity[o]))
            for o in range(n_ops)
        ]
        self.op_base = np.array([CLASS_BASE[c] for c in classes], dtype=np.float64)
        self.op_p = np.array([_CLASS_P.get(c, P_OTHER) for c in classes], dtype=np.float64)
        codes = [c for c, _ in cat.errors]
        self.err_denied = np.array(["AccessDenied" in c or "UnauthorizedOperation" in c for c in codes] + [False], dtype=bool)
        # prior share of each operation in each principal's calls (channel weight x operation weight)
        prior = np.zeros((len(env.principals), n_ops), dtype=np.float64)
        for ch in env.channels:
            ops = cat.cat_ops[ch.catalog]
            w = np.diff(np.concatenate([[0.0], cat.cat_cum[ch.catalog]]))
            np.add.at(prior[ch.principal], ops, ch.weight * w / w.sum())
        tot = prior.sum(axis=1, keepdims=True)
        self.prior = np.divide(prior, tot, out=np.zeros_like(prior), where=tot > 0)
        self.is_root = np.array([p.type == "Root" for p in env.principals], dtype=bool)
        self.no_mfa_type = np.array([p.type in ("IAMUser", "Root") for p in env.principals], dtype=bool)
        self.p_human = t.p_human
        self.h_tz = t.h_tz
        # injected anomaly rows: (principal, CloudTrail address) pairs of the ground truth
        arn_to_p = {p.arn: i for i, p in enumerate(env.principals) if p.arn}
        keys = []
        for row in plan.truth:
            if row["source"].startswith("cloudtrail") and row["entity"] in arn_to_p:
                keys.append(arn_to_p[row["entity"]] * (1 << 32) + env.ct_ips.index(row["ip"]))
        self.anomaly_keys = np.array(sorted(set(keys)), dtype=np.int64)

    def off_hours(self, principal: np.ndarray, times: np.ndarray) -> np.ndarray:
        human = self.p_human[principal]
        tz_ms = (self.h_tz[np.maximum(human, 0)] * 3_600_000.0).astype(np.int64)
        local = times + tz_ms
        hour = (local % DAY_MS) / 3_600_000.0
        weekday = (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday (3)
        off = (hour < OFF_HOURS[0]) | (hour >= OFF_HOURS[1]) | (weekday >= 5)
        return off & (human >= 0)

    def anomaly(self, principal: np.ndarray, ip: np.ndarray) -> np.ndarray:
        if not len(self.anomaly_keys):
            return np.zeros(len(principal), dtype=bool)
        key = principal.astype(np.int64) * (1 << 32) + np.maximum(ip, 0).astype(np.int64)
        return np.isin(key, self.anomaly_keys) & (ip >= 0)


def _leaf(table: pa.Table, path: str) -> pa.Array:
    """Column ``a.b.c`` of a generated table (one chunk; structs without nulls of their own)."""
    first, *rest = path.split(".")
    col = table.column(first)
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    for name in rest:
        arr = arr.field(name) if arr.null_count == 0 else pc.struct_field(arr, [name])
    return arr


class LabelCollector:
    """Collects label rows chunk by chunk (thread-safe) and writes the CSV."""

    def __init__(self, env: Environment, plan: AnomalyPlan, seed: int, version: int) -> None:
        self.env = env
        self.seed = seed
        self.version = version
        self._policy: _Policy | None = None
        self._plan = plan
        self._parts: dict[tuple[int, int, int, int], _Part] = {}
        self._lock = threading.Lock()

    def _pol(self) -> _Policy:
        with self._lock:
            if self._policy is None:
                self._policy = _Policy(self.env, self._plan)
            return self._policy

    # ---------------------------------------------------------------- per chunk
    def add_signins(self, site_index: int, day: int, chunk: int, site: Site, spec: dict[str, np.ndarray], table: pa.Table) -> None:
        pol = self._pol()
        principal, times = spec["principal"], spec["time"]
        n = len(times)
        ok = spec["success"]
        anomaly = pol.anomaly(principal, spec["ip"])
        root = pol.is_root[principal]
        no_mfa = ok & ~spec["mfa"] & pol.no_mfa_type[principal]
        off = pol.off_hours(principal, times)
        failed = ~ok
        feats = {
            "base": np.full(n, CLASS_BASE["signin"]), "anomaly": anomaly, "root": root,
            "denied": np.zeros(n, bool), "other_error": np.zeros(n, bool), "signin_failed": failed,
            "no_mfa": no_mfa, "off_hours": off, "rare": np.zeros(n, bool),
        }  # fmt: skip
        p = np.full(n, P_SIGNIN)
        p = np.maximum(p, np.where(no_mfa, P_NO_MFA, 0.0))
        p = np.maximum(p, np.where(failed, P_FAILED, 0.0))
        p = np.maximum(p, np.where(off, P_OFF_HOURS, 0.0))
        p = np.where(root, P_ROOT, p)
        p = np.where(anomaly, 1.0, p)
        self._keep("signin", site_index, day, chunk, site, table, feats, p, anomaly)

    def add_api(self, site_index: int, day: int, chunk: int, site: Site, spec: dict[str, np.ndarray], table: pa.Table) -> None:
        pol = self._pol()
        principal, op, err, times = spec["principal"], spec["op"], spec["error"], spec["time"]
        n = len(times)
        anomaly = pol.anomaly(principal, spec["ip"])
        root = pol.is_root[principal]
        failed = err >= 0
        denied = failed & pol.err_denied[np.where(failed, err, -1)]
        rare = pol.prior[principal, op] < RARE_SHARE
        off = pol.off_hours(principal, times)
        feats = {
            "base": pol.op_base[op], "anomaly": anomaly, "root": root, "denied": denied,
            "other_error": failed & ~denied, "signin_failed": np.zeros(n, bool), "no_mfa": np.zeros(n, bool),
            "off_hours": off, "rare": rare,
        }  # fmt: skip
        p = pol.op_p[op].copy()
        p = np.maximum(p, np.where(rare, P_RARE, 0.0))
        p = np.maximum(p, np.where(failed, P_FAILED, 0.0))
        p = np.maximum(p, np.where(off, P_OFF_HOURS, 0.0))
        p = np.where(root, P_ROOT, p)
        p = np.where(anomaly, 1.0, p)
        self._keep("api", site_index, day, chunk, site, table, feats, p, anomaly)

    def _keep(self, kind, site_index, day, chunk, site: Site, table: pa.Table, feats, p, anomaly) -> None:
        rng = rng_for(self.seed, _S_LABELS, _KIND_KEY[kind], site_index, day, chunk)
        n = len(p)
        idx = np.nonzero(rng.random(n) < p)[0]
        scores = score_events(rng, {k: v[idx] for k, v in feats.items()})
        take = pa.array(idx, type=pa.int64())

        def leaf(path: str) -> list:
            """The written values of ``path`` in the labelled rows (None for null)."""
            return _leaf(table, path).take(take).to_numpy(zero_copy_only=False).tolist()

        v1 = self.version == 1
        principal = leaf("actor.user.uuid" if v1 else "actor.user.uid")
        if None in principal:  # as the pair extraction rebuilds it (seclake_ml.sources._principal)
            acct = leaf("actor.user.account_uid" if v1 else "actor.user.account.uid")
            pid = leaf("actor.user.uid" if v1 else "actor.user.uid_alt")
            utype, uname = leaf("actor.user.type"), leaf("actor.user.name")
            for r, arn in enumerate(principal):
                if arn is None:
                    if utype[r] == "IAMUser" and acct[r] and uname[r]:
                        principal[r] = f"arn:aws:iam::{acct[r]}:user/{uname[r]}"
                    elif utype[r] == "Root" and acct[r]:
                        principal[r] = f"arn:aws:iam::{acct[r]}:root"
                    else:
                        principal[r] = pid[r]
        k = len(idx)
        t_ms = table.column("time").to_numpy()[idx].astype(np.int64)
        event_id = leaf("metadata.uid")
        verdict = verdict_of(scores)
        when = np.datetime_as_string(t_ms.astype("datetime64[ms]"), unit="ms").tolist()
        out = {
            "eventID": event_id,
            "eventTime": [w + "Z" for w in when],
            "userIdentityArn": principal,
            "eventSource": leaf("api.service.name"),
            "eventName": leaf("api.operation"),
            "sourceIPAddress": leaf("src_endpoint.ip"),
            "userAgent": leaf("http_request.user_agent"),
            "errorCode": leaf("api.response.error"),
            "recipientAccountId": itertools.repeat(site.account, k),
            "awsRegion": leaf("cloud.region"),
            "riskScore": scores.tolist(),
            "verdict": verdict.tolist(),
            "analyst": itertools.repeat(ANALYST, k),
            "note": itertools.repeat(NOTE, k),
        }
        # format the CSV lines here (None is written as ""), in the worker thread, so the final write only
        # merges them
        lines = _Lines()
        csv.writer(lines, lineterminator="\n").writerows(zip(*(out[c] for c in LABEL_CSV_COLUMNS)))
        part = _Part(kind, n, t_ms, event_id, lines, scores, verdict, anomaly[idx])
        with self._lock:
            self._parts[(_KIND_KEY[kind], site_index, day, chunk)] = part

    # ---------------------------------------------------------------- output
    def write(self, path: Path) -> dict[str, Any]:
        """Write the CSV (rows sorted by eventTime, then eventID) and return the manifest entry."""
        with self._lock:
            parts = [self._parts[k] for k in sorted(self._parts)]
        by_kind = {"signin": 0, "api": 0}
        for part in parts:
            by_kind[part.kind] += len(part.lines)
        total = sum(part.rows for part in parts)

        def cat(name: str, dtype) -> np.ndarray:
            arrays = [getattr(part, name) for part in parts]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

        times, scores, verdict = cat("time", np.int64), cat("scores", np.int64), cat("verdict", str)
        is_anomaly = cat("anomaly", bool)
        ids = np.array([e for part in parts for e in part.event_id], dtype=str)
        lines = [line for part in parts for line in part.lines]
        order = np.lexsort((ids, times)) if len(lines) else np.zeros(0, np.int64)
        n = len(lines)
        header = _Lines()
        csv.writer(header, lineterminator="\n").writerow(LABEL_CSV_COLUMNS)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(header[0])
            fh.write("".join([lines[i] for i in order.tolist()]))
        tmp.replace(path)
        return {
            "file": path.name,
            "analyst": ANALYST,
            "synthetic": True,
            "rows": n,
            "rows_by_kind": by_kind,
            "anomaly_rows": int(is_anomaly.sum()),
            "cloudtrail_rows": total,
            "labelled_share": round(n / total, 4) if total else 0.0,
            "verdicts": {v: int((verdict == v).sum()) for v in VERDICTS},
            "mean_score": {
                "anomaly": round(float(scores[is_anomaly].mean()), 2) if is_anomaly.any() else None,
                "other": round(float(scores[~is_anomaly].mean()), 2) if (~is_anomaly).any() else None,
            },
        }


class _Lines(list):
    """A file-like sink for :func:`csv.writer` that keeps each formatted line."""

    write = list.append


@dataclass
class _Part:
    kind: str
    rows: int  # CloudTrail rows of the chunk
    time: np.ndarray  # of the labelled rows
    event_id: list[str]
    lines: _Lines  # CSV lines
    scores: np.ndarray
    verdict: np.ndarray
    anomaly: np.ndarray
