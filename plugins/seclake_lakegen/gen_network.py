"""VPC flow (class 4001) and Route 53 resolver query (class 4003) rows, fully vectorised.

Rows are first drawn as a *spec*: a dict of NumPy arrays describing each flow (owner instance, peer
address, direction, ports, counters …). Injected anomaly rows use the same spec format, so both go
through one builder that turns specs into an Arrow table of the source version's schema.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import ocsf_schemas as O
from .gen_common import (
    StrDict,
    assemble,
    const_column,
    const_int,
    const_str,
    ints,
    list_of_structs,
    string_map,
    timestamps_ms,
    weighted_index,
)
from .gen_env import K_ADMIN, K_SCANNER, SCAN_PORTS, Environment, Site

SPEC_KEYS = (
    "time", "end", "owner", "peer", "direction", "proto", "src_port", "dst_port", "flags", "packets", "bytes",
    "accept", "v6", "boundary", "svc", "nodata",
)  # fmt: skip

_BOUNDARY = StrDict(["-", "Same VPC", "Internet/VPC Gateway"])
_BOUNDARY_ID = np.array([99, 4, 5], dtype=np.int32)
_DIRECTION = StrDict(["Unknown", "Inbound", "Outbound"])
_PROTO_VER = StrDict(["IPv4", "IPv6"])
_STATUS = StrDict(["OK", "NODATA"])
_ACT_NAME = StrDict(["Unknown", "Refuse", "Traffic"])
_TYPE_NAME = StrDict([f"Network Activity: {a}" for a in ("Unknown", "Refuse", "Traffic")])
_DISPOSITION = StrDict(["Unknown", "Blocked", "Allowed"])
_DISPOSITION_ID = np.array([0, 2, 1], dtype=np.int32)
_ACTION = StrDict(["Unknown", "Denied", "Allowed"])
_ACTION_ID = np.array([0, 2, 1], dtype=np.int32)
_ACTIVITY_ID = np.array([0, 5, 6], dtype=np.int32)

#: share of flow records that are NODATA ("-" addresses) as real flow logs carry
NODATA_SHARE = 0.002


def _pick(rng: np.random.Generator, values: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    return values[weighted_index(rng, np.cumsum(probs), n)]


# ----------------------------------------------------------------------------- VPC flow
def sample_flows(rng: np.random.Generator, site: Site, times: np.ndarray) -> dict[str, np.ndarray]:
    """Baseline flow specs for ``times`` (sorted epoch ms) in ``site``."""
    n = len(times)
    cv = site.conv
    c = weighted_index(rng, cv["cum"], n)
    owner = cv["owner"][c]
    kind = cv["kind"][c]
    proto = cv["proto"][c].astype(np.int32)
    inbound_only = cv["inbound_only"][c]
    direction = np.where(inbound_only | (rng.random(n) < 0.5), 1, 2).astype(np.int32)
    port = cv["port"][c].copy()
    accept = rng.random(n) < cv["accept_p"][c]
    scan = kind == K_SCANNER
    if scan.any():
        sp = rng.integers(0, len(SCAN_PORTS), size=int(scan.sum()))
        port[scan] = SCAN_PORTS[sp]
        accept[scan] = site.open_ports[owner[scan], sp]
    owner_is_server = ~cv["client_owner"][c]
    src_is_server = (direction == 2) == owner_is_server
    eph = rng.integers(32768, 61000, size=n).astype(np.int32)
    icmp = (proto == 1) | (proto == 58)
    src_port = np.where(icmp, 0, np.where(src_is_server, port, eph)).astype(np.int32)
    dst_port = np.where(icmp, 0, np.where(src_is_server, eph, port)).astype(np.int32)

    tcp = proto == 6
    client_flags = _pick(rng, np.array([3, 2, 1, 0, 4, 19]), np.array([0.5, 0.08, 0.15, 0.17, 0.04, 0.06]), n)
    server_flags = _pick(rng, np.array([19, 18, 1, 0, 3]), np.array([0.5, 0.15, 0.15, 0.15, 0.05]), n)
    flags = np.where(src_is_server, server_flags, client_flags)
    flags = np.where(~accept | scan, 2, flags)
    flags = np.where(tcp, flags, 0).astype(np.int32)

    mu = cv["mu"][c]
    packets = np.maximum(1, rng.lognormal(mu - 6.0, 1.1)).astype(np.int64)
    size = np.where(src_is_server, rng.integers(600, 1450, size=n), rng.integers(52, 320, size=n))
    rejected = ~accept
    packets = np.where(rejected, rng.integers(1, 3, size=n), packets)
    size = np.where(rejected, _pick(rng, np.array([40, 44, 60]), np.array([0.5, 0.3, 0.2]), n), size)
    udp = proto == 17
    packets = np.where(udp, rng.integers(1, 3, size=n), packets)
    size = np.where(udp, 76, size)
    packets = np.where(icmp, rng.integers(1, 6, size=n), packets)
    size = np.where(icmp, 84, size)
    admin = kind == K_ADMIN
    size = np.where(admin & ~src_is_server, rng.integers(52, 180, size=n), size)

    boundary = np.where(np.isin(kind, (0, 1)), 1, 2).astype(np.int8)  # egress: same VPC / internet gateway
    return {
        "time": times,
        "end": times + rng.integers(0, 61, size=n) * 1000,
        "owner": owner,
        "peer": cv["peer"][c],
        "direction": direction,
        "proto": proto,
        "src_port": src_port,
        "dst_port": dst_port,
        "flags": flags,
        "packets": packets.astype(np.int64),
        "bytes": (packets * size).astype(np.int64),
        "accept": accept,
        "v6": cv["v6"][c],
        "boundary": boundary,
        "svc": cv["svc"][c],
        "nodata": rng.random(n) < NODATA_SHARE,
    }


def concat_specs(specs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate specs and order the rows by time (stable)."""
    specs = [s for s in specs if len(s["time"])]
    if not specs:
        return {}
    if len(specs) == 1:
        return specs[0]
    keys = specs[0].keys()
    out = {k: np.concatenate([s[k] for s in specs]) for k in keys}
    order = np.argsort(out["time"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _str_list(values: list[str], n: int) -> pa.Array:
    """``n`` copies of the same list of strings (``metadata.profiles``)."""

    def build(m: int) -> pa.Array:
        k = len(values)
        offsets = pa.array(np.arange(m + 1, dtype=np.int32) * k)
        flat = StrDict(values).take(np.tile(np.arange(k, dtype=np.int32), m))
        return pa.ListArray.from_arrays(offsets, flat, type=O._list(pa.string()))

    return const_column(("list", *values), n, build)


def _metadata(cols: dict, n: int, version: int, product: tuple[str, str, str], profiles: list[str]) -> None:
    pversion, pname, feature = product
    cols["metadata.product.version"] = const_str(pversion, n)
    cols["metadata.product.name"] = const_str(pname, n)
    cols["metadata.product.feature.name"] = const_str(feature, n)
    cols["metadata.product.vendor_name"] = const_str("AWS", n)
    cols["metadata.profiles"] = _str_list(profiles + (["datetime"] if version == 2 else []), n)
    cols["metadata.version"] = const_str(O.OCSF_VERSION[version], n)


def _class_cols(cols: dict, n: int, kind: str, version: int) -> None:
    class_uid, class_name, category_uid, category_name = O.CLASS_INFO[(kind, version)]
    cols["class_uid"] = const_int(class_uid, n)
    cols["class_name"] = const_str(class_name, n)
    cols["category_uid"] = const_int(category_uid, n)
    cols["category_name"] = const_str(category_name, n)
    cols["severity_id"] = const_int(1, n)
    cols["severity"] = const_str("Informational", n)


def _observable(name: pa.Array | str, value: pa.Array, type_name: str, type_id: int, n: int) -> dict[str, pa.Array]:
    return {
        "name": const_str(name, n) if isinstance(name, str) else name,
        "value": value,
        "type": const_str(type_name, n),
        "type_id": const_int(type_id, n),
    }


def flow_table(site: Site, spec: dict[str, np.ndarray], version: int) -> pa.Table:
    """Arrow table of VPC flow rows (class 4001) for ``spec``."""
    n = len(spec["time"])
    owner = spec["owner"]
    d = spec["direction"]
    nodata = spec["nodata"]
    egress = d == 2
    ok = ~nodata
    own_ip = np.where(spec["v6"], site.inst_ip6[owner], site.inst_ip[owner])
    src_ip_idx = np.where(nodata, 0, np.where(egress, own_ip, spec["peer"]))
    dst_ip_idx = np.where(nodata, 0, np.where(egress, spec["peer"], own_ip))
    src_ip = site.ips.take(src_ip_idx)
    dst_ip = site.ips.take(dst_ip_idx)
    cols: dict[str, pa.Array] = {}
    _metadata(cols, n, version, ("5", "Amazon VPC", "Flowlogs"), ["cloud", "security_control"])
    if version == 1:
        cols["cloud.account_uid"] = const_str(site.account, n)
    else:
        cols["cloud.account.uid"] = const_str(site.account, n)
    cols["cloud.region"] = const_str(site.region, n)
    cols["cloud.zone"] = site.inst_take("zone", owner)
    cols["cloud.provider"] = const_str("AWS", n)
    svc_peer = np.where(nodata, 0, spec["svc"])
    for side, own_side in (("src_endpoint", egress | nodata), ("dst_endpoint", ~egress & ok)):
        ids_valid = own_side & ok
        peer_side = ~own_side & ok
        cols[f"{side}.port"] = ints(spec["src_port"] if side == "src_endpoint" else spec["dst_port"], pa.int32(), ok)
        cols[f"{side}.svc_name"] = site.svc_names.take(np.where(peer_side, svc_peer, 0))
        cols[f"{side}.ip"] = src_ip if side == "src_endpoint" else dst_ip
        cols[f"{side}.intermediate_ips"] = pa.nulls(n, type=O._list(pa.string()))
        cols[f"{side}.interface_uid"] = site.inst_take("eni", owner, own_side)
        cols[f"{side}.vpc_uid"] = site.inst_take("vpc", owner, ids_valid)
        cols[f"{side}.instance_uid"] = site.inst_take("uid", owner, ids_valid)
        cols[f"{side}.subnet_uid"] = site.inst_take("subnet", owner, ids_valid)
    direction = np.where(nodata, 0, d)
    cols["connection_info.protocol_num"] = ints(spec["proto"], pa.int32(), ok)
    cols["connection_info.tcp_flags"] = ints(spec["flags"], pa.int32(), ok)
    cols["connection_info.protocol_ver"] = _PROTO_VER.take(spec["v6"].astype(np.int32), ok)
    b = np.where(egress & ok, spec["boundary"], 0).astype(np.int32)
    cols["connection_info.boundary_id"] = ints(_BOUNDARY_ID[b])
    cols["connection_info.boundary"] = _BOUNDARY.take(b)
    cols["connection_info.direction_id"] = ints(direction)
    cols["connection_info.direction"] = _DIRECTION.take(direction)
    cols["traffic.packets"] = ints(spec["packets"], pa.int64(), ok)
    cols["traffic.bytes"] = ints(spec["bytes"], pa.int64(), ok)
    cols["time"] = ints(spec["time"], pa.int64())
    if version == 1:
        cols["start_time"] = cols["time"]
        cols["end_time"] = ints(spec["end"], pa.int64())
    else:
        cols["time_dt"] = cols["time"].view(O.TIMESTAMP_MS_UTC)
        cols["start_time_dt"] = cols["time_dt"]
        cols["end_time_dt"] = timestamps_ms(spec["end"])
    cols["status_code"] = _STATUS.take(nodata.astype(np.int32))
    _class_cols(cols, n, "vpc_flow", version)
    a = np.where(nodata, 0, np.where(spec["accept"], 2, 1)).astype(np.int32)  # 0 unknown, 1 refuse, 2 traffic
    activity = _ACTIVITY_ID[a]
    cols["activity_id"] = ints(activity)
    cols["activity_name"] = _ACT_NAME.take(a)
    cols["disposition"] = _DISPOSITION.take(a)
    cols["disposition_id"] = ints(_DISPOSITION_ID[a])
    cols["type_name"] = _TYPE_NAME.take(a)
    if version == 1:
        cols["type_uid"] = ints(400100 + activity, pa.int32())
    else:
        cols["type_uid"] = ints(400100 + activity, pa.int64())
        cols["action"] = _ACTION.take(a)
        cols["action_id"] = ints(_ACTION_ID[a])
    cols["unmapped"] = const_column(
        ("vpc_unmapped",),
        n,
        lambda m: string_map(
            m, [("sublocation_id", None, const_str("-", m)), ("sublocation_type", None, const_str("-", m))], O.MAP_STRING_STRING
        ),
    )
    if version == 2:
        inst_side = StrDict(["src_endpoint.instance_uid", "dst_endpoint.instance_uid"])
        cols["observables"] = list_of_structs(
            n,
            [
                (ok, _observable("dst_endpoint.ip", dst_ip, "IP Address", 2, n)),
                (ok, _observable(inst_side.take((~egress).astype(np.int32)), site.inst_take("uid", owner), "Resource UID", 10, n)),
                (ok, _observable("src_endpoint.ip", src_ip, "IP Address", 2, n)),
            ],
            O.OBSERVABLES,
        )
    return assemble(O.schema_for("vpc_flow", version), cols, n)


# ----------------------------------------------------------------------------- Route 53
_QTYPE = StrDict(["A", "AAAA"])
_ANS_TYPE = StrDict(["A", "CNAME", "AAAA"])
_RCODE_D = StrDict(["NoError", "ServFail", "NXDomain"])
_RCODE_I = np.zeros(4, dtype=np.int32)
_RCODE_I[[0, 2, 3]] = [0, 1, 2]


def sample_dns(rng: np.random.Generator, site: Site, times: np.ndarray) -> dict[str, np.ndarray]:
    n = len(times)
    c = weighted_index(rng, site.dns["cum"], n)
    return {
        "time": times,
        "owner": site.dns["owner"][c],
        "key": site.dns["key"][c],
        "port": rng.integers(1024, 65535, size=n).astype(np.int32),
        "tcp": rng.random(n) < 0.03,
        "servfail": rng.random(n) < 0.002,
    }


def dns_table(env: Environment, site: Site, spec: dict[str, np.ndarray], version: int) -> pa.Table:
    """Arrow table of Route 53 resolver query rows (class 4003) for ``spec``."""
    n = len(spec["time"])
    keys = env.dns_keys
    key = spec["key"]
    owner = spec["owner"]
    rcode = np.where(spec["servfail"], 2, keys["rcode"][key]).astype(np.int32)
    has_answers = rcode == 0
    lengths = np.where(has_answers, keys["ans_len"][key], 0)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    row_of = np.repeat(np.arange(n), lengths)
    within = np.arange(total) - np.repeat(offsets[:-1], lengths)
    flat = keys["ans_off"][key][row_of] + within
    answers = pa.StructArray.from_arrays(
        [
            _ANS_TYPE.take(keys["ans_type"][flat].astype(np.int32)),
            env.dns_rdata.take(keys["ans_rdata"][flat]),
            const_str("IN", total),
        ],
        fields=list(O._DNS_ANSWER),
    )
    answers_col = pa.ListArray.from_arrays(
        pa.array(offsets), answers, type=O._list(O._DNS_ANSWER), mask=pa.array(~has_answers)
    )
    cols: dict[str, pa.Array] = {}
    _metadata(cols, n, version, ("1.100000", "Route 53", "Resolver Query Logs"), ["cloud", "security_control"])
    if version == 1:
        cols["cloud.account_uid"] = const_str(site.account, n)
    else:
        cols["cloud.account.uid"] = const_str(site.account, n)
    cols["cloud.region"] = const_str(site.region, n)
    cols["cloud.provider"] = const_str("AWS", n)
    src_ip = site.ips.take(site.inst_ip[owner])
    cols["src_endpoint.vpc_uid"] = site.inst_take("vpc", owner)
    cols["src_endpoint.ip"] = src_ip
    cols["src_endpoint.port"] = ints(spec["port"])
    cols["src_endpoint.instance_uid"] = site.inst_take("uid", owner)
    cols["time"] = ints(spec["time"], pa.int64())
    if version == 2:
        cols["time_dt"] = timestamps_ms(spec["time"])
    hostnames = env.dns_hosts.take(keys["host"][key])
    cols["query.hostname"] = hostnames
    cols["query.type"] = _QTYPE.take(keys["qtype"][key].astype(np.int32))
    cols["query.class"] = const_str("IN", n)
    cols["answers"] = answers_col
    cols["connection_info.protocol_name"] = StrDict(["UDP", "TCP"]).take(spec["tcp"].astype(np.int32))
    cols["connection_info.direction"] = const_str("Unknown", n)
    cols["connection_info.direction_id"] = const_int(0, n)
    cols["dst_endpoint.instance_uid"] = pa.nulls(n, pa.string())
    cols["dst_endpoint.interface_uid"] = pa.nulls(n, pa.string())
    _class_cols(cols, n, "route53", version)
    cols["rcode_id"] = ints(rcode)
    cols["rcode"] = _RCODE_D.take(_RCODE_I[rcode])
    vpc_of_owner = np.array([x.vpc_index for x in site.instances], dtype=np.int32)[owner]
    fw_group, fw_list = StrDict(), StrDict()
    fw_group_of = np.array([fw_group.add(fw[0]) if fw else -1 for fw in site.firewall], dtype=np.int32)[vpc_of_owner]
    fw_list_of = np.array([fw_list.add(fw[1]) if fw else -1 for fw in site.firewall], dtype=np.int32)[vpc_of_owner]
    has_fw = fw_group_of >= 0
    if version == 1:
        cols["activity_id"] = const_int(2, n)
        cols["activity_name"] = const_str("Response", n)
        cols["type_name"] = const_str("DNS Activity: Response", n)
        cols["type_uid"] = const_int(400302, n)
        cols["disposition"] = const_str("No Action", n)
        cols["disposition_id"] = const_int(16, n)
        cols["unmapped"] = string_map(
            n,
            [
                ("firewall_rule_group_id", has_fw, fw_group.take(fw_group_of, has_fw)),
                ("firewall_domain_list_id", has_fw, fw_list.take(fw_list_of, has_fw)),
            ],
            O.MAP_STRING_STRING,
        )
    else:
        cols["activity_id"] = const_int(6, n)
        cols["activity_name"] = const_str("Traffic", n)
        cols["type_name"] = const_str("DNS Activity: Traffic", n)
        cols["type_uid"] = const_int(400306, n, pa.int64())
        cols["action"] = const_str("Allowed", n)
        cols["action_id"] = const_int(1, n)
        cols["disposition"] = const_str("Allowed", n)
        cols["disposition_id"] = const_int(1, n)
        cols["firewall_rule.uid"] = fw_group.take(fw_group_of, has_fw)
        cols["unmapped"] = string_map(
            n, [("firewall_domain_list_id", has_fw, fw_list.take(fw_list_of, has_fw))], O.MAP_STRING_STRING
        )
        first_ip = np.where(has_answers, keys["first_ip"][key], -1)
        cols["observables"] = list_of_structs(
            n,
            [
                (first_ip >= 0, _observable("answers[].rdata", env.dns_rdata.take(first_ip), "IP Address", 2, n)),
                (None, _observable("src_endpoint.ip", src_ip, "IP Address", 2, n)),
                (None, _observable("query.hostname", hostnames, "Hostname", 1, n)),
            ],
            O.OBSERVABLES,
        )
    return assemble(O.schema_for("route53", version), cols, n)
