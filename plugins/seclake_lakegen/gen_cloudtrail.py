"""CloudTrail management events: console sign-ins (Authentication 3002) and API calls (API Activity,
3005 in source version 1, 6003 in version 2), and the data events of the ``S3_DATA`` and
``LAMBDA_EXECUTION`` sources (the same API Activity rows), vectorised.

As for the network sources, rows are drawn as NumPy *specs* first (principal, operation, address,
user agent, error …); injected anomaly rows use the same format and the same table builders.

Data events are made over the principals' ordinary channels (so from the same networks, with the same
user agents and credentials as their management calls), with their own operation catalogue
(:data:`~.gen_env.DATA_CATALOGS`) and resources (:func:`data_tables`): each site has a handful of
buckets, each principal a few buckets and functions it keeps using.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import ocsf_schemas as O
from .gen_common import (
    DAY_MS,
    StrDict,
    assemble,
    bools,
    const_int,
    const_str,
    ints,
    list_of_structs,
    rng_for,
    stable_token,
    string_map,
    timestamps_ms,
    uuid_strings,
    weighted_index,
)
from .gen_env import (
    ACTIVITY_NAMES,
    CATALOGS,
    DATA_ERROR_RATES,
    ERROR_RATES,
    RESOURCE_KINDS,
    RESOURCE_TYPES,
    S3_OBJECT_OPERATIONS,
    Environment,
    OpCatalog,
    Site,
)
from .gen_network import _class_cols, _metadata, _observable

CATALOG_NAMES = tuple(CATALOGS)
NET_HUMAN, NET_POOL, NET_DOMAIN = 0, 1, 2
#: weekend days carry this share of a working day's human activity
WEEKEND_FACTOR = 0.12
TRAVEL_PROBABILITY = 0.012
CONSOLE_URL = "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true"

#: data-event sources (generator names) and the catalogue of :data:`~.gen_env.DATA_CATALOGS` each uses
DATA_SOURCES = {"s3_data": "s3_data", "lambda_execution": "lambda_data"}
#: data events per management call, by channel catalogue (absent = that kind of channel makes none):
#: S3 objects are read and written mostly by workloads, functions are invoked mostly by the Lambda
#: service itself (event source mappings, no address) and by other functions
DATA_AFFINITY: dict[str, dict[str, float]] = {
    "s3_data": {"instance": 1.0, "lambda": 1.6, "ci": 0.4, "cli": 0.5, "console": 0.15},
    "lambda_execution": {"aws_service": 1.0, "lambda": 0.6, "instance": 0.15, "ci": 0.1, "cli": 0.15, "console": 0.05},
}
#: buckets each site has besides the management catalogue's four (names carry a seed-derived token)
EXTRA_BUCKETS = ("ml-datasets", "media-uploads")
#: object key folders and extensions per bucket position (the four management buckets, then the extras)
BUCKET_KEYS = (
    ("static/img", "png"), ("app/2024", "json.gz"), ("db/daily", "dump.gz"), ("raw/events", "parquet"),
    ("train/v3", "parquet"), ("user/avatars", "jpg"),
)  # fmt: skip
OBJECTS_PER_BUCKET = 24
#: preferred buckets per principal (slot 0 is the shared first bucket) and how often each is used
BUCKET_SLOT_WEIGHTS = np.array([0.5, 0.3, 0.2])
FUNCTION_SLOT_WEIGHTS = np.array([0.7, 0.3])


@dataclass
class CtTables:
    """Per-principal and per-channel arrays, built once per environment."""

    arn: StrDict
    p_arn: np.ndarray
    uid: StrDict
    p_uid: np.ndarray
    name: StrDict
    p_name: np.ndarray
    ptype: StrDict
    p_type: np.ndarray
    account: StrDict
    p_account: np.ndarray
    issuer: StrDict
    p_issuer: np.ndarray
    invoked: StrDict
    p_invoked: np.ndarray
    cred: StrDict
    p_akia: np.ndarray
    p_asia: np.ndarray
    vpce: StrDict
    p_vpce: np.ndarray
    p_private_ip: np.ndarray
    p_domain: np.ndarray
    p_human: np.ndarray
    p_mfa_id: np.ndarray  # index into name dict of the MFA device ARN, -1 none
    h_tz: np.ndarray
    h_nets: np.ndarray
    h_mfa: np.ndarray
    h_browser: np.ndarray
    ch_principal: np.ndarray
    ch_catalog: np.ndarray
    ch_weight: np.ndarray
    ch_human: np.ndarray
    ch_ua: np.ndarray
    ch_net: np.ndarray
    ch_pool_off: np.ndarray
    ch_pool_len: np.ndarray
    ch_vpce_share: np.ndarray
    ch_cli: np.ndarray
    pools: np.ndarray
    site_resources: list[tuple[StrDict, np.ndarray, np.ndarray]]


def _opt(d: StrDict, v: str | None) -> int:
    return -1 if v is None else d.add(v)


def ct_tables(env: Environment) -> CtTables:
    cached = getattr(env, "_ct_tables", None)
    if cached is not None:
        return cached
    arn, uid, name, ptype, account, issuer, invoked, cred, vpce = (StrDict() for _ in range(9))
    P = env.principals
    mfa_ids = []
    for p in P:
        hu = env.humans[p.human] if p.human >= 0 else None
        if p.type == "IAMUser" and hu is not None and hu.mfa:
            mfa_ids.append(name.add(f"arn:aws:iam::{p.account}:mfa/{p.name}"))
        elif p.type == "Root":
            mfa_ids.append(name.add(f"arn:aws:iam::{p.account}:mfa/root-account-mfa-device"))
        else:
            mfa_ids.append(-1)
    pools, offs, lens = [], [], []
    total = 0
    for ch in env.channels:
        if ch.pool is not None:
            pools.append(ch.pool)
            offs.append(total)
            lens.append(len(ch.pool))
            total += len(ch.pool)
        else:
            offs.append(0)
            lens.append(0)
    site_resources = []
    for site in env.sites:
        d = StrDict()
        off = np.zeros(len(RESOURCE_KINDS), dtype=np.int64)
        ln = np.zeros(len(RESOURCE_KINDS), dtype=np.int64)
        for k, kind in enumerate(RESOURCE_KINDS):
            lst = env.resources[(site.index, kind)]
            off[k] = len(d)
            ln[k] = len(lst)
            for r in lst:
                d.add(r)
        site_resources.append((d, off, ln))
    t = CtTables(
        arn=arn,
        p_arn=np.array([_opt(arn, p.arn) for p in P], dtype=np.int32),
        uid=uid,
        p_uid=np.array([_opt(uid, p.uid) for p in P], dtype=np.int32),
        name=name,
        p_name=np.array([_opt(name, p.name) for p in P], dtype=np.int32),
        ptype=ptype,
        p_type=np.array([ptype.add(p.type) for p in P], dtype=np.int32),
        account=account,
        p_account=np.array([account.add(p.account) for p in P], dtype=np.int32),
        issuer=issuer,
        p_issuer=np.array([_opt(issuer, p.issuer) for p in P], dtype=np.int32),
        invoked=invoked,
        p_invoked=np.array([_opt(invoked, p.invoked_by) for p in P], dtype=np.int32),
        cred=cred,
        p_akia=np.array([_opt(cred, p.akia) for p in P], dtype=np.int32),
        p_asia=np.array([_opt(cred, p.asia) for p in P], dtype=np.int32),
        vpce=vpce,
        p_vpce=np.array([_opt(vpce, p.vpce) for p in P], dtype=np.int32),
        p_private_ip=np.array([p.private_ip for p in P], dtype=np.int32),
        p_domain=np.array([_opt(env.ct_ips, p.domain) for p in P], dtype=np.int32),
        p_human=np.array([p.human for p in P], dtype=np.int32),
        p_mfa_id=np.array(mfa_ids, dtype=np.int32),
        h_tz=np.array([h.utc_offset for h in env.humans], dtype=np.float64),
        h_nets=np.stack([h.networks for h in env.humans]).astype(np.int32),
        h_mfa=np.array([h.mfa for h in env.humans], dtype=bool),
        h_browser=np.array([h.browser_ua for h in env.humans], dtype=np.int32),
        ch_principal=np.array([c.principal for c in env.channels], dtype=np.int32),
        ch_catalog=np.array([CATALOG_NAMES.index(c.catalog) for c in env.channels], dtype=np.int32),
        ch_weight=np.array([c.weight for c in env.channels], dtype=np.float64),
        ch_human=np.array([c.human for c in env.channels], dtype=bool),
        ch_ua=np.array([c.ua for c in env.channels], dtype=np.int32),
        ch_net=np.array([{"human": NET_HUMAN, "pool": NET_POOL, "domain": NET_DOMAIN}[c.net] for c in env.channels], dtype=np.int8),
        ch_pool_off=np.array(offs, dtype=np.int64),
        ch_pool_len=np.array(lens, dtype=np.int64),
        ch_vpce_share=np.array([c.vpce_share for c in env.channels], dtype=np.float64),
        ch_cli=np.array([c.catalog == "cli" for c in env.channels], dtype=bool),
        pools=np.concatenate(pools).astype(np.int32) if pools else np.zeros(0, dtype=np.int32),
        site_resources=site_resources,
    )
    env._ct_tables = t  # type: ignore[attr-defined]
    return t


def _type_id(t: CtTables, name: str) -> int:
    try:
        return t.ptype.index(name)
    except KeyError:
        return -9


# ----------------------------------------------------------------------------- data-event resources
@dataclass
class DataTables:
    """Resources of the data events, per site, and the buckets and functions each principal uses."""

    catalog: OpCatalog
    op_object: np.ndarray  # per data op: the call names an object (second resource)
    resources: list[StrDict]  # per site: bucket, object and function ARNs
    buckets: list[np.ndarray]  # per site: resource id of each bucket (by position)
    objects: list[np.ndarray]  # per site: (buckets, OBJECTS_PER_BUCKET) resource ids of object ARNs
    functions: list[np.ndarray]  # per site: resource id of each function
    p_buckets: np.ndarray  # (principals, 3) bucket positions each principal uses (slot 0 = position 0)
    p_functions: np.ndarray  # (principals, 2) function positions (taken modulo the site's count)

    def bucket_name(self, site: int, position: int) -> str:
        """``position``'s bucket name in ``site``."""
        return self.resources[site][int(self.buckets[site][position])].removeprefix("arn:aws:s3:::")


