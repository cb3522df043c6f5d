"""Unknown entities on the aws backend (moto server): the endpoint cannot tell them, the profile can.

Uses the harness of :mod:`tests.aws.test_scoring_aws` (generated VPC flow lake, a model trained on
its first day standing in for the endpoint, the profile in S3 through the registry record). One
scored object is rewritten so two inbound flows reach instances absent from training: one from a
network no known instance talked to, one from a known instance network.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .test_scoring_aws import (  # noqa: F401  (fixtures)
    SCORE_DAY,
    Env,
    Site,
    activate,
    config,
    env,
    eventbridge,
    findings,
    flagged,
    ledger,
    no_poll_delay,
    pair_of,
    predict,
    score,
    site,
)

FAR_IP = "192.0.2.44"  # TEST-NET-1: never in the generated lake
FAR, NEAR = "i-0feedfacecafe0001", "i-0feedfacecafe0002"


def _net(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip)) >> 8


def _crafted_site(site: Site, tmp_path: Path, key: str) -> tuple[Site, str]:
    """A copy of the site whose object ``key`` carries the two new instances; returns it and the near IP."""
    profile = pq.read_table(site.profile, columns=["entity", "ip"]).to_pylist()
    known_nets = {_net(r["ip"]) for r in profile}
    assert _net(FAR_IP) not in known_nets
    near_ip = str(ipaddress.IPv4Address((_net(profile[0]["ip"]) << 8) | 203))
    table = pq.read_table(site.path(key))
    rows = table.to_pylist()
    inbound = [r for r in rows if r["connection_info"]["direction_id"] == 1 and r["dst_endpoint"]["instance_uid"]]
    assert len(inbound) >= 2
    for row, (instance, ip) in zip(inbound, [(FAR, FAR_IP), (NEAR, near_ip)]):
        row["dst_endpoint"]["instance_uid"] = instance
        row["src_endpoint"]["ip"] = ip
    out = tmp_path / "lake" / key
    out.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out, compression="zstd")
    return dataclasses.replace(site, lake=tmp_path / "lake"), near_ip


def _score(env: Env, site: Site, crafted: Site, key: str, monkeypatch: pytest.MonkeyPatch,
           **scoring: Any) -> tuple[dict[str, Any], list[dict[str, Any]], set[tuple[str, str]]]:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.scoring.service import hand_off_messages

    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps(config(env, **scoring)))
    env.upload(crafted, [key])
    activate(site)  # the record names the profile in S3
    reqs = predict(crafted, [key])[key]
    env.model = site.scorer
    cfg = SeclakeConfig.from_mapping(config(env, **scoring))
    manifest, _ = hand_off_messages(cfg, ledger(), [{"MessageId": "m", "ReceiptHandle": "r", "Body": eventbridge(key)}])
    summary = score({"batch_id": manifest["batch_id"]})
    return summary, findings(), flagged(site, reqs)


def test_new_instances_are_judged_against_known_peers(env: Env, site: Site, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml.scoring.peers import REASON_PEERS

    key = site.keys[SCORE_DAY][0]
    crafted, near_ip = _crafted_site(site, tmp_path, key)
    summary, records, by_endpoint = _score(env, site, crafted, key, monkeypatch)
    t = summary["totals"]
    assert t["scored"] == 1 and t["failed"] == 0
    # the profile tells the two new instances apart; only the one outside the peers' networks fires
    assert t["unknown_entity"] == 2 and t["unknown_flagged"] == 1 and t["unknown_no_history"] == 0
    pairs = {pair_of(r) for r in records}
    known_flags = {p for p in by_endpoint if p[0] in site.entities}
    assert pairs == known_flags | {(FAR, FAR_IP)}
    assert (NEAR, near_ip) not in pairs
    (far,) = [r for r in records if pair_of(r) == (FAR, FAR_IP)]
    expl = far["evidences"][0]["data"]["explanation"]
    assert far["unmapped"]["reason"] == expl["reason"] == REASON_PEERS
    assert far["unmapped"]["peer_group"] == "instances known to the model"
    assert expl["text"].startswith(f"first seen instance {FAR}; its peers (instances known to the model, "
                                   f"{len(site.entities)} known) were seen with ")
    assert expl["text"].endswith(f"{FAR_IP} is outside them (nearest peer IP {expl['nearest_known_ip']} shares "
                                 f"{expl['common_prefix_bits']} leading bits)")
    assert float(far["unmapped"]["score"]) == pytest.approx(site.threshold + (32 - expl["common_prefix_bits"]) / 16)


def test_ignore_keeps_the_endpoint_scores_of_unknown_entities(env: Env, site: Site, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    key = site.keys[SCORE_DAY][0]
    crafted, _ = _crafted_site(site, tmp_path, key)
    summary, records, by_endpoint = _score(env, site, crafted, key, monkeypatch,
                                           unknown_entities={"vpc_flow": "ignore"})
    t = summary["totals"]
    assert t["scored"] == 1 and t["unknown_flagged"] == 0 and t["unknown_entity"] == 0
    # as before the policy existed: every pair keeps the endpoint's score, unknown entities included
    assert {pair_of(r) for r in records} == by_endpoint
    assert not any("reason" in r["unmapped"] for r in records)


def test_lambda_reads_the_policy_from_its_environment() -> None:
    from .test_lambda_ipcheck import PARAMETER, WORK, app

    base = {"LAKE_BUCKET": "aws-security-data-lake-us-east-1-abc", "WORK_LOCATION": WORK,
            "SSM_ACTIVE_PARAMETER": PARAMETER, "AWS_REGION": "us-east-1"}
    assert app.load_settings(base).cfg.scoring.unknown_entities == {}
    s = app.load_settings({**base, "UNKNOWN_ENTITIES": "cloudtrail_api=peers, vpc_flow=ignore"})
    assert s.cfg.scoring.unknown_entities == {"cloudtrail_api": "peers", "vpc_flow": "ignore"}
    for bad, named in [("vpc_flow", "got .vpc_flow."), ("vpc_flow=flag", "unknown_entities.vpc_flow"),
                       ("vpc_flw=peers", "unknown_entities.vpc_flw")]:
        with pytest.raises(app.SettingsError, match=rf"^UNKNOWN_ENTITIES: .*{named}"):
            app.load_settings({**base, "UNKNOWN_ENTITIES": bad})
