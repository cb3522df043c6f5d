"""Inject attack CloudTrail sequences into one day of a sample lake, to evaluate a risk scorer.

:func:`inject_attacks` reads the lake's own CloudTrail (API and sign-in files of the days before the
target day) to learn who is active, from where, with which user agents and on which resources; it then
picks victims among those principals and writes, per scenario, a short sequence of API Activity rows
(3005 in source version 1, 6003 in version 2; console sign-ins 3002 where a scenario starts with one)
as additional Parquet files in the day's partitions, with exactly the schema of the partition's
existing files of the same kind. The scenarios are written for this harness (their text and event
lists are ours; only public AWS API names and technique names are used).

Ground truth goes to ``<root>/ground_truth/attacks/<YYYYMMDD>.parquet`` (one row per injected event)
and ``<YYYYMMDD>.json`` (arguments and the files written). The injected file names look like the
generator's (``api-<day>-<token>-0000.gz.parquet``) and do not depend on the seed, so a rerun for the
same day first removes the files of the previous run (listed in the JSON) and then writes anew.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import ocsf_schemas as O
from .gen_common import assemble, day_start_ms, stable_token
from .gen_env import ACTIVITY_NAMES, activity_of

__all__ = ["inject_attacks", "SCENARIOS", "TRUTH_SCHEMA"]

CT = "CLOUD_TRAIL_MGMT"
HISTORY_DAYS = 14
CONSOLE_URL = "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true"
EXTERNAL_ACCOUNTS = ("491820357716", "808431970215", "136902548871")
UNUSUAL_REGIONS = ("ap-southeast-1", "sa-east-1", "ap-northeast-3", "me-south-1")

TRUTH_SCHEMA = pa.schema([
    pa.field("uid", pa.string(), False),
    pa.field("time", pa.timestamp("ms", tz="UTC"), False),
    pa.field("scenario", pa.string(), False),
    pa.field("technique", pa.string(), False),
    pa.field("principal", pa.string()),
    pa.field("source_ip", pa.string(), False),
    pa.field("from_known_ip", pa.bool_(), False),
    pa.field("victim", pa.string(), False),
    pa.field("account", pa.string(), False),
    pa.field("region", pa.string(), False),
    pa.field("class_uid", pa.int32(), False),
    pa.field("operation", pa.string(), False),
    pa.field("status", pa.string(), False),
    pa.field("step", pa.int32(), False),
])  # fmt: skip

# attacker tooling (SDKs and CLIs as they sign their requests)
TOOL_AGENTS = (
    "Boto3/1.34.103 md/Botocore#1.34.103 ua/2.0 os/linux#6.8.0-31-generic md/arch#x86_64 lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.103",
    "aws-cli/1.22.34 Python/3.11.2 Linux/6.5.0-kali3-amd64 botocore/1.31.34",
    "aws-sdk-go/1.44.327 (go1.20.7; linux; amd64)",
    "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64 api/iam#1.28.5",
    "Boto3/1.26.137 Python/3.10.12 Linux/5.15.0-1040-azure Botocore/1.29.137",
    "aws-cli/2.15.58 md/awscrt#0.19.19 ua/2.0 os/linux#6.1.0-21-cloud-amd64 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#debian.12 md/prompt#off",
    "Boto3/1.28.62 md/Botocore#1.31.62 ua/2.0 os/windows#10 md/arch#amd64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.31.62",
)
ATTACKER_BROWSERS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36 Edg/118.0.2088.46",
)
LAMBDA_AGENT = ("Boto3/1.34.42 md/Botocore#1.34.42 ua/2.0 os/linux#5.10.214-223.855.amzn2.x86_64 md/arch#x86_64 "
                "lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.42")
# public address blocks an attacker's VPS or proxy might come from (first two octets)
_NEW_NETS = ((45, 137), (185, 220), (193, 142), (5, 188), (104, 244), (91, 219), (146, 70), (38, 180))
_LAMBDA_NETS = ((3, 238), (54, 161), (44, 202))
_PRIVATE = re.compile(r"^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|127\.|169\.254\.)")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_VERSIONED = re.compile(r"20\d{6}(v\d)?$")  # lambda's CreateFunction20150331 -> lambda:CreateFunction


# ----------------------------------------------------------------------------- lake history
@dataclass
class Principal:
    arn: str
    type: str
    name: str | None
    pid: str | None
    account: str
    issuer: str | None
    events: int
    ips: list[tuple[str, int]]  # public addresses, most used first
    uas: list[tuple[str, int]]
    regions: list[tuple[str, int]]
    hours: np.ndarray  # (24,) counts
    akia: str | None = None
    console: bool = False
    console_mfa: bool = False
    browser: str | None = None

    @property
    def machine(self) -> bool:
        return self.type == "AssumedRole" and not (self.pid or "").endswith(".com") and "AWSReservedSSO" not in (self.name or "")


@dataclass
class History:
    principals: dict[str, Principal]
    all_ips: set[str]
    resources: dict[tuple[str, str], list[str]]  # (account, type) -> resource uids, most used first
    roles: dict[str, list[str]]  # account -> role ARNs
    users: dict[str, list[str]]  # account -> IAM user names


def _ct_base(root: Path, version: int) -> Path:
    return root / "aws" / CT / f"{version}.0"


def _day_partitions(root: Path, version: int, stamp: str) -> dict[tuple[str, str], Path]:
    out = {}
    for p in sorted(_ct_base(root, version).glob(f"region=*/accountId=*/eventDay={stamp}")):
        if p.is_dir():
            out[(p.parent.name.split("=", 1)[1], p.parent.parent.name.split("=", 1)[1])] = p
    return out  # (account, region) -> folder


def _is_auth(schema: pa.Schema) -> bool:
    return "user" in schema.names and "resources" not in schema.names


def _injected_files(root: Path) -> set[Path]:
    out: set[Path] = set()
    base = root / "ground_truth" / "attacks"
    for m in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            out.update((root / f).resolve() for f in json.loads(m.read_text()).get("files", []))
        except (ValueError, OSError):
            continue
    return out


def _lake_files(root: Path, version: int, lo: str, hi: str) -> tuple[list[str], list[str]]:
    """CloudTrail API and sign-in files of days ``lo <= eventDay < hi`` (not injected ones)."""
    skip = _injected_files(root)
    api, auth = [], []
    for p in sorted(_ct_base(root, version).glob("region=*/accountId=*/eventDay=*/*.parquet")):
        d = p.parent.name.split("=", 1)[1]
        if not (lo <= d < hi) or p.name.startswith(".") or p.resolve() in skip:
            continue
        (auth if _is_auth(pq.read_schema(p)) else api).append(str(p))
    return api, auth


def _paths(version: int) -> dict[str, tuple[str, ...]]:
    if version == 1:
        return {"arn": ("actor", "user", "uuid"), "pid": ("actor", "user", "uid"), "account": ("actor", "user", "account_uid")}
    return {"arn": ("actor", "user", "uid"), "pid": ("actor", "user", "uid_alt"), "account": ("actor", "user", "account", "uid")}


def _top(t: pa.Table, key: str, val: str) -> dict[str, list[tuple[str, int]]]:
    g = t.group_by([key, val]).aggregate([([], "count_all")])
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for k, v, n in zip(g[key].to_pylist(), g[val].to_pylist(), g["count_all"].to_pylist()):
        if k is not None and v is not None:
            out[k].append((v, n))
    for k in out:
        out[k].sort(key=lambda x: (-x[1], x[0]))
    return out


def read_history(root: Path, version: int, day: _dt.date, days: int = HISTORY_DAYS) -> History:
    lo = (day - _dt.timedelta(days=days)).strftime("%Y%m%d")
    api_files, auth_files = _lake_files(root, version, lo, day.strftime("%Y%m%d"))
    P = _paths(version)
    cols = {k: pc.field(*v) for k, v in P.items()}
    cols |= {
        "type": pc.field("actor", "user", "type"), "name": pc.field("actor", "user", "name"),
        "cred": pc.field("actor", "user", "credential_uid"), "issuer": pc.field("actor", "session", "issuer"),
        "ip": pc.field("src_endpoint", "ip"), "ua": pc.field("http_request", "user_agent"),
        "region": pc.field("cloud", "region"), "time": pc.field("time"),
    }  # fmt: skip
    tables = []
    if api_files:
        tables.append(ds.dataset(api_files, format="parquet").to_table(columns=cols))
    auth = None
    if auth_files:
        acols = cols | {"mfa": pc.field("mfa" if version == 1 else "is_mfa"), "ok": pc.field("status_id")}
        auth = ds.dataset(auth_files, format="parquet").to_table(columns=acols)
        tables.append(auth.drop_columns(["mfa", "ok"]))
    if not tables:
        return History({}, set(), {}, {}, {})
    t = pa.concat_tables(tables)
    t = t.filter(pc.is_valid(t["arn"]))
    hour = pa.array((t["time"].to_numpy(zero_copy_only=False) // 3_600_000) % 24, type=pa.int64())
    t = t.append_column("hour", hour)
    all_ips = set(x for x in pc.unique(t["ip"]).to_pylist() if x)
    public = t.filter(pc.invert(pc.match_substring_regex(pc.fill_null(t["ip"], "10."), _PRIVATE.pattern)))
    ips, uas, regions, hours = _top(public, "arn", "ip"), _top(t, "arn", "ua"), _top(t, "arn", "region"), _top(t, "arn", "hour")
    akia_t = t.filter(pc.starts_with(pc.fill_null(t["cred"], ""), "AKIA"))
    akias = _top(akia_t, "arn", "cred")
    first = t.group_by("arn", use_threads=False).aggregate([("type", "first"), ("name", "first"), ("pid", "first"), ("account", "first"),
                                         ("issuer", "first"), ([], "count_all")])  # fmt: skip
    console: dict[str, tuple[bool, str | None]] = {}
    if auth is not None:
        ok = auth.filter(pc.and_(pc.equal(auth["ok"], 1), pc.is_valid(auth["arn"])))
        mfa = _top(ok, "arn", "mfa")
        browsers = _top(ok, "arn", "ua")
        for a in mfa:
            console[a] = (any(v for v, _ in mfa[a]), browsers[a][0][0] if browsers.get(a) else None)
    principals: dict[str, Principal] = {}
    for row in first.to_pylist():
        arn = row["arn"]
        h = np.zeros(24)
        for hr, n in hours.get(arn, []):
            h[int(hr) % 24] += n
        c = console.get(arn)
        principals[arn] = Principal(
            arn=arn, type=row["type_first"] or "", name=row["name_first"], pid=row["pid_first"],
            account=row["account_first"] or "", issuer=row["issuer_first"], events=row["count_all"],
            ips=ips.get(arn, []), uas=uas.get(arn, []), regions=regions.get(arn, []), hours=h,
            akia=akias[arn][0][0] if akias.get(arn) else None, console=c is not None,
            console_mfa=bool(c and c[0]), browser=c[1] if c else None,
        )  # fmt: skip
    resources: dict[tuple[str, str], list[str]] = {}
    if api_files:
        r = ds.dataset(api_files, format="parquet").to_table(columns=["resources"])["resources"]
        flat = pc.list_flatten(r)
        if len(flat):
            rt = pa.table({"type": pc.struct_field(flat, "type"), "uid": pc.struct_field(flat, "uid")})
            for typ, lst in _top(rt, "type", "uid").items():
                for uid, _ in lst:
                    acct = _account_of_arn(uid)
                    if acct:
                        resources.setdefault((acct, typ), []).append(uid)
    roles: dict[str, set[str]] = defaultdict(set)
    users: dict[str, set[str]] = defaultdict(set)
    for p in principals.values():
        if p.issuer and ":role/" in p.issuer and "aws-reserved" not in p.issuer and "aws-service-role" not in p.issuer:
            roles[p.account].add(p.issuer)
        if p.type == "IAMUser" and p.name:
            users[p.account].add(p.name)
    for (acct, typ), lst in resources.items():
        if typ == "AWS::IAM::Role":
            roles[acct].update(lst)
    return History(principals, all_ips, resources, {k: sorted(v) for k, v in roles.items()},
                   {k: sorted(v) for k, v in users.items()})


def _account_of_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and _ACCOUNT_RE.match(parts[4]) else None


# ----------------------------------------------------------------------------- scenario building blocks
@dataclass
class Actor:
    arn: str | None
    pid: str | None
    name: str | None
    type: str
    account: str
    cred: str | None
    issuer: str | None = None
    session: bool = False
    mfa: bool = False
    created_ms: int | None = None


@dataclass
class Event:
    t: float  # seconds after the scenario start
    service: str  # "iam" -> iam.amazonaws.com
    operation: str
    technique: str
    error: str | None = None
    message: str | None = None
    resources: tuple[tuple[str, str], ...] = ()  # (uid, type)
    actor: Actor | None = None  # None = the victim's stolen identity
    region: str | None = None
    ua: str | None = None
    ip: str | None = None
    signin: bool = False
    mfa: bool = False


@dataclass
class Ctx:
    """What a scenario may use: the victim, the lake's resources, a random stream, helpers."""

    rng: np.random.Generator
    victim: Principal
    actor: Actor
    region: str
    regions: list[str]  # regions with a partition for the victim's account that day
    hist: History
    start_ms: int
    ua: str  # the agent the attacker uses this time
    tool_ua: str
    ip: str
    new_ip: Callable[[tuple[tuple[int, int], ...]], str]

    @property
    def account(self) -> str:
        return self.victim.account

    def pick(self, seq, k: int | None = None):
        seq = list(seq)
        if k is None:
            return seq[int(self.rng.integers(0, len(seq)))]
        idx = self.rng.permutation(len(seq))[: min(k, len(seq))]
        return [seq[i] for i in sorted(idx)]

    def resources(self, typ: str, k: int, fallback: Callable[[int], str]) -> list[str]:
        have = self.hist.resources.get((self.account, typ), [])
        got = self.pick(have, k) if have else []
        i = 0
        while len(got) < k:
            got.append(fallback(i))
            i += 1
        return got

    def hexid(self, n: int) -> str:
        return "".join("0123456789abcdef"[int(x)] for x in self.rng.integers(0, 16, size=n))

    def upper(self, prefix: str, n: int = 16) -> str:
        return prefix + "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[int(x)] for x in self.rng.integers(0, 32, size=n))

    def other_users(self, k: int) -> list[str]:
        mine = self.victim.name if self.victim.type == "IAMUser" else None
        cands = [u for u in self.hist.users.get(self.account, []) if u != mine]
        got = self.pick(cands, k) if cands else []
        fallback = ["svc-deploy", "backup-operator", "ci-runner", "reporting"]
        for f in fallback:
            if len(got) >= k:
                break
            if f not in got:
                got.append(f)
        return got

    def role(self, prefer: tuple[str, ...] = ("admin", "ops", "deploy", "terraform")) -> str:
        roles = self.hist.roles.get(self.account, [])
        strong = [r for r in roles if any(w in r.lower() for w in prefer)]
        if strong:
            return self.pick(strong)
        if roles:
            return self.pick(roles)
        return f"arn:aws:iam::{self.account}:role/OrganizationAccountAccessRole"

    def user_actor(self, name: str, akia: str | None = None) -> Actor:
        arn = f"arn:aws:iam::{self.account}:user/{name}"
        known = self.hist.principals.get(arn)
        pid = known.pid if known is not None and known.pid else self.upper("AIDA")
        return Actor(arn, pid, name, "IAMUser", self.account, akia or self.upper("AKIA"))

    def role_actor(self, role_arn: str, session_name: str, t_ms: int) -> Actor:
        rname = role_arn.rsplit("/", 1)[-1]
        return Actor(f"arn:aws:sts::{self.account}:assumed-role/{rname}/{session_name}", f"{self.upper('AROA')}:{session_name}",
                     rname, "AssumedRole", self.account, self.upper("ASIA"), role_arn, True, False, t_ms)  # fmt: skip

    def denied(self, service: str, operation: str, resource: str | None = None, actor_arn: str | None = None) -> tuple[str, str]:
        arn = actor_arn or self.actor.arn or ""
        if service == "ec2":
            return "Client.UnauthorizedOperation", "You are not authorized to perform this operation."
        action = f"{service}:{_VERSIONED.sub('', operation)}"
        on = f" on resource: {resource}" if resource else ""
        code = "AccessDeniedException" if service in ("cloudtrail", "guardduty", "config", "kms", "secretsmanager", "lambda", "ssm", "dynamodb", "logs", "ecr", "eks") else "AccessDenied"
        return code, f"User: {arn} is not authorized to perform: {action}{on} because no identity-based policy allows the {action} action"