def data_tables(env: Environment) -> DataTables:
    """The data-event resources of ``env`` (built once, from ``env.seed``; cached on the environment).

    Build it before generating in threads (the generator does, in its constructor).
    """
    cached = getattr(env, "_data_tables", None)
    if cached is not None:
        return cached
    if env.data_catalog is None:
        raise ValueError("environment has no data-event catalogue (build it with build_environment)")
    cat = env.data_catalog
    op_object = np.array([cat.operation[int(o)] in S3_OBJECT_OPERATIONS for o in cat.op_operation], dtype=bool)
    resources, buckets, objects, functions = [], [], [], []
    for site in env.sites:
        d = StrDict()
        names = [arn.removeprefix("arn:aws:s3:::") for arn in env.resources[(site.index, "s3")]]
        names += [
            f"{b}-{stable_token(env.seed, 'bucket', site.account, site.region, b, length=10)}" for b in EXTRA_BUCKETS
        ]
        b_ids = np.array([d.add(f"arn:aws:s3:::{b}") for b in names], dtype=np.int64)
        rng = rng_for(env.seed, 88, site.index)
        o_ids = np.zeros((len(names), OBJECTS_PER_BUCKET), dtype=np.int64)
        for bi, b in enumerate(names):
            folder, ext = BUCKET_KEYS[bi % len(BUCKET_KEYS)]
            for k in range(OBJECTS_PER_BUCKET):
                key = f"{folder}/{int(rng.integers(0, 16**8)):08x}.{ext}"
                o_ids[bi, k] = d.add(f"arn:aws:s3:::{b}/{key}")
        fns = list(env.resources[(site.index, "lambda")])
        for p in env.principals:
            if p.profile == "lambda" and p.site == site.index and p.arn:
                fns.append(f"arn:aws:lambda:{site.region}:{site.account}:function:{p.arn.rsplit('/', 1)[1]}")
        f_ids = np.array(sorted({d.add(f) for f in fns}), dtype=np.int64)
        resources.append(d)
        buckets.append(b_ids)
        objects.append(o_ids)
        functions.append(f_ids)
    n_b = min(len(b) for b in buckets)
    rng = rng_for(env.seed, 89)
    n_p = len(env.principals)
    p_buckets = np.zeros((n_p, len(BUCKET_SLOT_WEIGHTS)), dtype=np.int64)
    p_functions = np.zeros((n_p, len(FUNCTION_SLOT_WEIGHTS)), dtype=np.int64)
    for pi in range(n_p):
        p_buckets[pi, 1:] = 1 + rng.choice(n_b - 1, size=len(BUCKET_SLOT_WEIGHTS) - 1, replace=False)
        p_functions[pi] = rng.choice(64, size=len(FUNCTION_SLOT_WEIGHTS), replace=False)
    out = DataTables(cat, op_object, resources, buckets, objects, functions, p_buckets, p_functions)
    env._data_tables = out  # type: ignore[attr-defined]
    return out


