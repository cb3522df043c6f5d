"""Unknown entities in the ipcheck Lambda (moto server): the same policy as the scoring DAG.

Uses the harness of :mod:`tests.aws.test_lambda_ipcheck`. One object of the scored day is rewritten
so two inbound flows reach instances absent from training: one from a network no known instance
talked to, one from a known instance network.
"""

from __future__ import annotations

import io
import ipaddress
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .test_lambda_ipcheck import (  # noqa: F401  (fixtures)
    LAKE_BUCKET,
    Env,
    as_string,
    env,
    eventbridge_body,
    invoke,
    record,
    site,
)

FAR_IP = "192.0.2.44"  # TEST-NET-1: never in the generated lake
FAR, NEAR = "i-0feedfacecafe0001", "i-0feedfacecafe0002"


def _net(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip)) >> 8


def _crafted(site: dict[str, Any], key: str) -> tuple[bytes, str]:
    profile = pq.read_table(site["model_dir"] / "profile.parquet", columns=["ip"])["ip"].to_pylist()
    assert _net(FAR_IP) not in {_net(ip) for ip in profile}
    near_ip = str(ipaddress.IPv4Address((_net(profile[0]) << 8) | 203))
    table = pq.read_table(site["lake"] / key)
    rows = table.to_pylist()
    inbound = [r for r in rows if r["connection_info"]["direction_id"] == 1 and r["dst_endpoint"]["instance_uid"]]
    assert len(inbound) >= 2
    for row, (instance, ip) in zip(inbound, [(FAR, FAR_IP), (NEAR, near_ip)]):
        row["dst_endpoint"]["instance_uid"] = instance
        row["src_endpoint"]["ip"] = ip
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), buf, compression="zstd")
    return buf.getvalue(), near_ip


def _model_flags(site: dict[str, Any], key: str, data: bytes, tmp_path: Any) -> tuple[set, set]:
    """(pairs of known entities above the threshold, all pairs above it) of the crafted object."""
    import duckdb

    from seclake_ml.scoring.lake_object import parse_lake_key
    from seclake_ml.scoring.objects import iter_view_chunks, open_parquet

    path = tmp_path / "object.parquet"
    path.write_bytes(data)
    known = set(pq.read_table(site["model_dir"] / "profile.parquet", columns=["entity"])["entity"].to_pylist())
    con = duckdb.connect()
    pairs: list[tuple[str, str]] = []
    try:
        obj = parse_lake_key(key, bucket=LAKE_BUCKET)
        for chunk in iter_view_chunks(con, open_parquet(str(path)), obj, "vpc_flow", "instance_peer"):
            pairs += list(zip(chunk.entity, chunk.ip))
    finally:
        con.close()
    scores = -site["scorer"].dot_product([e for e, _ in pairs], [i for _, i in pairs])
    above = {p for p, s in zip(pairs, scores) if np.isfinite(s) and s > site["threshold"]}
    return {p for p in above if p[0] in known}, above


def _run(env: Env, site: dict[str, Any], capsys: pytest.CaptureFixture[str], data: bytes) -> tuple[dict, list[dict]]:
    key = site["keys"][0]
    env.put_object(key, data)
    env.put_active()
    response, summary = invoke({"Records": [record("m-a", as_string(eventbridge_body(key)))]}, capsys)
    assert response == {"batchItemFailures": []}
    assert summary["objects"]["scored"] == 1
    return summary, env.findings()


def test_lambda_judges_new_instances_against_known_peers(env: Env, site: dict[str, Any], tmp_path: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from seclake_ml.scoring.peers import REASON_PEERS

    key = site["keys"][0]
    data, near_ip = _crafted(site, key)
    known_flags, _ = _model_flags(site, key, data, tmp_path)
    summary, records = _run(env, site, capsys, data)
    assert summary["unknown_entity"] == 2 and summary["unknown_flagged"] == 1
    pairs = {(r["unmapped"]["entity"], r["unmapped"]["ip"]) for r in records}
    assert pairs == known_flags | {(FAR, FAR_IP)} and (NEAR, near_ip) not in pairs
    (far,) = [r for r in records if r["unmapped"]["entity"] == FAR]
    assert far["unmapped"]["reason"] == REASON_PEERS
    assert far["unmapped"]["peer_group"] == "instances known to the model"
    assert f"first seen instance {FAR}; its peers (instances known to the model, " in far["message"]
    assert f"{FAR_IP} is outside them (nearest peer IP " in far["message"]


def test_lambda_ignore_policy_keeps_the_endpoint_scores(env: Env, site: dict[str, Any], tmp_path: Any,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNKNOWN_ENTITIES", "vpc_flow=ignore")
    key = site["keys"][0]
    data, _ = _crafted(site, key)
    _, above = _model_flags(site, key, data, tmp_path)
    summary, records = _run(env, site, capsys, data)
    assert summary["unknown_entity"] == 0 and summary["unknown_flagged"] == 0
    assert {(r["unmapped"]["entity"], r["unmapped"]["ip"]) for r in records} == above
    assert not any("reason" in r["unmapped"] for r in records)