def _gaps(ctx: Ctx, n: int, lo: float, hi: float, start: float = 0.0) -> list[float]:
    """``n`` increasing offsets (seconds) with gaps drawn in [lo, hi]."""
    return list(start + np.cumsum(ctx.rng.uniform(lo, hi, size=n)).round(0))


# ----------------------------------------------------------------------------- scenarios
T_SECRETS = "credential access: secretsmanager ListSecrets + GetSecretValue burst (T1555.006)"
T_SSM = "credential access: ssm GetParameters WithDecryption (T1552)"
T_DISC = "discovery: enumeration across services (T1580/T1087.004)"


def sc_secrets_harvest(ctx: Ctx) -> list[Event]:
    n = int(ctx.rng.integers(7, 13))
    secrets = ctx.resources("AWS::SecretsManager::Secret", n, lambda i: f"arn:aws:secretsmanager:{ctx.region}:{ctx.account}:secret:"
                            f"{['prod/db', 'prod/stripe', 'staging/db', 'ci/github', 'prod/smtp', 'prod/jwt', 'vendor/api', 'prod/redis'][i % 8]}"
                            f"-{['password', 'token', 'key'][i % 3]}-{ctx.hexid(6)}")  # fmt: skip
    ev = [Event(0, "sts", "GetCallerIdentity", T_DISC), Event(4, "secretsmanager", "ListSecrets", T_SECRETS)]
    ts = _gaps(ctx, n, 1, 6, 8)
    for i, (t, s) in enumerate(zip(ts, secrets)):
        e = Event(t, "secretsmanager", "GetSecretValue", T_SECRETS, resources=((s, "AWS::SecretsManager::Secret"),))
        if i % 4 == 3:
            e.error, e.message = ctx.denied("secretsmanager", "GetSecretValue", s)
        ev.append(e)
    t0 = ts[-1] + ctx.rng.uniform(20, 120)
    ev.append(Event(t0, "ssm", "DescribeParameters", T_SSM))
    for j, t in enumerate(_gaps(ctx, 4, 2, 8, t0)):
        ev.append(Event(t, "ssm", "GetParameters" if j % 2 == 0 else "GetParametersByPath", T_SSM))
    keys = ctx.resources("AWS::KMS::Key", 1, lambda i: f"arn:aws:kms:{ctx.region}:{ctx.account}:key/{ctx.hexid(8)}-{ctx.hexid(4)}-{ctx.hexid(4)}-{ctx.hexid(4)}-{ctx.hexid(12)}")
    ev.append(Event(ev[-1].t + 3, "kms", "Decrypt", T_SSM, resources=((keys[0], "AWS::KMS::Key"),)))
    return ev


