"""Pairs of entities the model never saw: judged against their peer group, or ignored, per source.

A generated day is dropped into the trained site's lake and some of its rows are rewritten so they
carry entities absent from training: a new session of a known role from a network no session of
that role used, another from a network the role's sessions did use, a federated user of an account
without federated users, and two new instances (one talking to a known peer network, one not).
The day is scored through the local service; the findings are compared with the documented rule
evaluated here over the training profile's rows.
"""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.config import ConfigError, SeclakeConfig
from seclake_ml.locations import work_root
from seclake_ml.scoring import service
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.peers import REASON_NO_HISTORY, REASON_PEERS, peer_group

from .conftest import SOURCES, drop_day, make_config
from .test_scoring_local import _expected_flags, _ledger

DAY = date(2024, 3, 8)
FAR_IP = "203.0.113.7"  # TEST-NET-3: never in the generated lake
FED_IP = "198.51.100.23"
NEW_INSTANCE_FAR_IP = "192.0.2.44"


def _net(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip)) >> 8


def _profile_rows(site: dict) -> list[tuple[str, str]]:
    t = pq.read_table(Path(site["model_tmp"]) / "profile.parquet", columns=["entity", "ip"])
    return list(zip(t["entity"].to_pylist(), t["ip"].to_pylist()))