def data_channel_weights(env: Environment, site: Site, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: expected share of ``source``'s data events in ``site`` on a working day."""
    if source not in DATA_SOURCES:
        raise ValueError(f"data-event source: got {source!r}; allowed: {', '.join(DATA_SOURCES)}")
    t = ct_tables(env)
    w, human = site_channel_weights(env, site)
    affinity = DATA_AFFINITY[source]
    factor = np.array([affinity.get(name, 0.0) for name in CATALOG_NAMES])[t.ch_catalog]
    root = t.p_type[t.ch_principal] == _type_id(t, "Root")
    factor[root] = 0.0
    if source == "lambda_execution":  # of the AWS services, only Lambda's event source mappings invoke
        svc = t.ch_catalog == CATALOG_NAMES.index("aws_service")
        lam = np.array([p.invoked_by == "lambda.amazonaws.com" for p in env.principals], dtype=bool)[t.ch_principal]
        factor[svc & ~lam] = 0.0
    return w * factor, human


# ----------------------------------------------------------------------------- day context
@dataclass
class DayContext:
    day_index: int
    day_ms: int
    weekday: bool
    travel_ip: np.ndarray  # per human: ct ip id of the day's hotel / mobile network, or -1

    @property
    def human_factor(self) -> float:
        return 1.0 if self.weekday else WEEKEND_FACTOR


def day_context(env: Environment, seed: int, day_index: int, day_ms: int, weekday: bool) -> DayContext:
    """Who travels on this day (the same for every account and region)."""
    rng = rng_for(seed, 77, day_index)
    n = len(env.humans)
    travelling = rng.random(n) < TRAVEL_PROBABILITY
    ip = env.travel_pool[rng.integers(0, len(env.travel_pool), size=n)]
    return DayContext(day_index, day_ms, weekday, np.where(travelling, ip, -1).astype(np.int32))


def human_ips(rng: np.random.Generator, t: CtTables, human: np.ndarray, times: np.ndarray, day: DayContext) -> np.ndarray:
    """Where each human's event comes from: office during working hours, else home, sometimes VPN."""
    n = len(times)
    local_h = ((times % DAY_MS) / 3_600_000.0 + t.h_tz[human]) % 24.0
    office = day.weekday & (local_h >= 8.5) & (local_h < 18.0)
    u = rng.random(n)
    cat = np.where(office, np.where(u < 0.65, 1, np.where(u < 0.93, 0, 2)), np.where(u < 0.86, 0, 2))
    ip = t.h_nets[human, cat, rng.integers(0, t.h_nets.shape[2], size=n)]
    trav = day.travel_ip[human]
    return np.where(trav >= 0, trav, ip).astype(np.int32)


# ----------------------------------------------------------------------------- API calls
def site_channel_weights(env: Environment, site: Site) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: expected share of calls in ``site`` on a working day (0 where not active)."""
    t = ct_tables(env)
    n_regions = len(env.regions)
    w = np.zeros(len(env.channels), dtype=np.float64)
    for ci, ch in enumerate(env.channels):
        p = env.principals[ch.principal]
        if p.account_index != site.account_index:
            continue
        if p.site >= 0:
            share = 1.0 if p.site == site.index else 0.0
        elif p.human >= 0:
            home = env.humans[p.human].home_region
            if n_regions == 1:
                share = 1.0
            else:
                share = 0.85 if home == site.region else 0.15 / (n_regions - 1)
        else:
            share = 1.0 / n_regions
        w[ci] = ch.weight * share
    return w, t.ch_human.copy()


def sample_api(
    rng: np.random.Generator,
    env: Environment,
    site: Site,
    times: np.ndarray,
    channel: np.ndarray,
    day: DayContext,
) -> dict[str, np.ndarray]:
    """API call specs for given times and channels."""
    t = ct_tables(env)
    cat = env.catalog
    n = len(times)
    ccat = t.ch_catalog[channel]
    op = np.zeros(n, dtype=np.int32)
    denied_p = np.zeros(n)
    throttle_p = np.zeros(n)
    nf_p = np.zeros(n)
    for ci in np.unique(ccat):
        m = ccat == ci
        name = CATALOG_NAMES[int(ci)]
        op[m] = cat.cat_ops[name][weighted_index(rng, cat.cat_cum[name], int(m.sum()))]
        d, th, nf = ERROR_RATES[name]
        denied_p[m], throttle_p[m], nf_p[m] = d, th, nf
    spec = _call_source(rng, env, cat, times, channel, op, (denied_p, throttle_p, nf_p), day)
    # resources
    res_kind = cat.op_resource[op]
    _, roff, rlen = t.site_resources[site.index]
    k = np.maximum(res_kind, 0)
    spec["resource"] = np.where(res_kind >= 0, roff[k] + (rng.random(n) * rlen[k]).astype(np.int64), -1)
    spec.update(_call_credentials(rng, t, spec["principal"], times, channel))
    return spec


def sample_data(
    rng: np.random.Generator,
    env: Environment,
    site: Site,
    times: np.ndarray,
    channel: np.ndarray,
    day: DayContext,
    source: str,
) -> dict[str, np.ndarray]:
    """Data-event specs (``source``: ``s3_data`` or ``lambda_execution``) for given times and channels.

    Addresses, user agents and credentials come from the channel as for management calls; resources
    are the principal's own buckets (with an object for object operations) or functions.
    """
    if source not in DATA_SOURCES:
        raise ValueError(f"data-event source: got {source!r}; allowed: {', '.join(DATA_SOURCES)}")
    t = ct_tables(env)
    d = data_tables(env)
    cat = d.catalog
    name = DATA_SOURCES[source]
    n = len(times)
    op = cat.cat_ops[name][weighted_index(rng, cat.cat_cum[name], n)].astype(np.int32)
    rates = tuple(np.full(n, r) for r in DATA_ERROR_RATES[name])
    spec = _call_source(rng, env, cat, times, channel, op, rates, day)  # type: ignore[arg-type]
    principal = spec["principal"]
    if source == "s3_data":
        slot = weighted_index(rng, np.cumsum(BUCKET_SLOT_WEIGHTS), n)
        pos = d.p_buckets[principal, slot]
        spec["resource"] = d.buckets[site.index][pos]
        key = rng.integers(0, OBJECTS_PER_BUCKET, size=n)
        obj = np.where(d.op_object[op], d.objects[site.index][pos, key], -1)
    else:
        slot = weighted_index(rng, np.cumsum(FUNCTION_SLOT_WEIGHTS), n)
        fns = d.functions[site.index]
        spec["resource"] = fns[d.p_functions[principal, slot] % len(fns)]
        obj = np.full(n, -1, dtype=np.int64)
    spec.update(_call_credentials(rng, t, principal, times, channel))
    spec["object"] = obj.astype(np.int64)
    return spec


def _call_source(
    rng: np.random.Generator,
    env: Environment,
    cat: OpCatalog,
    times: np.ndarray,
    channel: np.ndarray,
    op: np.ndarray,
    error_p: tuple[np.ndarray, np.ndarray, np.ndarray],
    day: DayContext,
) -> dict[str, np.ndarray]:
    """User agent, source address and error of calls of ``op`` made over ``channel`` (shared by
    management and data events; the draws are in a fixed order, so a seed gives the same rows)."""
    t = ct_tables(env)
    n = len(times)
    principal = t.ch_principal[channel]
    denied_p, throttle_p, nf_p = error_p
    # user agent: fixed per channel, or the console's for console channels
    console_ua = np.where(rng.random(n) < 0.4, 0, cat.op_console_ua[op])  # 0 = "AWS Internal"
    ua = np.where(t.ch_ua[channel] >= 0, t.ch_ua[channel], console_ua).astype(np.int32)
    # source address
    net = t.ch_net[channel]
    ip = np.full(n, -1, dtype=np.int32)
    hm = net == NET_HUMAN
    if hm.any():
        ip[hm] = human_ips(rng, t, t.p_human[principal[hm]], times[hm], day)
    pm = net == NET_POOL
    if pm.any():
        off = t.ch_pool_off[channel[pm]]
        ln = t.ch_pool_len[channel[pm]]
        ip[pm] = t.pools[off + (rng.random(int(pm.sum())) * ln).astype(np.int64)]
    vpce = pm & (rng.random(n) < t.ch_vpce_share[channel])
    ip = np.where(vpce, t.p_private_ip[principal], ip)
    domain = np.where(net == NET_DOMAIN, t.p_domain[principal], -1).astype(np.int32)
    # errors
    u = rng.random(n)
    err = np.full(n, -1, dtype=np.int32)
    err = np.where(u < denied_p, cat.op_denied[op], err)
    th = (u >= denied_p) & (u < denied_p + throttle_p)
    err = np.where(th, cat.op_throttle[op], err)
    nf = (u >= denied_p + throttle_p) & (u < denied_p + throttle_p + nf_p)
    err = np.where(nf & (cat.op_notfound[op] >= 0), cat.op_notfound[op], err)
    return {
        "time": times,
        "principal": principal,
        "op": op,
        "ip": ip,
        "domain": domain,
        "vpce": vpce,
        "ua": ua,
        "error": err,
    }


def _call_credentials(
    rng: np.random.Generator, t: CtTables, principal: np.ndarray, times: np.ndarray, channel: np.ndarray
) -> dict[str, np.ndarray]:
    """Access key, session start and MFA of calls (IAM users' CLI calls use their long-term key)."""
    n = len(times)
    is_user = t.p_type[principal] == _type_id(t, "IAMUser")
    cli = t.ch_cli[channel]
    cred = np.where(is_user & cli, t.p_akia[principal], t.p_asia[principal]).astype(np.int32)
    human = t.p_human[principal]
    session = (cred >= 0) & ~(is_user & cli)
    created = np.where(session, times - rng.integers(60, 3600, size=n) * 1000, -1)
    mfa = np.where(session & (human >= 0) & ~cli, t.h_mfa[np.maximum(human, 0)], False)
    return {"cred": cred, "created": created, "session": session, "mfa": mfa}


def _actor_cols(cols: dict, t: CtTables, principal: np.ndarray, version: int, arn_valid: np.ndarray | None = None) -> pa.Array:
    """actor.user.* (and returns the ARN column, null where not ``arn_valid``)."""
    arn_idx = t.p_arn[principal]
    valid = arn_idx >= 0 if arn_valid is None else (arn_idx >= 0) & arn_valid
    arn = t.arn.take(arn_idx, valid)
    uid = t.uid.take(t.p_uid[principal])
    cols["actor.user.type"] = t.ptype.take(t.p_type[principal])
    cols["actor.user.name"] = t.name.take(t.p_name[principal])
    account = t.account.take(t.p_account[principal])
    if version == 1:
        cols["actor.user.uid"] = uid
        cols["actor.user.uuid"] = arn
        cols["actor.user.account_uid"] = account
    else:
        cols["actor.user.uid"] = arn
        cols["actor.user.uid_alt"] = uid
        cols["actor.user.account.uid"] = account
    cols["actor.invoked_by"] = t.invoked.take(t.p_invoked[principal])
    return arn


def api_table(
    env: Environment,
    site: Site,
    spec: dict[str, np.ndarray],
    version: int,
    rng: np.random.Generator,
    data: bool = False,
) -> pa.Table:
    """Arrow table of API Activity rows (3005 in v1, 6003 in v2).

    :param data: the spec holds data events (:func:`sample_data`): operations and resources come
        from :func:`data_tables`, a spec ``object`` (>= 0) adds the object after the bucket in
        ``resources``, and the product feature is ``Data``.
    """
    t = ct_tables(env)
    if data:
        dtab = data_tables(env)
        cat, rdict = dtab.catalog, dtab.resources[site.index]
    else:
        cat, rdict = env.catalog, t.site_resources[site.index][0]
    n = len(spec["time"])
    principal, op, err = spec["principal"], spec["op"], spec["error"]
    cols: dict[str, pa.Array] = {}
    _metadata(cols, n, version, ("1.09", "CloudTrail", "Data" if data else "Management"), ["cloud"])
    cols["metadata.uid"] = uuid_strings(rng, n)
    if version == 2:
        cols["metadata.event_code"] = const_str("AwsApiCall", n)
    cols["time"] = ints(spec["time"], pa.int64())
    if version == 2:
        cols["time_dt"] = timestamps_ms(spec["time"])
    cols["cloud.region"] = const_str(site.region, n)
    cols["cloud.provider"] = const_str("AWS", n)
    failed = err >= 0
    codes = StrDict([c for c, _ in cat.errors])
    code_of = np.array([codes.index(c) for c, _ in cat.errors], dtype=np.int32)
    fixed = StrDict([m or "" for _, m in cat.errors])
    fixed_of = np.array([fixed.index(m or "") for _, m in cat.errors], dtype=np.int32)
    needs_arn = np.array([m is None for _, m in cat.errors], dtype=bool)
    e = np.maximum(err, 0)
    cols["api.response.error"] = codes.take(code_of[e], failed)
    arn = _actor_cols(cols, t, principal, version)
    action = cat.op_action.take(op)
    built = pc.binary_join_element_wise(
        const_str("User: ", n), arn, const_str(" is not authorized to perform: ", n), action,
        const_str(" because no identity-based policy allows the ", n), action, const_str(" action", n), "",
    )  # fmt: skip
    by_arn = failed & needs_arn[e]
    message = pc.if_else(pa.array(by_arn), built, fixed.take(fixed_of[e], failed & ~needs_arn[e]))
    cols["api.response.message"] = message
    cols["api.operation"] = cat.operation.take(cat.op_operation[op])
    cols["api.service.name"] = cat.service.take(cat.op_service[op])
    cols["api.request.uid"] = uuid_strings(rng, n)
    # resources (0 or 1 per management call; data events: the bucket, then the object if any)
    has_res = spec["resource"] >= 0
    rkind = np.maximum(cat.op_resource[op], 0)
    rtypes = StrDict([RESOURCE_TYPES[k] for k in RESOURCE_KINDS])
    acct = const_str(site.account, n)
    if version == 1:
        owner = {"account_uid": acct}
    else:
        owner = {"owner": pa.StructArray.from_arrays(
            [pa.StructArray.from_arrays([acct], fields=list(O._ACCOUNT_V2))], fields=[pa.field("account", O._ACCOUNT_V2)]
        )}  # fmt: skip
    res_entries = [(has_res, {"uid": rdict.take(spec["resource"], has_res), **owner, "type": rtypes.take(rkind)})]
    if data and "object" in spec:
        has_obj = spec["object"] >= 0
        obj_uid = rdict.take(spec["object"], has_obj)
        res_entries.append((has_obj, {"uid": obj_uid, **owner, "type": const_str("AWS::S3::Object", n)}))
    cols["resources"] = list_of_structs(n, res_entries, O.schema_for("cloudtrail_api", version).field("resources").type)
    # session
    session = spec["session"]
    if version == 1:
        cols["actor.session.created_time"] = ints(spec["created"], pa.int64(), session)
        cols["actor.session.mfa"] = bools(spec["mfa"], session)
    else:
        cols["actor.session.created_time_dt"] = timestamps_ms(spec["created"], session)
        cols["actor.session.is_mfa"] = bools(spec["mfa"], session)
    cols["actor.session.issuer"] = t.issuer.take(t.p_issuer[principal], session & (t.p_issuer[principal] >= 0))
    cols["actor.user.credential_uid"] = t.cred.take(spec["cred"])
    cols["actor.idp.name"] = pa.nulls(n, pa.string())
    cols["http_request.user_agent"] = env.uas.take(spec["ua"])
    cols["src_endpoint.uid"] = t.vpce.take(t.p_vpce[principal], spec["vpce"])
    src_ip = env.ct_ips.take(spec["ip"])
    cols["src_endpoint.ip"] = src_ip
    cols["src_endpoint.domain"] = env.ct_ips.take(spec["domain"])
    _class_cols(cols, n, "cloudtrail_api", version)
    cols["status"] = StrDict(["Success", "Failure"]).take(failed.astype(np.int32))
    cols["status_id"] = ints(np.where(failed, 2, 1))
    activity = cat.op_activity[op]
    names = StrDict([ACTIVITY_NAMES[a] for a in (1, 2, 3, 4, 99)])
    aidx = np.searchsorted(np.array([1, 2, 3, 4, 99]), activity)
    cols["activity_id"] = ints(activity)
    cols["activity_name"] = names.take(aidx)
    cols["type_name"] = StrDict([f"API Activity: {ACTIVITY_NAMES[a]}" for a in (1, 2, 3, 4, 99)]).take(aidx)
    base = 300500 if version == 1 else 600300
    cols["type_uid"] = ints(base + activity, pa.int32() if version == 1 else pa.int64())
    read_only = StrDict(["false", "true"]).take((activity == 2).astype(np.int32))
    entries = [("recipientAccountId", None, acct), ("readOnly", None, read_only)]
    if version == 1:
        entries.append(("eventType", None, const_str("AwsApiCall", n)))
    if data:
        entries.append(("eventCategory", None, const_str("Data", n)))
    cols["unmapped"] = string_map(n, entries, O.MAP_STRING_STRING)
    if version == 2:
        name_idx = t.p_name[principal]
        cols["observables"] = list_of_structs(
            n,
            [
                (name_idx >= 0, _observable("actor.user.name", cols["actor.user.name"], "User Name", 4, n)),
                (spec["ip"] >= 0, _observable("src_endpoint.ip", src_ip, "IP Address", 2, n)),
            ],
            O.OBSERVABLES,
        )
    return assemble(O.schema_for("cloudtrail_api", version), cols, n)


# ----------------------------------------------------------------------------- console sign-ins
def sample_signins(
    rng: np.random.Generator, env: Environment, site: Site, day: DayContext, minute_weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Console sign-ins of the principals whose console home is ``site``."""
    t = ct_tables(env)
    who, lam = [], []
    for pi, rate in env.signin_principals:
        p = env.principals[pi]
        if p.account_index != site.account_index or env.humans[p.human].home_region != site.region:
            continue
        who.append(pi)
        lam.append(rate * day.human_factor)
    if not who:
        return empty_signins()
    who_a = np.array(who, dtype=np.int32)
    counts = rng.poisson(np.array(lam))
    principal = np.repeat(who_a, counts)
    n = len(principal)
    minute = weighted_index(rng, np.cumsum(minute_weights), n)
    times = day.day_ms + minute * 60_000 + rng.integers(0, 60, size=n) * 1000
    human = t.p_human[principal]
    ip = human_ips(rng, t, human, times, day)
    can_fail = np.isin(t.p_type[principal], [_type_id(t, "IAMUser"), _type_id(t, "Root")])
    retry = can_fail & (rng.random(n) < 0.06)
    gave_up = can_fail & (rng.random(n) < 0.01)
    spec_ok = _signin_spec(t, principal, times, ip, human, success=~gave_up)
    fail_rows = np.nonzero(retry)[0]
    spec_fail = _signin_spec(
        t,
        principal[fail_rows],
        times[fail_rows] - rng.integers(5, 90, size=len(fail_rows)) * 1000,
        ip[fail_rows],
        human[fail_rows],
        success=np.zeros(len(fail_rows), dtype=bool),
    )
    spec = concat_signin([spec_ok, spec_fail])
    keep = (spec["time"] >= day.day_ms) & (spec["time"] < day.day_ms + DAY_MS)
    return {k: v[keep] for k, v in spec.items()}


def _signin_spec(t: CtTables, principal, times, ip, human, success) -> dict[str, np.ndarray]:
    root = t.p_type[principal] == _type_id(t, "Root")
    assumed = t.p_type[principal] == _type_id(t, "AssumedRole")
    mfa = np.where(root, True, np.where(assumed, False, t.h_mfa[np.maximum(human, 0)]))
    return {
        "time": np.asarray(times, dtype=np.int64),
        "principal": np.asarray(principal, dtype=np.int32),
        "ip": np.asarray(ip, dtype=np.int32),
        "ua": t.h_browser[np.maximum(human, 0)].astype(np.int32),
        "success": np.asarray(success, dtype=bool),
        "mfa": mfa.astype(bool),
    }


def empty_signins() -> dict[str, np.ndarray]:
    return {
        "time": np.zeros(0, np.int64), "principal": np.zeros(0, np.int32), "ip": np.zeros(0, np.int32),
        "ua": np.zeros(0, np.int32), "success": np.zeros(0, bool), "mfa": np.zeros(0, bool),
    }  # fmt: skip


def concat_signin(specs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {k: np.concatenate([s[k] for s in specs]) for k in specs[0]}
    order = np.argsort(out["time"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def signin_table(env: Environment, site: Site, spec: dict[str, np.ndarray], version: int, rng: np.random.Generator) -> pa.Table:
    """Arrow table of console sign-in rows (Authentication 3002)."""
    t = ct_tables(env)
    n = len(spec["time"])
    principal = spec["principal"]
    ok = spec["success"]
    cols: dict[str, pa.Array] = {}
    _metadata(cols, n, version, ("1.08", "CloudTrail", "Management"), ["cloud"])
    cols["metadata.uid"] = uuid_strings(rng, n)
    if version == 2:
        cols["metadata.event_code"] = const_str("AwsConsoleSignIn", n)
    cols["time"] = ints(spec["time"], pa.int64())
    if version == 2:
        cols["time_dt"] = timestamps_ms(spec["time"])
    cols["cloud.region"] = const_str(site.region, n)
    cols["cloud.provider"] = const_str("AWS", n)
    cols["api.response.error"] = pa.nulls(n, pa.string())
    cols["api.response.message"] = StrDict(["Failed authentication"]).take(np.zeros(n, np.int32), ~ok)
    if version == 2:
        cols["api.response.data"] = StrDict(['{"ConsoleLogin":"Failure"}', '{"ConsoleLogin":"Success"}']).take(ok.astype(np.int32))
    cols["api.operation"] = const_str("ConsoleLogin", n)
    cols["api.version"] = pa.nulls(n, pa.string())
    cols["api.service.name"] = const_str("signin.amazonaws.com", n)
    cols["api.request.uid"] = const_str("''", n)
    cols["dst_endpoint.svc_name"] = const_str(CONSOLE_URL, n)
    arn = _actor_cols(cols, t, principal, version, arn_valid=ok)
    cols["actor.user.credential_uid"] = StrDict([""]).take(np.zeros(n, np.int32), ~ok)
    assumed = t.p_issuer[principal] >= 0
    cols["actor.session.issuer"] = t.issuer.take(t.p_issuer[principal], assumed)
    if version == 1:
        cols["actor.session.created_time"] = pa.nulls(n, pa.int64())
        cols["actor.session.mfa"] = pa.nulls(n, pa.bool_())
    cols["actor.idp.name"] = pa.nulls(n, pa.string())
    cols["http_request.user_agent"] = env.uas.take(spec["ua"])
    src_ip = env.ct_ips.take(spec["ip"])
    cols["src_endpoint.uid"] = pa.nulls(n, pa.string())
    cols["src_endpoint.ip"] = src_ip
    cols["src_endpoint.domain"] = pa.nulls(n, pa.string())
    _class_cols(cols, n, "cloudtrail_auth", version)
    uid = t.uid.take(t.p_uid[principal])
    if version == 1:
        cols["user.uid"] = uid
        cols["user.uuid"] = arn
    else:
        cols["user.uid"] = arn
        cols["user.uid_alt"] = uid
    cols["user.name"] = pa.nulls(n, pa.string())
    cols["activity_name"] = const_str("Logon", n)
    cols["activity_id"] = const_int(1, n)
    cols["type_uid"] = const_int(300201, n, pa.int32() if version == 1 else pa.int64())
    cols["type_name"] = const_str("Authentication: Logon", n)
    cols["status"] = StrDict(["Failure", "Success"]).take(ok.astype(np.int32))
    cols["status_id"] = ints(np.where(ok, 1, 2))
    cols["mfa" if version == 1 else "is_mfa"] = bools(spec["mfa"])
    mfa_id = t.p_mfa_id[principal]
    has_mfa_id = spec["mfa"] & (mfa_id >= 0)
    entries = [
        ("additionalEventData.MobileVersion", None, const_str("No", n)),
        ("additionalEventData.MFAIdentifier", has_mfa_id, t.name.take(mfa_id, has_mfa_id)),
        ("recipientAccountId", None, const_str(site.account, n)),
    ]
    if version == 1:
        entries.append(("eventType", None, const_str("AwsConsoleSignIn", n)))
    cols["unmapped"] = string_map(n, entries, O.MAP_STRING_STRING)
    if version == 2:
        name_idx = t.p_name[principal]
        cols["observables"] = list_of_structs(
            n,
            [
                (None, _observable("src_endpoint.ip", src_ip, "IP Address", 2, n)),
                (name_idx >= 0, _observable("actor.user.name", cols["actor.user.name"], "User Name", 4, n)),
            ],
            O.OBSERVABLES,
        )
    return assemble(O.schema_for("cloudtrail_auth", version), cols, n)
