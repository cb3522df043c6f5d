"""Injected anomalies and their ground truth.

Five kinds, each drawn after the warm-up part of the period, from addresses in networks (first
octets) that no normal traffic ever uses:

* ``new_external_peer`` (VPC flow): an instance talks to a public address it never used before;
* ``scan`` (VPC flow): a new address probes several instances of one site on several ports
  (rejected, or accepted where the port is open); one ground-truth row per probed instance;
* ``signin_unseen_network`` (CloudTrail sign-in): an IAM user signs in to the console (sometimes after
  failed attempts) from a new network;
* ``api_unseen_network`` (CloudTrail API): a user, SSO session or instance role calls discovery APIs
  from a new network;
* ``data_access_new_network`` (S3 data events): a user, SSO session, instance or function role lists
  and reads buckets from a new network: ListBuckets, then ListObjectsV2 and GetObject over several of
  its own buckets and one or two of the site's buckets it never touched (some reads denied).

The rows go into the lake exactly like normal rows; only ``ground_truth/anomalies.parquet`` says which
they are. Entities are written as the pair extraction produces them: the instance id for VPC flows, the
principal ARN for CloudTrail.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .gen_cloudtrail import _type_id, ct_tables, data_tables
from .gen_common import DAY_MS, ip4, rng_for
from .gen_env import (
    ANOMALY_OCTETS,
    BROWSERS,
    DATA_ERROR_RATES,
    ERROR_RATES,
    SCAN_PORTS,
    UNSEEN_API_AGENTS,
    Environment,
    random_public_ip,
)

KINDS = ("new_external_peer", "scan", "signin_unseen_network", "api_unseen_network", "data_access_new_network")
SOURCE_OF_KIND = {
    "new_external_peer": "vpc_flow",
    "scan": "vpc_flow",
    "signin_unseen_network": "cloudtrail_signin",
    "api_unseen_network": "cloudtrail_api",
    "data_access_new_network": "s3_data",
}
VIEW_OF_SOURCE = {
    "vpc_flow": "instance_peer",
    "cloudtrail_signin": "principal_ip",
    "cloudtrail_api": "principal_ip",
    "s3_data": "principal_ip",
}
#: the generator source (``sources`` option) that must be enabled for a ground-truth source
_GENERATED_BY = {"vpc_flow": "vpc_flow", "cloudtrail_signin": "cloudtrail", "cloudtrail_api": "cloudtrail", "s3_data": "s3_data"}

GROUND_TRUTH_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("view", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("ip", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("account", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
    ]
)

_MARGIN_MS = 2 * 3_600_000  # every anomaly's rows end well before the period does


@dataclass
class AnomalyPlan:
    window: tuple[int, int]  # [first, last) epoch ms in which anomalies start
    truth: list[dict] = field(default_factory=list)
    flows: dict[tuple[int, int], list[dict[str, np.ndarray]]] = field(default_factory=lambda: defaultdict(list))
    signins: dict[tuple[int, int], list[dict[str, np.ndarray]]] = field(default_factory=lambda: defaultdict(list))
    api: dict[tuple[int, int], list[dict[str, np.ndarray]]] = field(default_factory=lambda: defaultdict(list))
    s3_data: dict[tuple[int, int], list[dict[str, np.ndarray]]] = field(default_factory=lambda: defaultdict(list))
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for t in self.truth:
            out[t["kind"]] += 1
        return out

    def events(self) -> dict[str, int]:
        """Injected events per kind (a scan of several instances is one event; each event has its own address)."""
        out = {k: 0 for k in KINDS}
        for kind, _ in sorted({(t["kind"], t["ip"]) for t in self.truth}):
            out[kind] += 1
        return out

    def truth_table(self) -> pa.Table:
        rows = sorted(self.truth, key=lambda r: (r["event_time"], r["source"], r["entity"], r["ip"]))
        cols = {f.name: [r[f.name] for r in rows] for f in GROUND_TRUTH_SCHEMA}
        cols["event_time"] = pa.array(np.array(cols["event_time"], dtype=np.int64), type=pa.int64()).view(
            pa.timestamp("ms", tz="UTC")
        )
        return pa.Table.from_pydict(cols, schema=GROUND_TRUTH_SCHEMA)


def _split_by_day(store, key_site: int, spec: dict[str, np.ndarray], start_ms: int) -> None:
    day = (spec["time"] - start_ms) // DAY_MS
    for d in np.unique(day):
        m = day == d
        store[(key_site, int(d))].append({k: v[m] for k, v in spec.items()})


def plan_anomalies(
    env: Environment,
    seed: int,
    start_ms: int,
    days: int,
    per_kind: int,
    warmup_fraction: float,
    sources: tuple[str, ...],
) -> AnomalyPlan:
    """Draw ``per_kind`` anomalies of each kind whose source is enabled."""
    end_ms = start_ms + days * DAY_MS
    lo = start_ms + int(round(warmup_fraction * days * DAY_MS))
    hi = end_ms - _MARGIN_MS
    plan = AnomalyPlan(window=(lo, max(lo, hi)))
    if per_kind <= 0:
        return plan
    if hi <= lo:
        raise ValueError(
            f"no room for anomalies after the warm-up: warmup_fraction={warmup_fraction} of {days} day(s) "
            "leaves less than 2 hours; lower warmup_fraction, add days or set anomalies_per_kind=0"
        )
    rng = rng_for(seed, 99)
    taken: set[str] = set()

    def new_ip() -> str:
        while True:
            ip = ip4(random_public_ip(rng, ANOMALY_OCTETS))
            if ip not in taken and ip not in env.used_ips:
                taken.add(ip)
                return ip

    def start_time() -> int:
        return int(rng.integers(lo // 1000, hi // 1000)) * 1000

    sites = [s for s in env.sites if s.instances]
    t = ct_tables(env)
    used: dict[str, set] = defaultdict(set)

    def pick(kind: str, candidates: list, key=lambda c: c):
        """A candidate not yet used for ``kind`` when there is one (else any)."""
        fresh = [c for c in candidates if key(c) not in used[kind]] or candidates
        choice = fresh[int(rng.integers(0, len(fresh)))]
        used[kind].add(key(choice))
        return choice

    for kind in KINDS:
        source = SOURCE_OF_KIND[kind]
        if _GENERATED_BY[source] not in sources:
            continue
        for _ in range(per_kind):
            t0 = start_time()
            ip = new_ip()
            if kind == "new_external_peer" and sites:
                site, owner = pick(kind, [(st, i) for st in sites for i in range(len(st.instances))], lambda c: (c[0].index, c[1]))
                spec = _peer_flows(rng, site, owner, site.ips.add(ip), t0)
                _split_by_day(plan.flows, site.index, spec, start_ms)
                plan.rows["vpc_flow"] += len(spec["time"])
                plan.truth.append(_truth(kind, site.instances[owner].uid, ip, t0, site.account, site.region))
            elif kind == "scan" and sites:
                site = pick(kind, sites, lambda c: c.index)
                n_t = min(len(site.instances), int(rng.integers(3, 9)))
                targets = rng.choice(len(site.instances), size=n_t, replace=False)
                spec, first = _scan_flows(rng, site, targets, site.ips.add(ip), t0)
                _split_by_day(plan.flows, site.index, spec, start_ms)
                plan.rows["vpc_flow"] += len(spec["time"])
                for tgt, ft in zip(targets, first):
                    plan.truth.append(_truth(kind, site.instances[int(tgt)].uid, ip, int(ft), site.account, site.region))
            elif kind == "signin_unseen_network":
                cands = [
                    pi for pi, _ in env.signin_principals if env.principals[pi].type == "IAMUser"
                ] or [pi for pi, _ in env.signin_principals]
                if not cands:
                    continue
                pi = pick(kind, cands)
                p = env.principals[pi]
                site = env.site_of(p.account_index, env.humans[p.human].home_region)
                ip_id = env.ct_ips.add(ip)
                ua = env.uas.add(BROWSERS[int(rng.integers(0, len(BROWSERS)))])
                # failed attempts carry no ARN; only IAM users and root keep their entity through them
                n_fail = int(rng.choice([0, 0, 1, 2])) if p.type in ("IAMUser", "Root") else 0
                times = t0 + np.concatenate([[0], np.sort(rng.integers(10, 240, size=n_fail))]) * 1000
                success = np.zeros(n_fail + 1, dtype=bool)
                success[-1] = True
                human = max(p.human, 0)
                spec = {
                    "time": times.astype(np.int64),
                    "principal": np.full(n_fail + 1, pi, dtype=np.int32),
                    "ip": np.full(n_fail + 1, ip_id, dtype=np.int32),
                    "ua": np.full(n_fail + 1, ua, dtype=np.int32),
                    "success": success,
                    "mfa": np.full(n_fail + 1, bool(t.h_mfa[human]) if p.type == "IAMUser" else p.type == "Root"),
                }
                _split_by_day(plan.signins, site.index, spec, start_ms)
                plan.rows["cloudtrail_signin"] += n_fail + 1
                plan.truth.append(_truth(kind, p.arn, ip, int(times[0]), p.account, site.region))
            elif kind == "api_unseen_network":
                cands = [
                    i for i, p in enumerate(env.principals)
                    if p.arn and (p.profile == "human" or p.profile == "instance")
                ]  # fmt: skip
                pi = pick(kind, cands)
                p = env.principals[pi]
                site = env.home_site(p)
                spec = _recon_calls(rng, env, pi, env.ct_ips.add(ip), t0)
                _split_by_day(plan.api, site.index, spec, start_ms)
                plan.rows["cloudtrail_api"] += len(spec["time"])
                plan.truth.append(_truth(kind, p.arn, ip, t0, p.account, site.region))
            elif kind == "data_access_new_network":
                cands = [
                    i for i, p in enumerate(env.principals)
                    if p.arn and p.profile in ("human", "instance", "lambda")
                ]  # fmt: skip
                pi = pick(kind, cands)
                p = env.principals[pi]
                site = env.home_site(p)
                spec = _bucket_sweep(rng, env, pi, site.index, env.ct_ips.add(ip), t0)
                _split_by_day(plan.s3_data, site.index, spec, start_ms)
                plan.rows["s3_data"] += len(spec["time"])
                plan.truth.append(_truth(kind, p.arn, ip, t0, p.account, site.region))
    return plan


def _truth(kind: str, entity: str, ip: str, time_ms: int, account: str, region: str) -> dict:
    source = SOURCE_OF_KIND[kind]
    return {
        "source": source,
        "view": VIEW_OF_SOURCE[source],
        "entity": entity,
        "ip": ip,
        "event_time": int(time_ms),
        "kind": kind,
        "account": account,
        "region": region,
    }


def _flow_spec(n: int) -> dict[str, np.ndarray]:
    return {
        "time": np.zeros(n, np.int64), "end": np.zeros(n, np.int64), "owner": np.zeros(n, np.int32),
        "peer": np.zeros(n, np.int32), "direction": np.zeros(n, np.int32), "proto": np.full(n, 6, np.int32),
        "src_port": np.zeros(n, np.int32), "dst_port": np.zeros(n, np.int32), "flags": np.zeros(n, np.int32),
        "packets": np.zeros(n, np.int64), "bytes": np.zeros(n, np.int64), "accept": np.ones(n, bool),
        "v6": np.zeros(n, bool), "boundary": np.full(n, 2, np.int8), "svc": np.zeros(n, np.int32),
        "nodata": np.zeros(n, bool),
    }  # fmt: skip


def _peer_flows(rng: np.random.Generator, site, owner: int, peer: int, t0: int) -> dict[str, np.ndarray]:
    """An instance connects out to a new public address a few times within half an hour."""
    conns = int(rng.integers(2, 7))
    n = 2 * conns
    s = _flow_spec(n)
    offs = np.concatenate([[0], np.sort(rng.integers(1, 1800, size=conns - 1))])
    port = int(rng.choice([443, 443, 8443, 4444, 8080]))
    eph = rng.integers(32768, 61000, size=conns)
    for k in range(conns):
        for j, d in enumerate((2, 1)):  # request (egress) then response (ingress)
            i = 2 * k + j
            s["time"][i] = t0 + offs[k] * 1000
            s["end"][i] = s["time"][i] + int(rng.integers(5, 60)) * 1000
            s["direction"][i] = d
            s["src_port"][i] = eph[k] if d == 2 else port
            s["dst_port"][i] = port if d == 2 else eph[k]
            s["flags"][i] = 3 if d == 2 else 19
            s["packets"][i] = int(rng.integers(8, 400))
            s["bytes"][i] = s["packets"][i] * int(rng.integers(400, 1400) if d == 2 else rng.integers(60, 300))
    s["owner"][:] = owner
    s["peer"][:] = peer
    order = np.argsort(s["time"], kind="stable")
    return {k: v[order] for k, v in s.items()}


def _scan_flows(rng: np.random.Generator, site, targets: np.ndarray, peer: int, t0: int):
    """A new address probes ``targets`` on a few ports each."""
    rows = []
    first = []
    t = t0
    for tgt in targets:
        ports_idx = rng.choice(len(SCAN_PORTS), size=int(rng.integers(2, 7)), replace=False)
        first.append(t)
        for pi in ports_idx:
            open_ = bool(site.open_ports[int(tgt), int(pi)])
            eph = int(rng.integers(32768, 61000))
            rows.append((t, int(tgt), 1, eph, int(SCAN_PORTS[pi]), 2, open_))
            if open_:
                rows.append((t, int(tgt), 2, int(SCAN_PORTS[pi]), eph, 18, True))
            t += int(rng.integers(0, 4)) * 1000
        t += int(rng.integers(1, 20)) * 1000
    n = len(rows)
    s = _flow_spec(n)
    for i, (tm, owner, d, sp, dp, fl, acc) in enumerate(rows):
        s["time"][i] = tm
        s["end"][i] = tm + int(rng.integers(1, 60)) * 1000
        s["owner"][i] = owner
        s["direction"][i] = d
        s["src_port"][i] = sp
        s["dst_port"][i] = dp
        s["flags"][i] = fl
        s["accept"][i] = acc
        s["packets"][i] = 1
        s["bytes"][i] = int(rng.choice([40, 44, 60]))
    s["peer"][:] = peer
    order = np.argsort(s["time"], kind="stable")
    return {k: v[order] for k, v in s.items()}, first


def _recon_calls(rng: np.random.Generator, env: Environment, pi: int, ip_id: int, t0: int) -> dict[str, np.ndarray]:
    """Discovery calls with the principal's credentials from a new network."""
    cat = env.catalog
    n = int(rng.integers(5, 21))
    times = t0 + np.concatenate([[0], np.sort(rng.integers(1, 1200, size=n - 1))]) * 1000
    ops = cat.cat_ops["recon"][np.searchsorted(cat.cat_cum["recon"], rng.random(n) * cat.cat_cum["recon"][-1], side="right")]
    denied, _, _ = ERROR_RATES["recon"]
    err = np.where(rng.random(n) < denied, cat.op_denied[ops], -1).astype(np.int32)
    return _foreign_calls(rng, env, pi, ip_id, times, ops, err, np.full(n, -1, np.int64))