def sc_access_key_other_user(ctx: Ctx) -> list[Event]:
    tech = "persistence: iam:CreateAccessKey for another user (T1098.001)"
    target = ctx.other_users(1)[0]
    tarn = f"arn:aws:iam::{ctx.account}:user/{target}"
    new_key = ctx.upper("AKIA")
    ev = [Event(0, "iam", "ListUsers", T_DISC), Event(6, "iam", "ListAccessKeys", tech, resources=((tarn, "AWS::IAM::User"),)),
          Event(15, "iam", "CreateAccessKey", tech, resources=((tarn, "AWS::IAM::User"),))]
    # the new key is used from the same place a few minutes later
    acting = ctx.user_actor(target, new_key)
    t = 15 + ctx.rng.uniform(120, 600)
    for k, (svc, op) in enumerate([("sts", "GetCallerIdentity"), ("iam", "GetUser"), ("s3", "ListBuckets"),
                                   ("ec2", "DescribeInstances"), ("iam", "ListAttachedUserPolicies")]):  # fmt: skip
        ev.append(Event(t + 5 * k, svc, op, tech, actor=acting, ua=ctx.tool_ua))
    return ev


def sc_login_profile_backdoor(ctx: Ctx) -> list[Event]:
    tech_c = "persistence: iam:CreateLoginProfile for another user (T1098)"
    tech_u = "persistence: iam:UpdateLoginProfile for another user (T1098)"
    a, b = ctx.other_users(2)
    ev = [Event(0, "iam", "ListUsers", T_DISC)]
    ua, ub = f"arn:aws:iam::{ctx.account}:user/{a}", f"arn:aws:iam::{ctx.account}:user/{b}"
    e = Event(9, "iam", "GetLoginProfile", tech_c, resources=((ua, "AWS::IAM::User"),))
    e.error, e.message = "NoSuchEntityException", f"Login Profile for User {a} cannot be found."
    ev += [e, Event(14, "iam", "CreateLoginProfile", tech_c, resources=((ua, "AWS::IAM::User"),)),
           Event(40, "iam", "UpdateLoginProfile", tech_u, resources=((ub, "AWS::IAM::User"),))]
    acting = ctx.user_actor(a)
    acting.cred = None
    t = 40 + ctx.rng.uniform(300, 1500)
    ev.append(Event(t, "signin", "ConsoleLogin", tech_c, actor=acting, ua=ATTACKER_BROWSERS[0], signin=True))
    sess = replace(acting, cred=ctx.upper("ASIA"), session=True, mfa=False, created_ms=ctx.start_ms + int(t * 1000))
    for k, (svc, op) in enumerate([("iam", "ListUsers"), ("iam", "ListRoles"), ("s3", "ListBuckets"), ("ec2", "DescribeInstances")]):
        ev.append(Event(t + 20 + 15 * k, svc, op, tech_c, actor=sess, ua=f"console.{svc}.amazonaws.com"))
    return ev


def sc_admin_user_backdoor(ctx: Ctx) -> list[Event]:
    tech = "persistence: iam:CreateUser + AttachUserPolicy AdministratorAccess (T1136.003)"
    name = ctx.pick(["support-admin", "aws-health-monitor", "svc-backup2", "devops-temp", "s3-replication"])
    uarn = f"arn:aws:iam::{ctx.account}:user/{name}"
    res = ((uarn, "AWS::IAM::User"),)
    ev = [Event(0, "iam", "ListUsers", T_DISC), Event(7, "iam", "CreateUser", tech, resources=res),
          Event(12, "iam", "AttachUserPolicy", tech, resources=res + (("arn:aws:iam::aws:policy/AdministratorAccess", "AWS::IAM::ManagedPolicy"),)),
          Event(16, "iam", "CreateAccessKey", tech, resources=res), Event(21, "iam", "CreateLoginProfile", tech, resources=res)]
    acting = ctx.user_actor(name)
    t = 21 + ctx.rng.uniform(60, 400)
    for k, (svc, op) in enumerate([("sts", "GetCallerIdentity"), ("iam", "ListAttachedUserPolicies"), ("s3", "ListBuckets"),
                                   ("ec2", "DescribeRegions"), ("secretsmanager", "ListSecrets")]):  # fmt: skip
        ev.append(Event(t + 4 * k, svc, op, tech, actor=acting, ua=ctx.tool_ua))
    return ev


