"""Entity profile: DuckDB build from pairs Parquet, filtered load, explanations, odd input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.scoring.profile import (
    PROFILE_FILE,
    PROFILE_SCHEMA,
    EntityProfile,
    ProfileCache,
    build_profile,
    ipv4_int,
    profile_from_frames,
)

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)
ARN = "arn:aws:iam::123456789012:user/alice"

# (entity, ip, events): the valid pairs of the fixture
VALID = [
    ("i-0abc", "10.0.2.17", 5),
    ("i-0abc", "10.0.2.18", 3),
    ("i-0abc", "10.0.3.5", 2),
    ("i-0abc", "192.168.1.1", 1),
    (ARN, "8.8.8.8", 4),
]
INVALID = [  # dropped: not dotted IPv4, or no entity
    ("i-0abc", "2001:db8::1"),
    ("i-0abc", "-"),
    ("i-0abc", ""),
    ("i-0abc", None),
    ("i-0abc", "10.0.2.256"),
    ("i-0abc", "010.0.2.1"),
    (None, "10.0.2.17"),
]


def pairs_frame() -> pd.DataFrame:
    rows = []
    n = 0
    for entity, ip, events in VALID:
        for _ in range(events):
            rows.append({"entity": entity, "ip": ip, "event_time": T0 + timedelta(hours=n), "source": "vpc_flow"})
            n += 1
    for entity, ip in INVALID:
        rows.append({"entity": entity, "ip": ip, "event_time": T0, "source": "vpc_flow"})
    return pd.DataFrame(rows)


@pytest.fixture()
def pairs_files(tmp_path: Path) -> list[str]:
    frame = pairs_frame()
    half = len(frame) // 2
    paths = []
    for i, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
        table = pa.Table.from_pandas(part, preserve_index=False).cast(
            pa.schema([("entity", pa.string()), ("ip", pa.string()),
                       ("event_time", pa.timestamp("us", tz="UTC")), ("source", pa.string())])
        )
        path = tmp_path / "pairs" / f"part-{i}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


@pytest.fixture()
def built(pairs_files: list[str], tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / "model" / PROFILE_FILE
    return build_profile(pairs_files, str(out)), out


def test_build_profile_counts_schema_and_rows(built: tuple[dict, Path]) -> None:
    counts, out = built
    assert counts == {
        "files": 2, "rows_in": 22, "rows_used": 15, "rows_dropped": 7, "entities": 2, "pairs": 5,
        "events": 15, "path": str(out),
    }
    assert [p.name for p in out.parent.iterdir()] == [PROFILE_FILE]  # no temporary file left behind
    table = pq.read_table(out)
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in PROFILE_SCHEMA]
    rows = table.to_pylist()
    assert [(r["entity"], r["ip"], r["events"]) for r in rows] == sorted(VALID)
    by_pair = {(r["entity"], r["ip"]): r for r in rows}
    assert by_pair[("i-0abc", "10.0.2.17")]["ip_int"] == (10 << 24) + (2 << 8) + 17
    assert by_pair[(ARN, "8.8.8.8")]["ip_int"] == 0x08080808
    assert by_pair[("i-0abc", "10.0.2.17")]["first_seen"] == T0
    assert by_pair[("i-0abc", "10.0.2.17")]["last_seen"] == T0 + timedelta(hours=4)
    assert by_pair[(ARN, "8.8.8.8")]["last_seen"] == T0 + timedelta(hours=14)


def test_build_profile_rewrites_in_place_and_reports_bad_input(pairs_files: list[str], tmp_path: Path) -> None:
    out = tmp_path / "p" / PROFILE_FILE
    build_profile(pairs_files, str(out))
    counts = build_profile(pairs_files[:1], str(out))
    assert counts["rows_in"] == 11 and pq.read_metadata(out).num_rows == counts["pairs"]
    with pytest.raises(FileNotFoundError, match="pairs file"):
        build_profile([str(tmp_path / "nope.parquet")], str(out))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"entity": ["a"], "addr": ["1.2.3.4"]}), bad)
    with pytest.raises(ValueError, match="lack column"):
        build_profile([str(bad)], str(out))
    assert build_profile([], str(tmp_path / "empty" / PROFILE_FILE))["pairs"] == 0


def test_event_time_as_epoch_ms_is_accepted(tmp_path: Path) -> None:
    src = tmp_path / "ms.parquet"
    pq.write_table(pa.table({"entity": ["e", "e"], "ip": ["1.2.3.4", "1.2.3.4"],
                             "event_time": pa.array([1709251200000, 1709254800000], pa.int64())}), src)
    out = tmp_path / PROFILE_FILE
    build_profile([str(src)], str(out))
    [row] = pq.read_table(out).to_pylist()
    assert (row["events"], row["first_seen"], row["last_seen"]) == (2, T0, T0 + timedelta(hours=1))


def test_explain_networks_nearest_ip_and_text(built: tuple[dict, Path]) -> None:
    _, out = built
    prof = EntityProfile.load(out, ["i-0abc"])
    e = prof.explain("i-0abc", "10.0.2.200")
    assert e["entity_known"] is True and e["ip_valid"] is True
    assert (e["known_ips"], e["known_events"]) == (4, 11)
    assert e["known_networks"] == [
        {"cidr": "10.0.2.0/24", "events": 8, "ips": 2},
        {"cidr": "10.0.3.0/24", "events": 2, "ips": 1},
        {"cidr": "192.168.1.0/24", "events": 1, "ips": 1},
    ]
    # .17 and .18 both share 24 bits with .200; the tie goes to the IP with more events (.17: 5 events).
    assert (e["nearest_known_ip"], e["common_prefix_bits"]) == ("10.0.2.17", 24)
    assert e["text"] == (
        "i-0abc was usually seen with 10.0.2.0/24 (8 events), 10.0.3.0/24 (2 events), 192.168.1.0/24 (1 event); "
        "4 known IPs and 11 events in training; nearest known IP 10.0.2.17 shares 24 leading bits with 10.0.2.200"
    )
    e = prof.explain("i-0abc", "10.0.3.9", top=1)
    assert e["known_networks"] == [{"cidr": "10.0.2.0/24", "events": 8, "ips": 2}]
    assert (e["nearest_known_ip"], e["common_prefix_bits"]) == ("10.0.3.5", 28)
    assert "and 2 more /24 networks" in e["text"]
    e = prof.explain("i-0abc", "203.0.113.9")  # 203 = 11001011, 192 = 11000000: 4 leading bits
    assert (e["nearest_known_ip"], e["common_prefix_bits"]) == ("192.168.1.1", 4)
    e = prof.explain("i-0abc", "10.0.2.18")
    assert (e["nearest_known_ip"], e["common_prefix_bits"]) == ("10.0.2.18", 32)
    assert e["text"].endswith("10.0.2.18 itself was seen in training (3 events)")


def test_load_reads_only_the_requested_entities(built: tuple[dict, Path]) -> None:
    _, out = built
    assert EntityProfile.load(out, [ARN, "i-unknown"]).entities == [ARN]
    assert EntityProfile.load(out).entities == sorted(["i-0abc", ARN])
    assert len(EntityProfile.load(out, [])) == 0
    from_bytes = EntityProfile.load(out.read_bytes(), {"i-0abc"})
    assert from_bytes.entities == ["i-0abc"]
    assert from_bytes.explain("i-0abc", "10.0.2.200") == EntityProfile.load(out).explain("i-0abc", "10.0.2.200")
    with pytest.raises(FileNotFoundError):
        EntityProfile.load(out.parent / "missing.parquet")


def test_load_filters_a_profile_of_many_row_groups(tmp_path: Path) -> None:
    n = 300_000
    table = pa.table({
        "entity": [f"e{i:07d}" for i in range(n)],
        "ip": ["10.0.0.1"] * n,
        "ip_int": pa.array([0x0A000001] * n, pa.uint32()),
        "events": pa.array([1] * n, pa.int64()),
    })
    path = tmp_path / PROFILE_FILE
    pq.write_table(table, path, row_group_size=50_000)
    prof = EntityProfile.load(path, ["e0123456", "e0299999"])
    assert prof.entities == ["e0123456", "e0299999"]
    assert prof.explain("e0299999", "10.0.0.1")["known_events"] == 1


def test_profile_cache_reads_each_entity_once(built: tuple[dict, Path]) -> None:
    _, out = built
    asked: list[set[str]] = []

    def loader(entities: set[str]) -> EntityProfile:
        asked.append(set(entities))
        return EntityProfile.load(out, entities)

    cache = ProfileCache(loader)
    first = cache({ARN, "i-unknown"})
    assert first.entities == [ARN]
    second = cache({ARN, "i-0abc", "i-unknown"})  # only i-0abc is new; i-unknown is remembered as unknown
    assert asked == [{ARN, "i-unknown"}, {"i-0abc"}]
    assert second.entities == sorted([ARN, "i-0abc"])
    assert second.explain("i-0abc", "10.0.2.200") == EntityProfile.load(out).explain("i-0abc", "10.0.2.200")
    assert cache({"i-0abc"}).entities == ["i-0abc"] and len(asked) == 2  # answered from memory, only what was asked

    down = [True]

    def flaky(entities: set[str]) -> EntityProfile:
        if down[0]:
            raise OSError("profile unreachable")
        return loader(entities)

    cache = ProfileCache(flaky)
    with pytest.raises(OSError):
        cache({ARN})
    down[0] = False  # a failed load is not remembered: the next call asks again
    assert cache({ARN}).entities == [ARN] and asked[-1] == {ARN}


def test_profile_cache_of_a_model_without_profile_knows_no_entity() -> None:
    asked: list[set[str]] = []
    cache = ProfileCache(lambda entities: asked.append(set(entities)))  # the loader answers None
    assert len(cache({ARN})) == 0 and len(cache({ARN})) == 0
    assert asked == [{ARN}]  # asked once, remembered as unknown


def test_unknown_entity(built: tuple[dict, Path]) -> None:
    prof = EntityProfile.load(built[1], ["i-0abc"])
    e = prof.explain("i-0new", "10.0.2.17")
    assert e == {
        "entity_known": False, "known_ips": 0, "known_events": 0, "known_networks": [],
        "nearest_known_ip": None, "common_prefix_bits": None, "ip_valid": True,
        "text": "i-0new was not seen in training, so there is no usual network to compare 10.0.2.17 with",
    }
    assert EntityProfile.empty().explain("i-0abc", "1.2.3.4")["entity_known"] is False


BAD_IPS = ["", "10.0.2", "2001:db8::1", "10.0.2.999", " 10.0.2.1", "x" * 10_000, None, 167772689]


@pytest.mark.parametrize(
    "bad_ip", BAD_IPS, ids=["empty", "three-octets", "ipv6", "octet-999", "leading-space", "huge", "none", "int"]
)
def test_malformed_ip_never_crashes(built: tuple[dict, Path], bad_ip: object) -> None:
    prof = EntityProfile.load(built[1])
    e = prof.explain("i-0abc", bad_ip)  # type: ignore[arg-type]
    assert e["ip_valid"] is False and e["entity_known"] is True
    assert e["nearest_known_ip"] is None and e["common_prefix_bits"] is None
    assert e["known_networks"][0] == {"cidr": "10.0.2.0/24", "events": 8, "ips": 2}
    assert "is not a dotted IPv4 address" in e["text"] and len(e["text"]) < 600
    u = prof.explain("i-0new\n", bad_ip)  # type: ignore[arg-type]
    assert "was not seen in training" in u["text"] and "not a dotted IPv4 address" in u["text"]
    assert "\n" not in u["text"]


def test_profile_from_frames_matches_the_duckdb_build(built: tuple[dict, Path]) -> None:
    frame = pairs_frame()
    chunks = [frame.iloc[i:i + 4] for i in range(0, len(frame), 4)]  # pairs split across chunks
    table = profile_from_frames(chunks)
    assert table.schema == PROFILE_SCHEMA
    assert table.to_pylist() == pq.read_table(built[1]).to_pylist()
    assert profile_from_frames([]).num_rows == 0


def test_ipv4_int() -> None:
    assert ipv4_int("255.255.255.255") == 2**32 - 1
    assert ipv4_int("0.0.0.0") == 0
    assert [ipv4_int(v) for v in ("1.2.3", "01.2.3.4", "1.2.3.4 ", 16909060, "::1")] == [None] * 5