def _foreign_calls(rng: np.random.Generator, env: Environment, pi: int, ip_id: int, times: np.ndarray,
                   ops: np.ndarray, err: np.ndarray, resource: np.ndarray) -> dict[str, np.ndarray]:
    """Call specs made with principal ``pi``'s credentials from ``ip_id`` with an unseen API agent:
    its access key for an IAM user, otherwise a session key created ten minutes before each call."""
    t = ct_tables(env)
    n = len(times)
    is_user = int(t.p_type[pi]) == _type_id(t, "IAMUser")
    cred = t.p_akia[pi] if is_user else t.p_asia[pi]
    session = not is_user
    ua = env.uas.add(UNSEEN_API_AGENTS[int(rng.integers(0, len(UNSEEN_API_AGENTS)))])
    return {
        "time": times.astype(np.int64),
        "principal": np.full(n, pi, np.int32),
        "op": ops.astype(np.int32),
        "ip": np.full(n, ip_id, np.int32),
        "domain": np.full(n, -1, np.int32),
        "vpce": np.zeros(n, bool),
        "ua": np.full(n, ua, np.int32),
        "error": err,
        "resource": resource.astype(np.int64),
        "cred": np.full(n, cred, np.int32),
        "created": times - 600_000 if session else np.full(n, -1, np.int64),
        "session": np.full(n, session),
        "mfa": np.zeros(n, bool),
    }