def sc_role_trust_backdoor(ctx: Ctx) -> list[Event]:
    tech = "persistence: iam:UpdateAssumeRolePolicy trusting an external account (T1098.003)"
    role = ctx.role()
    ext = ctx.pick(EXTERNAL_ACCOUNTS)
    res = ((role, "AWS::IAM::Role"),)
    ev = [Event(0, "iam", "ListRoles", T_DISC), Event(10, "iam", "GetRole", tech, resources=res),
          Event(18, "iam", "ListAttachedRolePolicies", tech, resources=res),
          Event(30, "iam", "UpdateAssumeRolePolicy", tech, resources=res)]
    ext_actor = Actor(None, ctx.upper("AIDA"), None, "AWSAccount", ext, None)
    t = 30 + ctx.rng.uniform(200, 900)
    ev.append(Event(t, "sts", "AssumeRole", tech, resources=res, actor=ext_actor, ua=ctx.tool_ua))
    sess = ctx.role_actor(role, f"{ctx.pick(['maint', 'sync', 'x'])}-{ctx.hexid(6)}", ctx.start_ms + int(t * 1000))
    for k, (svc, op) in enumerate([("sts", "GetCallerIdentity"), ("iam", "ListUsers"), ("s3", "ListBuckets")]):
        ev.append(Event(t + 8 + 5 * k, svc, op, tech, actor=sess, ua=ctx.tool_ua))
    return ev


def sc_logging_disruption(ctx: Ctx) -> list[Event]:
    t_ct = "defense evasion: cloudtrail StopLogging / PutEventSelectors / DeleteTrail (T1562.008)"
    t_gd = "defense evasion: guardduty DeleteDetector (T1562.001)"
    t_cfg = "defense evasion: config StopConfigurationRecorder (T1562.001)"
    trail = f"arn:aws:cloudtrail:{ctx.region}:{ctx.account}:trail/{ctx.pick(['org-trail', 'management-events', 'audit-trail'])}"
    res = ((trail, "AWS::CloudTrail::Trail"),)
    ev = [Event(0, "cloudtrail", "DescribeTrails", t_ct), Event(5, "cloudtrail", "GetTrailStatus", t_ct, resources=res),
          Event(9, "cloudtrail", "GetEventSelectors", t_ct, resources=res),
          Event(20, "cloudtrail", "PutEventSelectors", t_ct, resources=res),
          Event(31, "cloudtrail", "StopLogging", t_ct, resources=res)]
    e = Event(40, "cloudtrail", "DeleteTrail", t_ct, resources=res)
    if ctx.rng.random() < 0.5:
        e.error, e.message = ctx.denied("cloudtrail", "DeleteTrail", trail)
    ev.append(e)
    det = ctx.hexid(32)
    ev += [Event(70, "guardduty", "ListDetectors", t_gd),
           Event(76, "guardduty", "DeleteDetector", t_gd, resources=((f"arn:aws:guardduty:{ctx.region}:{ctx.account}:detector/{det}", "AWS::GuardDuty::Detector"),)),
           Event(110, "config", "DescribeConfigurationRecorders", t_cfg),
           Event(116, "config", "StopConfigurationRecorder", t_cfg),
           Event(124, "config", "DeleteDeliveryChannel", t_cfg)]
    return ev


def sc_denied_enumeration(ctx: Ctx) -> list[Event]:
    calls = [("iam", "ListUsers"), ("iam", "ListRoles"), ("iam", "ListPolicies"), ("iam", "GetAccountAuthorizationDetails"),
             ("iam", "ListGroups"), ("iam", "GetAccountPasswordPolicy"), ("s3", "ListBuckets"), ("ec2", "DescribeInstances"),
             ("ec2", "DescribeRegions"), ("ec2", "DescribeSnapshots"), ("ec2", "DescribeVpcs"), ("lambda", "ListFunctions20150331"),
             ("rds", "DescribeDBInstances"), ("dynamodb", "ListTables"), ("secretsmanager", "ListSecrets"), ("kms", "ListKeys"),
             ("sns", "ListTopics"), ("sqs", "ListQueues"), ("organizations", "DescribeOrganization"), ("guardduty", "ListDetectors"),
             ("cloudtrail", "DescribeTrails"), ("logs", "DescribeLogGroups"), ("ecr", "DescribeRepositories"), ("eks", "ListClusters"),
             ("ssm", "DescribeParameters"), ("route53", "ListHostedZones"), ("cloudformation", "ListStacks"),
             ("elasticloadbalancing", "DescribeLoadBalancers"), ("iam", "ListAccessKeys"), ("iam", "ListMFADevices"),
             ("glue", "GetDatabases"), ("athena", "ListWorkGroups")]  # fmt: skip
    n = int(ctx.rng.integers(24, 33))
    chosen = ctx.pick(calls, n)
    order = ctx.rng.permutation(len(chosen))
    ev = [Event(0, "sts", "GetCallerIdentity", T_DISC)]
    for t, i in zip(_gaps(ctx, len(chosen), 0.5, 4, 2), order):
        svc, op = chosen[int(i)]
        e = Event(t, svc, op, T_DISC)
        if ctx.rng.random() < 0.7:
            e.error, e.message = ctx.denied(svc, op)
        ev.append(e)
    return ev


def sc_snapshot_exfil(ctx: Ctx) -> list[Event]:
    t_ebs = "exfiltration: ec2 ModifySnapshotAttribute / ModifyImageAttribute sharing with an external account (T1537)"
    t_rds = "exfiltration: rds ModifyDBSnapshotAttribute restore to an external account (T1537)"
    snap, ami = f"snap-{ctx.hexid(17)}", f"ami-{ctx.hexid(17)}"
    db = ctx.pick(["prod-orders", "customers-db", "billing-postgres"])
    dbsnap = f"arn:aws:rds:{ctx.region}:{ctx.account}:snapshot:{db}-{ctx.hexid(6)}"
    ev = [Event(0, "ec2", "DescribeInstances", t_ebs), Event(8, "ec2", "DescribeVolumes", t_ebs),
          Event(20, "ec2", "CreateSnapshot", t_ebs), Event(25, "ec2", "DescribeSnapshots", t_ebs),
          Event(400 + ctx.rng.uniform(0, 300), "ec2", "ModifySnapshotAttribute", t_ebs),
          Event(760, "ec2", "CreateImage", t_ebs), Event(1500, "ec2", "ModifyImageAttribute", t_ebs),
          Event(1560, "rds", "DescribeDBInstances", t_rds),
          Event(1575, "rds", "CreateDBSnapshot", t_rds, resources=((dbsnap, "AWS::RDS::DBSnapshot"),)),
          Event(2300 + ctx.rng.uniform(0, 400), "rds", "ModifyDBSnapshotAttribute", t_rds, resources=((dbsnap, "AWS::RDS::DBSnapshot"),))]
    ev[4].resources = ((f"arn:aws:ec2:{ctx.region}::snapshot/{snap}", "AWS::EC2::Snapshot"),)
    ev[6].resources = ((f"arn:aws:ec2:{ctx.region}::image/{ami}", "AWS::EC2::Image"),)
    return ev


def sc_s3_public_exposure(ctx: Ctx) -> list[Event]:
    tech = "exfiltration: s3 PutBucketPolicy / PutBucketAcl making a bucket public (T1530/T1537)"
    buckets = ctx.resources("AWS::S3::Bucket", 2, lambda i: f"arn:aws:s3:::{ctx.account}-{['data-exports', 'backups'][i % 2]}")
    ev = [Event(0, "s3", "ListBuckets", T_DISC)]
    t = 6.0
    for b in buckets:
        r = ((b, "AWS::S3::Bucket"),)
        e = Event(t, "s3", "GetBucketPolicy", tech, resources=r)
        if ctx.rng.random() < 0.5:
            e.error, e.message = "NoSuchBucketPolicy", "The bucket policy does not exist"
        ev += [e, Event(t + 4, "s3", "GetBucketAcl", tech, resources=r),
               Event(t + 11, "s3", "DeleteBucketPublicAccessBlock", tech, resources=r),
               Event(t + 19, "s3", "PutBucketPolicy", tech, resources=r),
               Event(t + 26, "s3", "PutBucketAcl", tech, resources=r)]
        t += 60 + ctx.rng.uniform(0, 240)
    return ev