def _rewrite(path: Path, change) -> None:
    """Rewrite a lake object's rows with ``change(rows)`` (same schema)."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path, compression="zstd")


def _craft(site: dict, dropped: dict) -> dict:
    """Put unknown entities into the dropped day; returns what each crafted pair should give."""
    profile = _profile_rows(site)
    known = {e for e, _ in profile}
    lake = Path(site["lake"])
    trail = sorted(k for k in dropped["objects"] if "/CLOUD_TRAIL_MGMT/" in k)
    flows = sorted(k for k in dropped["objects"] if "/VPC_FLOW/" in k)
    assert trail and flows
    crafted: dict = {}

    def trail_change(rows: list[dict]) -> None:
        api = [r for r in rows if r["class_uid"] == 3005 and (r["actor"]["user"].get("uuid") or "").count(
            ":assumed-role/") and r["src_endpoint"]["ip"]]
        assert len(api) >= 3
        arn = api[0]["actor"]["user"]["uuid"]
        account = arn.split(":")[4]
        role = arn.split(":assumed-role/")[1].split("/")[0]
        group = peer_group(arn)[0]
        peer_ips = [ip for e, ip in profile if peer_group(e)[0] == group]
        assert peer_ips, "the role's sessions have no training history"
        assert _net(FAR_IP) not in {_net(ip) for ip in peer_ips}
        near_ip = str(ipaddress.IPv4Address((_net(peer_ips[0]) << 8) | 77))
        new_far = f"arn:aws:sts::{account}:assumed-role/{role}/attacker-session"
        new_near = f"arn:aws:sts::{account}:assumed-role/{role}/i-0feedfacecafe0009"
        fed = f"arn:aws:sts::{account}:federated-user/exfil"
        assert not any(peer_group(e)[0] == ("federated_user", account) for e in known)
        for row, (entity, ip) in zip(api, [(new_far, FAR_IP), (new_near, near_ip), (fed, FED_IP)]):
            row["actor"]["user"]["uuid"] = entity
            row["src_endpoint"]["ip"] = ip
        crafted["far"] = ("cloudtrail_api", new_far, FAR_IP, f"sessions of role {role} in account {account}")
        crafted["near"] = ("cloudtrail_api", new_near, near_ip)
        crafted["fed"] = ("cloudtrail_api", fed, FED_IP, f"federated users of account {account}")

    def flow_change(rows: list[dict]) -> None:
        inbound = [r for r in rows if r["connection_info"]["direction_id"] == 1 and r["dst_endpoint"]["instance_uid"]]
        assert len(inbound) >= 2
        instance_ips = [ip for e, ip in profile if e.startswith("i-")]
        near_ip = str(ipaddress.IPv4Address((_net(instance_ips[0]) << 8) | 201))
        assert _net(NEW_INSTANCE_FAR_IP) not in {_net(ip) for ip in instance_ips}
        for row, (entity, ip) in zip(inbound, [("i-0feedfacecafe0001", NEW_INSTANCE_FAR_IP),
                                              ("i-0feedfacecafe0002", near_ip)]):
            row["dst_endpoint"]["instance_uid"] = entity
            row["src_endpoint"]["ip"] = ip
        crafted["instance_far"] = ("vpc_flow", "i-0feedfacecafe0001", NEW_INSTANCE_FAR_IP)
        crafted["instance_near"] = ("vpc_flow", "i-0feedfacecafe0002", near_ip)

    _rewrite(lake / trail[0], trail_change)
    _rewrite(lake / flows[0], flow_change)
    for _, entity, *_rest in crafted.values():
        assert entity not in known
    return crafted


def _peer_rule(site: dict, cfg: SeclakeConfig) -> set[tuple[str, str, str]]:
    """The documented rule over every unknown-entity pair of the day, evaluated from the profile rows:
    flagged when the IP's /24 is not among the peers' /24s, or, on CloudTrail sources, when the peer
    group has no history."""
    import duckdb

    profile = _profile_rows(site)
    known = {e for e, _ in profile}
    nets: dict[tuple, set[int]] = {}
    for e, ip in profile:
        nets.setdefault(peer_group(e)[0], set()).add(_net(ip))
    out = set()
    for source, view in cfg.source_views():
        path = Path(site["work"]) / "expected" / f"{source}-{view}.parquet"  # written by _expected_flags
        for entity, ip in duckdb.execute("SELECT DISTINCT entity, ip FROM read_parquet($p)", {"p": str(path)}).fetchall():
            if entity in known:
                continue
            group = nets.get(peer_group(entity)[0])
            if group is None:
                if source in ("cloudtrail_signin", "cloudtrail_api"):
                    out.add((source, entity, ip))
            elif _net(ip) not in group:
                out.add((source, entity, ip))
    return out


def _score_day(site: dict, **scoring) -> tuple[dict, list[dict], dict, SeclakeConfig]:
    cfg = make_config(site, **scoring)
    ledger = _ledger(cfg)
    assert service.find_new_local_batch(cfg, ledger) is None  # adopts the training days
    dropped = drop_day(site, DAY)
    crafted = _craft(site, dropped)
    manifest = service.find_new_local_batch(cfg, ledger)
    summary = service.score_batch(cfg, ledger, manifest["batch_id"])
    records = read_findings(sorted(str(p) for p in (Path(site["lake"]) / "ext").rglob("*.parquet")))
    return summary, records, crafted, cfg


def _pair(r: dict) -> tuple[str, str, str]:
    u = r["unmapped"]
    return u["source"], u["entity"], u["ip"]


def test_unknown_entities_are_judged_against_their_peers(site: dict) -> None:
    from seclake_ml.scoring.report import format_batch

    summary, records, crafted, cfg = _score_day(site)
    t = summary["totals"]
    assert t["failed"] == 0 and t["scored"] > 0
    by_pair = {_pair(r): r for r in records}
    expected_known = _expected_flags(cfg, site)  # also writes the day's pairs that _peer_rule reads
    expected_unknown = _peer_rule(site, cfg)
    # known entities: flagged by the model exactly as before; unknown ones: by the peer rule
    assert set(by_pair) == expected_known | expected_unknown
    fired = {_pair(r) for r in records if "reason" in r["unmapped"]}
    assert fired == expected_unknown
    assert t["unknown_flagged"] == len([r for r in records if "reason" in r["unmapped"]]) >= 3
    assert t["unknown_entity"] >= 5

    source, entity, ip, group = crafted["far"]
    far = by_pair[(source, entity, ip)]
    expl = far["evidences"][0]["data"]["explanation"]
    assert far["unmapped"]["reason"] == expl["reason"] == REASON_PEERS
    assert far["unmapped"]["peer_group"] == expl["peer_group"] == group
    assert expl["text"].startswith(f"first seen principal {entity}; its peers ({group}, ")
    assert " were seen with " in expl["text"]
    assert f"; {ip} is outside them (nearest peer IP {expl['nearest_known_ip']} shares " in expl["text"]
    assert expl["text"] in far["message"] and expl["known_networks"] and expl["entity_known"] is False
    assert far["finding_info"]["desc"].startswith("The model never saw the entity; its peer group's known networks")
    # the score sits past the threshold by (32 - shared bits) / 16 severity units
    bits = expl["common_prefix_bits"]
    assert float(far["unmapped"]["score"]) == pytest.approx(site["threshold"] + (32 - min(bits, 23)) / 16)

    source, entity, ip, group = crafted["fed"]
    fed = by_pair[(source, entity, ip)]
    assert fed["unmapped"]["reason"] == REASON_NO_HISTORY
    assert fed["evidences"][0]["data"]["explanation"]["text"] == (
        f"first seen principal {entity} in a group with no history ({group}): no known principal of the group "
        f"to compare {ip} with")
    assert float(fed["unmapped"]["score"]) == pytest.approx(site["threshold"] + 0.75)
    assert fed["severity"] == "Medium"

    source, entity, ip = crafted["instance_far"]
    inst = by_pair[(source, entity, ip)]
    assert inst["evidences"][0]["data"]["explanation"]["text"].startswith(
        f"first seen instance {entity}; its peers (instances known to the model, ")
    # inside the peers' networks: not flagged
    for name in ("near", "instance_near"):
        assert crafted[name] not in by_pair
    lines = "\n".join(format_batch(service_batch(cfg, summary)))
    assert f"flagged by the unknown-entity policy {t['unknown_flagged']:,}" in lines


def service_batch(cfg: SeclakeConfig, summary: dict) -> dict:
    from seclake_ml.scoring.report import latest_batch

    batch = latest_batch(work_root(cfg))
    assert batch is not None and batch["batch_id"] == summary["batch_id"]
    return batch


def test_ignore_keeps_unknown_entities_unflagged(site: dict) -> None:
    summary, records, crafted, cfg = _score_day(site, unknown_entities={s.split(":")[0]: "ignore" for s in SOURCES})
    t = summary["totals"]
    assert t["failed"] == 0 and t["unknown_entity"] >= 5 and t["unknown_flagged"] == 0
    assert {_pair(r) for r in records} == _expected_flags(cfg, site)
    assert not any("reason" in r["unmapped"] for r in records)
    for value in crafted.values():
        assert tuple(value[:3]) not in {_pair(r) for r in records}


def test_policy_setting_is_validated() -> None:
    ok = SeclakeConfig.from_mapping({"extra": {"scoring": {"unknown_entities": {"vpc_flow": "ignore"}}}})
    assert ok.scoring.unknown_entities == {"vpc_flow": "ignore"}
    assert SeclakeConfig.from_mapping({}).scoring.unknown_entities == {}
    with pytest.raises(ConfigError, match=r"extra\.scoring\.unknown_entities\.vpc_flw"):
        SeclakeConfig.from_mapping({"extra": {"scoring": {"unknown_entities": {"vpc_flw": "ignore"}}}})
    with pytest.raises(ConfigError, match=r"'extra\.scoring\.unknown_entities\.vpc_flow': got 'flag'; allowed: peers"):
        SeclakeConfig.from_mapping({"extra": {"scoring": {"unknown_entities": {"vpc_flow": "flag"}}}})
    with pytest.raises(ConfigError, match=r"'extra\.scoring\.unknown_entities': got 'peers'"):
        SeclakeConfig.from_mapping({"extra": {"scoring": {"unknown_entities": "peers"}}})


@pytest.mark.parametrize("entity, key, label", [
    ("arn:aws:iam::123456789012:user/ana", ("iam_user", "123456789012"), "IAM users of account 123456789012"),
    ("arn:aws:sts::123456789012:assumed-role/Deploy/i-0abc", ("role", "123456789012", "Deploy"),
     "sessions of role Deploy in account 123456789012"),
    ("arn:aws:iam::123456789012:role/service/Deploy", ("role", "123456789012", "Deploy"),
     "sessions of role Deploy in account 123456789012"),
    ("arn:aws:sts::123456789012:federated-user/bob", ("federated_user", "123456789012"),
     "federated users of account 123456789012"),
    ("arn:aws:iam::123456789012:root", ("root", "123456789012"), "the root user of account 123456789012"),
    ("AROAEXAMPLEEXAMPLE12:session", ("principal_id", "AROA"), "principals with AROA ids"),
    ("i-0123456789abcdef0", ("instance",), "instances known to the model"),
    ("10.1.2.3", ("address",), "entities named by an address"),
    ("x\nrm -rf", ("other",), "other entities"),
])
def test_peer_groups_come_from_the_entity_name(entity: str, key: tuple, label: str) -> None:
    assert peer_group(entity)[:2] == (key, label)


def test_without_a_readable_profile_unknown_pairs_are_counted_not_flagged(caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    from seclake_ml.ipinsights.history import HistoryIndex
    from seclake_ml.scoring.peers import UnknownPolicy

    def broken() -> None:
        raise OSError("profile.parquet: no such file")

    policy = UnknownPolicy({}, broken, threshold=1.0)
    assert policy.unknown("cloudtrail_api", np.array([True, False]), ["a", "b"]).tolist() == [False, True]
    verdict = policy.judge("cloudtrail_api", "arn:aws:iam::123456789012:user/new", "203.0.113.9")
    assert not verdict.flagged and "no entity profile (OSError: profile.parquet: no such file)" in caplog.text
    # aws (the scorer cannot tell): without a profile the endpoint's score stands
    assert UnknownPolicy({}, None, threshold=1.0).unknown("vpc_flow", None, ["i-0123456789abcdef0"]) is None
    # with one, the profile tells; under "ignore" nothing is asked of it
    history = HistoryIndex.from_pairs(["arn:aws:iam::123456789012:user/ana"], ["198.51.100.7"])
    peers = UnknownPolicy({"vpc_flow": "ignore"}, lambda: history, threshold=1.0, severity_scale=2.0)
    assert peers.unknown("cloudtrail_api", None, ["arn:aws:iam::123456789012:user/ana", "x"]).tolist() == [False, True]
    assert peers.unknown("vpc_flow", None, ["x"]) is None
    near = peers.judge("cloudtrail_api", "arn:aws:iam::123456789012:user/new", "198.51.100.200")
    far = peers.judge("cloudtrail_api", "arn:aws:iam::123456789012:user/new", "198.51.101.1")
    assert not near.flagged and far.flagged
    # 198.51.100.7 and 198.51.101.1 share 23 leading bits: (32 - 23) / 16 severity units of 2.0 past 1.0
    assert far.explanation["common_prefix_bits"] == 23 and far.score == pytest.approx(1.0 + 2.0 * 9 / 16)
    other_account = peers.judge("cloudtrail_signin", "arn:aws:iam::999999999999:user/new", "198.51.100.7")
    assert other_account.flagged and other_account.no_history and other_account.score == pytest.approx(1.0 + 2.0 * 0.75)
    assert not peers.judge("vpc_flow", "i-0123456789abcdef0", "198.51.100.7").flagged  # no history: counted only