def _bucket_sweep(rng: np.random.Generator, env: Environment, pi: int, site: int, ip_id: int, t0: int) -> dict[str, np.ndarray]:
    """S3 data events: the principal lists the buckets, then lists and reads several of its own and one
    or two it never touched, from a new network, within about half an hour."""
    d = data_tables(env)
    cat = d.catalog
    op_id = {cat.operation[int(o)]: i for i, o in enumerate(cat.op_operation)}
    own = [int(b) for b in d.p_buckets[pi]]
    others = [b for b in range(len(d.buckets[site])) if b not in own]
    targets = list(rng.choice(own, size=int(rng.integers(2, len(own) + 1)), replace=False))
    untouched = list(rng.choice(others, size=min(len(others), int(rng.integers(1, 3))), replace=False))
    ops, pos, keys = [op_id["ListBuckets"]], [-1], [-1]
    for b in rng.permutation(targets + untouched):
        ops.append(op_id["ListObjectsV2"])
        pos.append(int(b))
        keys.append(-1)
        for k in rng.choice(d.objects[site].shape[1], size=int(rng.integers(2, 7)), replace=False):
            ops.append(op_id["GetObject"])
            pos.append(int(b))
            keys.append(int(k))
    n = len(ops)
    op = np.array(ops, dtype=np.int32)
    b = np.array(pos, dtype=np.int64)
    times = t0 + np.concatenate([[0], np.sort(rng.integers(1, 1800, size=n - 1))]) * 1000
    denied, _, _ = DATA_ERROR_RATES["s3_recon"]
    never = np.isin(b, untouched)
    err = np.where(never & (rng.random(n) < denied), cat.op_denied[op], -1).astype(np.int32)
    resource = np.where(b >= 0, d.buckets[site][np.maximum(b, 0)], -1)
    obj = np.where((b >= 0) & (np.array(keys) >= 0), d.objects[site][np.maximum(b, 0), np.maximum(keys, 0)], -1)
    spec = _foreign_calls(rng, env, pi, ip_id, times, op, err, resource)
    spec["object"] = obj.astype(np.int64)
    return spec