def sc_lambda_passrole_privesc(ctx: Ctx) -> list[Event]:
    tech = "privilege escalation: iam:PassRole + lambda CreateFunction / UpdateFunctionCode (T1078.004/T1648)"
    role = ctx.role()
    fn_name = ctx.pick(["log-rotate", "cost-report-sync", "tag-compliance", "cleanup-enis"]) + f"-{ctx.hexid(4)}"
    fn = f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:{fn_name}"
    existing = ctx.resources("AWS::Lambda::Function", 1, lambda i: f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:image-resizer")[0]
    ev = [Event(0, "iam", "ListRoles", T_DISC), Event(8, "iam", "GetRole", tech, resources=((role, "AWS::IAM::Role"),)),
          Event(12, "lambda", "ListFunctions20150331", tech),
          Event(30, "lambda", "CreateFunction20150331", tech, resources=((fn, "AWS::Lambda::Function"), (role, "AWS::IAM::Role"))),
          Event(75, "lambda", "UpdateFunctionCode20150331v2", tech, resources=((existing, "AWS::Lambda::Function"),)),
          Event(90, "lambda", "UpdateFunctionConfiguration20150331v2", tech, resources=((existing, "AWS::Lambda::Function"),))]
    # the new function runs with the passed role and grants the victim administrator rights
    t = 90 + ctx.rng.uniform(30, 120)
    fn_actor = ctx.role_actor(role, fn_name, ctx.start_ms + int(t * 1000) - 2000)
    lip = ctx.new_ip(_LAMBDA_NETS)
    v = ctx.victim
    if v.type == "IAMUser":
        grant = Event(t + 1, "iam", "AttachUserPolicy", tech, resources=((v.arn, "AWS::IAM::User"),), actor=fn_actor, ua=LAMBDA_AGENT, ip=lip)
    else:
        grant = Event(t + 1, "iam", "AttachRolePolicy", tech, resources=((v.issuer or role, "AWS::IAM::Role"),), actor=fn_actor, ua=LAMBDA_AGENT, ip=lip)
    ev += [Event(t, "sts", "GetCallerIdentity", tech, actor=fn_actor, ua=LAMBDA_AGENT, ip=lip), grant,
           Event(t + 60 + ctx.rng.uniform(0, 60), "iam", "ListAttachedUserPolicies" if v.type == "IAMUser" else "ListAttachedRolePolicies", tech)]
    return ev


def sc_role_chain_federation(ctx: Ctx) -> list[Event]:
    t_pol = "privilege escalation: iam:PutUserPolicy self-granting sts:AssumeRole (T1098)"
    t_ar = "privilege escalation: sts:AssumeRole into a high-privilege role (T1548/T1078.004)"
    t_fed = "persistence: sts:GetFederationToken creating a federated principal (T1550.001)"
    v = ctx.victim
    role = ctx.role()
    ev = [Event(0, "sts", "GetCallerIdentity", T_DISC), Event(5, "iam", "ListUserPolicies", t_pol, resources=((v.arn, "AWS::IAM::User"),)),
          Event(14, "iam", "PutUserPolicy", t_pol, resources=((v.arn, "AWS::IAM::User"),)),
          Event(45, "sts", "AssumeRole", t_ar, resources=((role, "AWS::IAM::Role"),))]
    sess = ctx.role_actor(role, f"session-{ctx.hexid(8)}", ctx.start_ms + 45_000)
    for k, (svc, op) in enumerate([("iam", "ListUsers"), ("iam", "GetAccountAuthorizationDetails"), ("ec2", "DescribeInstances")]):
        ev.append(Event(52 + 6 * k, svc, op, t_ar, actor=sess))
    fed_name = ctx.pick(["backup", "monitor", "ops-sync", "s3sync"])
    ev.append(Event(150, "sts", "GetFederationToken", t_fed))
    fed = Actor(f"arn:aws:sts::{ctx.account}:federated-user/{fed_name}", f"{ctx.account}:{fed_name}", fed_name, "FederatedUser",
                ctx.account, ctx.upper("ASIA"), v.arn, True, False, ctx.start_ms + 150_000)  # fmt: skip
    t = 150 + ctx.rng.uniform(300, 1200)
    for k, (svc, op) in enumerate([("sts", "GetCallerIdentity"), ("s3", "ListBuckets"), ("secretsmanager", "ListSecrets"),
                                   ("ec2", "DescribeInstances"), ("iam", "ListUsers")]):  # fmt: skip
        e = Event(t + 7 * k, svc, op, t_fed, actor=fed)
        if svc == "iam":  # credentials from GetFederationToken cannot call IAM
            e.error, e.message = ctx.denied("iam", op, actor_arn=fed.arn)
        ev.append(e)
    return ev


def sc_gpu_mining(ctx: Ctx) -> list[Event]:
    tech = "impact: ec2 RunInstances of large GPU types in an unusual region (T1496)"
    used = {r for r, _ in ctx.victim.regions} | {ctx.region}
    cands = [r for r in ctx.regions if r not in used] or [r for r in UNUSUAL_REGIONS if r not in used]
    region = cands[0] if cands[0] in ctx.regions else ctx.pick(cands)
    ev = [Event(0, "ec2", "DescribeRegions", tech, region=region), Event(6, "ec2", "DescribeAccountAttributes", tech, region=region),
          Event(12, "servicequotas", "GetServiceQuota", tech, region=region),
          Event(20, "ec2", "DescribeImages", tech, region=region), Event(33, "ec2", "CreateKeyPair", tech, region=region),
          Event(40, "ec2", "CreateSecurityGroup", tech, region=region),
          Event(44, "ec2", "AuthorizeSecurityGroupIngress", tech, region=region)]
    t = 60.0
    for k, typ in enumerate(["p4d.24xlarge", "p3.16xlarge", "g5.48xlarge", "g4dn.12xlarge", "p3.8xlarge"]):
        e = Event(t, "ec2", "RunInstances", tech, region=region)
        if k < 2:
            e.error, e.message = "Client.VcpuLimitExceeded", ("You have requested more vCPU capacity than your current vCPU limit of 0 allows "
                                                              "for the instance bucket that the specified instance type belongs to.")  # fmt: skip
        ev.append(e)
        t += ctx.rng.uniform(5, 40)
    ev.append(Event(t + 30, "servicequotas", "RequestServiceQuotaIncrease", tech, region=region))
    return ev


def sc_kms_key_deletion(ctx: Ctx) -> list[Event]:
    tech = "impact: kms DisableKey / ScheduleKeyDeletion (T1485/T1486)"
    keys = ctx.resources("AWS::KMS::Key", 3, lambda i: f"arn:aws:kms:{ctx.region}:{ctx.account}:key/{ctx.hexid(8)}-{ctx.hexid(4)}-4{ctx.hexid(3)}-a{ctx.hexid(3)}-{ctx.hexid(12)}")
    ev = [Event(0, "kms", "ListKeys", tech), Event(3, "kms", "ListAliases", tech)]
    t = 10.0
    for k in keys:
        r = ((k, "AWS::KMS::Key"),)
        ev += [Event(t, "kms", "DescribeKey", tech, resources=r), Event(t + 6, "kms", "DisableKey", tech, resources=r),
               Event(t + 11, "kms", "ScheduleKeyDeletion", tech, resources=r)]
        t += 20 + ctx.rng.uniform(0, 30)
    return ev


def sc_console_no_mfa_iam(ctx: Ctx) -> list[Event]:
    t_in = "initial access: console sign-in without MFA (T1078.004)"
    tech = "persistence: IAM changes after a console sign-in without MFA (T1098)"
    v = ctx.victim
    ev = [Event(0, "signin", "ConsoleLogin", t_in, signin=True, ua=ctx.ua, mfa=False)]
    sess = replace(ctx.actor, cred=ctx.upper("ASIA"), session=True, mfa=False, created_ms=0)
    target = ctx.other_users(1)[0]
    tarn = f"arn:aws:iam::{ctx.account}:user/{target}"
    new = f"arn:aws:iam::{ctx.account}:user/{ctx.pick(['admin2', 'it-support', 'breakglass-2'])}"
    steps = [("iam", "ListUsers", ()), ("iam", "GetAccountSummary", ()), ("iam", "ListMFADevices", ((v.arn, "AWS::IAM::User"),)),
             ("iam", "CreateUser", ((new, "AWS::IAM::User"),)),
             ("iam", "AttachUserPolicy", ((new, "AWS::IAM::User"), ("arn:aws:iam::aws:policy/AdministratorAccess", "AWS::IAM::ManagedPolicy"))),
             ("iam", "CreateLoginProfile", ((new, "AWS::IAM::User"),)), ("iam", "CreateAccessKey", ((tarn, "AWS::IAM::User"),)),
             ("iam", "DeactivateMFADevice", ((tarn, "AWS::IAM::User"),))]  # fmt: skip
    for t, (svc, op, res) in zip(_gaps(ctx, len(steps), 8, 45, 25), steps):
        ev.append(Event(t, svc, op, tech, resources=res, actor=sess, ua=ctx.pick(["AWS Internal", "console.iam.amazonaws.com"])))
    return ev


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[Ctx], list[Event]]
    victim: str  # any | human | machine | iam_user_key | console_user
    agent: str  # tool (may mimic the victim's own agent from a known address) | new_tool | console
    summary: str


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("secrets_harvest", sc_secrets_harvest, "machine", "tool", "ListSecrets + GetSecretValue burst, ssm GetParameters WithDecryption"),
    Scenario("access_key_other_user", sc_access_key_other_user, "iam_user_key", "tool", "CreateAccessKey for another user; the new key acts"),
    Scenario("login_profile_backdoor", sc_login_profile_backdoor, "human", "tool", "CreateLoginProfile / UpdateLoginProfile for other users; console sign-in as one"),
    Scenario("admin_user_backdoor", sc_admin_user_backdoor, "human", "tool", "CreateUser + AttachUserPolicy AdministratorAccess + keys; the new user acts"),
    Scenario("role_trust_backdoor", sc_role_trust_backdoor, "any", "tool", "UpdateAssumeRolePolicy trusting an external account; it assumes the role"),
    Scenario("logging_disruption", sc_logging_disruption, "any", "tool", "cloudtrail StopLogging/PutEventSelectors/DeleteTrail, guardduty DeleteDetector, config StopConfigurationRecorder"),
    Scenario("denied_enumeration", sc_denied_enumeration, "machine", "new_tool", "discovery across ~30 services, mostly AccessDenied, new SDK agent"),
    Scenario("snapshot_exfil", sc_snapshot_exfil, "any", "tool", "EBS snapshot / AMI / RDS snapshot shared with an external account"),
    Scenario("s3_public_exposure", sc_s3_public_exposure, "any", "tool", "DeleteBucketPublicAccessBlock + PutBucketPolicy/PutBucketAcl public"),
    Scenario("lambda_passrole_privesc", sc_lambda_passrole_privesc, "human", "tool", "PassRole via CreateFunction, UpdateFunctionCode; the function grants admin"),
    Scenario("role_chain_federation", sc_role_chain_federation, "iam_user_key", "tool", "PutUserPolicy, AssumeRole into a strong role, GetFederationToken; the federated user acts"),
    Scenario("gpu_mining", sc_gpu_mining, "any", "tool", "RunInstances of GPU types in a region the victim does not use"),
    Scenario("kms_key_deletion", sc_kms_key_deletion, "any", "tool", "DisableKey + ScheduleKeyDeletion on several keys"),
    Scenario("console_no_mfa_iam", sc_console_no_mfa_iam, "console_user", "console", "console sign-in without MFA, then IAM user/keys/MFA changes"),
]}  # fmt: skip
SCENARIOS_INDEX = {name: i for i, name in enumerate(SCENARIOS)}


# ----------------------------------------------------------------------------- row building
def _uuid(*parts: object) -> str:
    h = bytearray(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _leaf_type(schema: pa.Schema, path: str) -> pa.DataType | None:
    parts = path.split(".")
    if parts[0] not in schema.names:
        return None
    typ = schema.field(parts[0]).type
    for p in parts[1:]:
        if not pa.types.is_struct(typ) or typ.get_field_index(p) < 0:
            return None
        typ = typ.field(p).type
    return typ


def _template(path: Path) -> dict[str, Any]:
    cols = ["metadata", "class_name", "class_uid", "category_name", "category_uid", "severity", "severity_id"]
    pf = pq.ParquetFile(path)
    for rg in range(pf.num_row_groups):
        t = pf.read_row_group(rg, columns=cols)
        if t.num_rows:
            row = t.slice(0, 1).to_pylist()[0]
            m = row["metadata"]
            return {"metadata.product": m["product"], "metadata.profiles": m["profiles"], "metadata.version": m["version"],
                    **{c: row[c] for c in cols[1:]}}  # fmt: skip
    return {}


def _api_row(r: dict, version: int) -> dict[str, Any]:
    a: Actor = r["actor"]
    acct = r["recipient"]
    act = activity_of(r["operation"])
    failed = r["error"] is not None
    row: dict[str, Any] = {
        "metadata.uid": r["uid"], "time": r["time"], "cloud.region": r["region"], "cloud.provider": "AWS",
        "api.response.error": r["error"], "api.response.message": r["message"], "api.operation": r["operation"],
        "api.service.name": f"{r['service']}.amazonaws.com", "api.request.uid": r["request_uid"],
        "actor.user.type": a.type, "actor.user.name": a.name, "actor.user.credential_uid": a.cred,
        "actor.session.issuer": a.issuer if a.session else None, "http_request.user_agent": r["ua"],
        "actor.idp.name": None, "actor.invoked_by": None, "src_endpoint.uid": None, "src_endpoint.domain": None,
        "src_endpoint.ip": r["ip"], "status": "Failure" if failed else "Success", "status_id": 2 if failed else 1,
        "activity_id": act, "activity_name": ACTIVITY_NAMES[act], "type_name": f"API Activity: {ACTIVITY_NAMES[act]}",
        "type_uid": (300500 if version == 1 else 600300) + act,
    }  # fmt: skip
    unmapped = [("recipientAccountId", acct), ("readOnly", "true" if act == 2 else "false")]
    if version == 1:
        row |= {"actor.user.uid": a.pid, "actor.user.uuid": a.arn, "actor.user.account_uid": a.account,
                "actor.session.created_time": a.created_ms if a.session else None, "actor.session.mfa": a.mfa if a.session else None}  # fmt: skip
        unmapped.append(("eventType", "AwsApiCall"))
        row["resources"] = [{"uid": u, "account_uid": acct, "type": t} for u, t in r["resources"]] or None
    else:
        row |= {"metadata.event_code": "AwsApiCall", "time_dt": r["time"], "actor.user.uid": a.arn, "actor.user.uid_alt": a.pid,
                "actor.user.account.uid": a.account, "actor.session.created_time_dt": a.created_ms if a.session else None,
                "actor.session.is_mfa": a.mfa if a.session else None}  # fmt: skip
        row["resources"] = [{"uid": u, "owner": {"account": {"uid": acct}}, "type": t} for u, t in r["resources"]] or None
        obs = []
        if a.name is not None:
            obs.append({"name": "actor.user.name", "value": a.name, "type": "User Name", "type_id": 4})
        obs.append({"name": "src_endpoint.ip", "value": r["ip"], "type": "IP Address", "type_id": 2})
        row["observables"] = obs
    row["unmapped"] = unmapped
    return row


def _signin_row(r: dict, version: int) -> dict[str, Any]:
    a: Actor = r["actor"]
    acct = r["recipient"]
    row: dict[str, Any] = {
        "metadata.uid": r["uid"], "time": r["time"], "cloud.region": r["region"], "cloud.provider": "AWS",
        "api.response.error": None, "api.response.message": None, "api.operation": "ConsoleLogin",
        "api.service.name": "signin.amazonaws.com", "api.request.uid": "''", "dst_endpoint.svc_name": CONSOLE_URL,
        "actor.user.type": a.type, "actor.user.name": a.name, "actor.user.credential_uid": None,
        "actor.session.issuer": a.issuer if a.type == "AssumedRole" else None, "http_request.user_agent": r["ua"],
        "actor.idp.name": None, "actor.invoked_by": None, "api.version": None, "src_endpoint.uid": None,
        "src_endpoint.domain": None, "src_endpoint.ip": r["ip"], "user.name": None, "activity_name": "Logon", "activity_id": 1, "type_uid": 300201,
        "type_name": "Authentication: Logon", "status": "Success", "status_id": 1,
    }  # fmt: skip
    unmapped = [("additionalEventData.MobileVersion", "No")]
    if r["mfa"]:
        unmapped.append(("additionalEventData.MFAIdentifier", f"arn:aws:iam::{a.account}:mfa/{a.name}"))
    unmapped.append(("recipientAccountId", acct))
    if version == 1:
        row |= {"actor.user.uid": a.pid, "actor.user.uuid": a.arn, "actor.user.account_uid": a.account, "user.uid": a.pid,
                "user.uuid": a.arn, "mfa": r["mfa"], "actor.session.created_time": None, "actor.session.mfa": None}  # fmt: skip
        unmapped.append(("eventType", "AwsConsoleSignIn"))
    else:
        row |= {"metadata.event_code": "AwsConsoleSignIn", "time_dt": r["time"], "actor.user.uid": a.arn, "actor.user.uid_alt": a.pid,
                "actor.user.account.uid": a.account, "user.uid": a.arn, "user.uid_alt": a.pid, "is_mfa": r["mfa"],
                "api.response.data": '{"ConsoleLogin":"Success"}',
                "observables": [{"name": "src_endpoint.ip", "value": r["ip"], "type": "IP Address", "type_id": 2},
                                {"name": "actor.user.name", "value": a.name, "type": "User Name", "type_id": 4}]}  # fmt: skip
    row["unmapped"] = unmapped
    return row


def _table(rows: list[dict[str, Any]], schema: pa.Schema, template: dict[str, Any]) -> pa.Table:
    n = len(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    for k in template:
        if k not in keys:
            keys.append(k)
    cols: dict[str, pa.Array] = {}
    for k in keys:
        typ = _leaf_type(schema, k)
        if typ is None:
            continue
        vals = [r.get(k, template.get(k)) for r in rows]
        if pa.types.is_map(typ):
            vals = [list(v) if v is not None else None for v in vals]
        cols[k] = pa.array(vals, type=typ)
    return assemble(schema, cols, n)


# ----------------------------------------------------------------------------- main entry
def _detect_version(root: Path, stamp: str, version: int | None) -> int:
    have = [v for v in (1, 2) if _day_partitions(root, v, stamp)]
    if version is not None:
        if version not in (1, 2):
            raise ValueError(f"source_version: got {version!r}; allowed: 1, 2")
        if version not in have:
            raise ValueError(f"no CloudTrail partitions for eventDay={stamp} under {_ct_base(root, version)}")
        return version
    if not have:
        raise ValueError(f"no CloudTrail partitions for eventDay={stamp} under {root}/aws/{CT}")
    if len(have) > 1:
        raise ValueError(f"both source versions hold eventDay={stamp}; pass source_version")
    return have[0]


def _eligible(p: Principal, need: str) -> bool:
    if p.type not in ("IAMUser", "AssumedRole") or p.events < 5 or not p.account:
        return False
    if need == "iam_user_key":
        return p.type == "IAMUser" and p.akia is not None
    if need == "console_user":
        return p.type == "IAMUser" and p.console
    if need == "machine":
        return p.machine
    if need == "human":
        return not p.machine
    return True


def _fallbacks(need: str) -> list[str]:
    return {"iam_user_key": ["iam_user_key", "console_user", "any"], "console_user": ["console_user", "iam_user_key", "any"],
            "machine": ["machine", "any"], "human": ["human", "any"], "any": ["any"]}[need]  # fmt: skip


def inject_attacks(
    root: str | os.PathLike[str],
    day: _dt.date | str,
    seed: int,
    scenarios: list[str] | tuple[str, ...] | str | None = None,
    from_known_ip_share: float = 0.5,
    source_version: int | None = None,
) -> dict[str, Any]:
    """Write attack sequences into CloudTrail partitions of ``day`` and their ground truth; returns a summary.

    :param root: a local sample lake (``aws/CLOUD_TRAIL_MGMT/<v>.0/region=/accountId=/eventDay=``).
    :param day: UTC day already present in the lake (``date`` or ``YYYY-MM-DD``).
    :param seed: random seed (victims, times, addresses, ids); same seed and lake give the same rows.
    :param scenarios: names from :data:`SCENARIOS` (default all), a list or comma-separated string.
    :param from_known_ip_share: share of scenarios run from a public address the victim used before
        (rounded to a whole number of scenarios; the rest use a new address).
    :param source_version: 1 or 2; default the version whose folders hold the day.
    """
    root = Path(root)
    if isinstance(day, str):
        try:
            day = _dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"day: got {day!r}; allowed: YYYY-MM-DD") from None
    if isinstance(day, _dt.datetime) or not isinstance(day, _dt.date):
        raise ValueError(f"day: got {day!r}; allowed: a datetime.date")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: got {seed!r}; allowed: an integer >= 0")
    share = float(from_known_ip_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"from_known_ip_share: got {from_known_ip_share!r}; allowed: 0 <= x <= 1")
    if isinstance(scenarios, str):
        scenarios = [s.strip() for s in scenarios.split(",") if s.strip()]
    names = list(SCENARIOS) if not scenarios else list(dict.fromkeys(scenarios))
    bad = [s for s in names if s not in SCENARIOS]
    if bad:
        raise ValueError(f"scenarios: unknown {bad}; allowed: {', '.join(SCENARIOS)}")
    stamp = day.strftime("%Y%m%d")
    version = _detect_version(root, stamp, source_version)
    # remove the previous run's files for this day first (they must not count as the day's partitions)
    gt_dir = root / "ground_truth" / "attacks"
    manifest_path = gt_dir / f"{stamp}.json"
    removed = _remove_previous(root, manifest_path)
    parts = _day_partitions(root, version, stamp)
    hist = read_history(root, version, day)
    day_ms = day_start_ms(day)
    day_ord = day.toordinal()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), day_ord, 0xA77AC]))
    n_known = int(round(share * len(names)))
    known_flags = np.zeros(len(names), dtype=bool)
    known_flags[rng.permutation(len(names))[:n_known]] = True

    accounts_today = {a for a, _ in parts}
    used_victims: set[str] = set()
    taken_ips = set(hist.all_ips)

    def new_ip(r: np.random.Generator, nets=_NEW_NETS) -> str:
        while True:
            a, b = nets[int(r.integers(0, len(nets)))]
            ip = f"{a}.{b}.{int(r.integers(0, 256))}.{int(r.integers(1, 255))}"
            if ip not in taken_ips:
                taken_ips.add(ip)
                return ip

    api_rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    auth_rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    truth: list[dict] = []
    per_scenario = []
    principals = sorted(hist.principals.values(), key=lambda p: p.arn)
    for si, name in enumerate(names):
        sc = SCENARIOS[name]
        srng = np.random.default_rng(np.random.SeedSequence([int(seed), day_ord, 0xA77AC, si + 1, SCENARIOS_INDEX[name]]))
        want_known = bool(known_flags[si])
        victim = None
        for need in _fallbacks(sc.victim):
            cands = [p for p in principals if _eligible(p, need) and p.account in accounts_today]
            if want_known:
                cands = [p for p in cands if p.ips] or cands
            fresh = [p for p in cands if p.arn not in used_victims]
            pool = fresh or cands
            if pool:
                victim = pool[int(srng.integers(0, len(pool)))]
                break
        if victim is None:
            per_scenario.append({"scenario": name, "skipped": "no eligible victim active before the day"})
            continue
        used_victims.add(victim.arn)
        regions = sorted(r for a, r in parts if a == victim.account)
        region = next((r for r, _ in victim.regions if r in regions), regions[0])
        known = want_known and bool(victim.ips)
        if known:
            ips, counts = zip(*victim.ips)
            w = np.array(counts, dtype=float)
            ip = ips[int(srng.choice(len(ips), p=w / w.sum()))]
        else:
            ip = new_ip(srng)
        tool_ua = TOOL_AGENTS[int(srng.integers(0, len(TOOL_AGENTS)))]
        mimic = known and srng.random() < 0.5 and sc.agent != "new_tool"
        if sc.agent == "console":
            ua = (victim.browser or ATTACKER_BROWSERS[1]) if mimic else ATTACKER_BROWSERS[int(srng.integers(0, len(ATTACKER_BROWSERS)))]
        else:
            own = [u for u, _ in victim.uas if not u.startswith(("console.", "AWS Internal", "Mozilla"))]
            ua = own[0] if (mimic and own) else tool_ua
        if victim.type == "IAMUser":
            actor = Actor(victim.arn, victim.pid, victim.name, "IAMUser", victim.account, victim.akia or _rand_key(srng, "AKIA"))
        else:
            actor = Actor(victim.arn, victim.pid, victim.name, victim.type, victim.account, _rand_key(srng, "ASIA"),
                          victim.issuer, True, False, None)  # fmt: skip
        # start: half the time in one of the victim's busy hours, else anywhere; the sequence stays in the day
        if srng.random() < 0.5 and victim.hours.sum() > 0:
            hour = int(srng.choice(24, p=victim.hours / victim.hours.sum()))
            start_s = hour * 3600 + float(srng.uniform(0, 3600))
        else:
            start_s = float(srng.uniform(0, 86_400))
        # scenarios give session creation times relative to the start (start_ms=0); shifted below
        ctx = Ctx(srng, victim, actor, region, regions, hist, 0, ua, tool_ua, ip, lambda nets=_NEW_NETS: new_ip(srng, nets))
        events = sc.build(ctx)
        dur = max(e.t for e in events)
        start_s = max(0.0, min(start_s, 86_400 - dur - 60))
        start_ms = day_ms + int(start_s) * 1000
        seen: set[int] = set()
        for e in events:
            a = e.actor
            if a is not None and id(a) not in seen and a is not actor:
                seen.add(id(a))
                if a.created_ms is not None:
                    a.created_ms += start_ms
        if actor.session:
            actor.created_ms = start_ms - int(srng.integers(300, 3000)) * 1000
        victim_ips = {x for x, _ in victim.ips}
        n_rows = 0
        for k, e in enumerate(sorted(events, key=lambda e: e.t)):
            a = e.actor or actor
            t_ms = start_ms + int(round(e.t)) * 1000
            reg = e.region or region
            key = (victim.account, reg)
            row_ip = e.ip or ip
            uid = _uuid("seclake-attack", seed, stamp, name, k)
            r = {"uid": uid, "time": t_ms, "region": reg, "service": e.service, "operation": e.operation, "error": e.error,
                 "message": e.message, "resources": e.resources, "actor": a, "ua": e.ua or ua, "ip": row_ip,
                 "recipient": victim.account, "request_uid": _uuid("seclake-attack-req", seed, stamp, name, k), "mfa": e.mfa}  # fmt: skip
            if e.signin:
                auth_rows[key].append(r)
            else:
                api_rows[key].append(r)
            truth.append({"uid": uid, "time": t_ms, "scenario": name, "technique": e.technique, "principal": a.arn or a.pid,
                          "source_ip": row_ip, "from_known_ip": row_ip in victim_ips, "victim": victim.arn,
                          "account": victim.account, "region": reg, "class_uid": 3002 if e.signin else (3005 if version == 1 else 6003),
                          "operation": e.operation, "status": "Failure" if e.error else "Success", "step": k})  # fmt: skip
            n_rows += 1
        per_scenario.append({"scenario": name, "victim": victim.arn, "victim_type": victim.type, "account": victim.account,
                             "region": region, "source_ip": ip, "from_known_ip": known, "user_agent": ua, "events": n_rows,
                             "start": _iso(start_ms), "minutes": round(dur / 60, 1)})  # fmt: skip

    written: list[str] = []
    all_keys = sorted(set(api_rows) | set(auth_rows))
    for key in all_keys:
        for kind, rows in (("api", api_rows.get(key)), ("auth", auth_rows.get(key))):
            if not rows:
                continue
            account, region = key
            folder = parts.get(key) or (_ct_base(root, version) / f"region={region}" / f"accountId={account}" / f"eventDay={stamp}")
            schema, template = _schema_for(root, version, folder, kind)
            rows.sort(key=lambda r: (r["time"], r["uid"]))
            build = _api_row if kind == "api" else _signin_row
            table = _table([build(r, version) for r in rows], schema, template)
            token = stable_token("seclake-attacks", version, kind, account, region, stamp, length=12)
            path = folder / f"{kind}-{stamp}-{token}-0000.gz.parquet"
            _write_atomic(table, path)
            written.append(str(path.relative_to(root)))
    gt_dir.mkdir(parents=True, exist_ok=True)
    truth.sort(key=lambda r: (r["time"], r["uid"]))
    tt = pa.Table.from_pylist(truth, schema=TRUTH_SCHEMA) if truth else TRUTH_SCHEMA.empty_table()
    _write_atomic(tt, gt_dir / f"{stamp}.parquet")
    summary = {
        "day": day.isoformat(), "source_version": version, "seed": int(seed), "from_known_ip_share": share,
        "scenarios": per_scenario, "events": len(truth),
        "events_from_known_ip": int(sum(1 for r in truth if r["from_known_ip"])),
        "files": written, "removed": removed, "ground_truth": str((gt_dir / f"{stamp}.parquet").relative_to(root)),
        "history_principals": len(hist.principals),
    }  # fmt: skip
    tmp = manifest_path.with_name(f".{manifest_path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return summary



def _rand_key(r: np.random.Generator, prefix: str) -> str:
    return prefix + "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[int(x)] for x in r.integers(0, 32, size=16))


def _schema_for(root: Path, version: int, folder: Path, kind: str) -> tuple[pa.Schema, dict[str, Any]]:
    """Schema and constant values of an existing file of ``kind`` in ``folder`` (else anywhere in the version)."""
    skip = _injected_files(root)
    cands = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".") and p.resolve() not in skip) if folder.is_dir() else []
    cands = [p for p in cands if _is_auth(pq.read_schema(p)) == (kind == "auth")]
    if not cands:
        for p in sorted(_ct_base(root, version).glob("region=*/accountId=*/eventDay=*/*.parquet")):
            if not p.name.startswith(".") and p.resolve() not in skip and _is_auth(pq.read_schema(p)) == (kind == "auth"):
                cands = [p]
                break
    if not cands:  # no file of the kind in this version at all: the generator's schema and constants
        k = "cloudtrail_auth" if kind == "auth" else "cloudtrail_api"
        class_uid, class_name, category_uid, category_name = O.CLASS_INFO[(k, version)]
        product = {"version": "1.08" if kind == "auth" else "1.09", "name": "CloudTrail", "vendor_name": "AWS",
                   "feature": {"name": "Management"}}
        return O.schema_for(k, version), {
            "metadata.product": product, "metadata.profiles": ["cloud"] + (["datetime"] if version == 2 else []),
            "metadata.version": O.OCSF_VERSION[version], "class_name": class_name, "class_uid": class_uid,
            "category_name": category_name, "category_uid": category_uid, "severity": "Informational", "severity_id": 1,
        }  # fmt: skip
    return pq.read_schema(cands[0]), _template(cands[0])


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="gzip", compression_level=1, write_statistics=True)
    os.replace(tmp, path)


def _remove_previous(root: Path, manifest: Path) -> list[str]:
    removed = []
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text()).get("files", [])
        except ValueError:
            files = []
        for f in files:
            p = root / f
            if p.is_file():
                p.unlink()
                removed.append(f)
                # a partition folder this tool created (a region new to the lake) goes when empty
                d = p.parent
                while d != root and d.is_dir() and not any(d.iterdir()) and d.name.split("=", 1)[0] in ("eventDay", "accountId", "region"):
                    d.rmdir()
                    d = d.parent
    return removed


def _iso(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).isoformat().replace("+00:00", "Z")
