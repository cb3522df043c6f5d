"""Hostile lake contents: file names that look like patterns, links, special and invisible addresses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seclake_ml.pairs import SPECIAL_ADDRESS_REASONS
from seclake_ml.scoring.sites import iter_local_objects

from .conftest import DAY, config, extract, pairs_of, partition, run_cli, vpc_rows, write_rows


def _keys(objects) -> list[str]:
    return sorted(o.key.rsplit("/", 1)[-1] for o in objects)


# ------------------------------------------------------------------------------------ pattern names
@pytest.mark.parametrize("name", ["*.parquet", "?.parquet", "[ab].parquet", "**.parquet", "a*.parquet"])
def test_pattern_file_names_are_read_once_as_themselves(lake: Path, tmp_path: Path, name: str) -> None:
    part = next(lake.rglob("a.parquet")).parent
    write_rows(part / name, vpc_rows(3, first=100))
    res = extract(lake, tmp_path / "p.parquet")
    assert res.files_scanned == 3 and res.rows_read == 23 and res.pairs_written == 23
    assert len(set(pairs_of(tmp_path / "p.parquet"))) == 23  # nothing read twice


def test_bracket_name_does_not_stand_in_for_another_file(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    part = partition(root)
    write_rows(part / "strings.parquet", vpc_rows(2, entity_of=lambda i: "i-real"))
    write_rows(part / "[s]trings.parquet", vpc_rows(5, entity_of=lambda i: "i-bracket", first=50))
    res = extract(root, tmp_path / "p.parquet")
    entities = sorted(e for e, _ in pairs_of(tmp_path / "p.parquet"))
    assert entities == ["i-bracket"] * 5 + ["i-real"] * 2 and res.rows_read == 7


def test_pattern_names_in_partition_folders_are_literal(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    write_rows(partition(root, account="123456789012") / "x.parquet", vpc_rows(4))
    odd = root / "aws" / "VPC_FLOW" / "1.0" / "region=us-east-1" / "accountId=*" / f"eventDay={DAY}"
    odd.mkdir(parents=True)
    write_rows(odd / "y.parquet", vpc_rows(2, first=40))
    res = extract(root, tmp_path / "p.parquet")
    assert res.rows_read == 6 and res.files_scanned == 2


def test_scoring_lists_a_pattern_named_object_as_one_object(lake: Path) -> None:
    part = next(lake.rglob("a.parquet")).parent
    write_rows(part / "*.parquet", vpc_rows(2, first=200))
    objects, rejected = iter_local_objects(config(lake))
    assert _keys(objects) == ["*.parquet", "a.parquet", "b.parquet"] and rejected == []


# ---------------------------------------------------------------------------------------------- links
def _outside_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    return write_rows(outside / "secret.parquet", vpc_rows(7, first=300, entity_of=lambda i: "i-outside"))


@pytest.mark.parametrize("kind", ["file_outside", "folder_outside", "dangling", "loop"])
def test_links_that_leave_the_lake_are_refused_and_counted_by_extraction(lake: Path, tmp_path: Path,
                                                                         kind: str) -> None:
    part = next(lake.rglob("a.parquet")).parent
    secret = _outside_file(tmp_path)
    if kind == "file_outside":
        (part / "c.parquet").symlink_to(secret)
    elif kind == "folder_outside":
        other = part.parent.parent / "accountId=999999999999"
        other.symlink_to(secret.parent, target_is_directory=True)
    elif kind == "dangling":
        (part / "gone.parquet").symlink_to(tmp_path / "does-not-exist.parquet")
    else:
        (part / "loop.parquet").symlink_to(part / "loop.parquet")
    res = extract(lake, tmp_path / "p.parquet")
    assert res.rows_read == 20 and res.pairs_written == 20  # the lake's own rows, all of them
    refused = [q for q in res.quarantined if "symbolic link refused" in q["reason"]]
    assert len(refused) == 1 and len(res.quarantined) == 1
    assert "i-outside" not in {e for e, _ in pairs_of(tmp_path / "p.parquet")}


@pytest.mark.parametrize("kind", ["file_outside", "folder_outside"])
def test_scoring_applies_the_same_link_policy(lake: Path, tmp_path: Path, kind: str) -> None:
    part = next(lake.rglob("a.parquet")).parent
    secret = _outside_file(tmp_path)
    if kind == "file_outside":
        (part / "c.parquet").symlink_to(secret)
    else:
        (part.parent / "eventDay=20220413").symlink_to(secret.parent, target_is_directory=True)
    objects, rejected = iter_local_objects(config(lake))
    assert _keys(objects) == ["a.parquet", "b.parquet"]
    assert len(rejected) == 1 and "resolves outside the lake root" in rejected[0]["reason"]


def test_links_inside_the_lake_are_followed_but_read_once(lake: Path, tmp_path: Path) -> None:
    part = next(lake.rglob("a.parquet")).parent
    (part / "again.parquet").symlink_to(part / "a.parquet")  # the same object under a second name
    day2 = part.parent / "eventDay=20220413"
    day2.symlink_to(part, target_is_directory=True)  # the same partition under a second day
    res = extract(lake, tmp_path / "p.parquet")
    assert res.rows_read == 20 and res.files_scanned == 2
    objects, _ = iter_local_objects(config(lake))
    assert len(objects) == 2


# ------------------------------------------------------------------------------ addresses and names
SPECIAL = {"unspecified": ["0.0.0.0", "0.1.2.3"], "broadcast": ["255.255.255.255"],
           "loopback": ["127.0.0.1", "127.255.0.9"], "link_local": ["169.254.169.254"],
           "multicast": ["224.0.0.1", "239.255.255.250"]}


def test_special_addresses_get_their_own_drop_reasons(tmp_path: Path) -> None:
    ips = [ip for values in SPECIAL.values() for ip in values]
    root = tmp_path / "lake"
    part = partition(root)
    write_rows(part / "special.parquet", vpc_rows(len(ips), ip_of=lambda i: ips[i]) + vpc_rows(5, first=50))
    res = extract(root, tmp_path / "p.parquet")
    assert {r: res.dropped[r] for r in SPECIAL_ADDRESS_REASONS} == {r: len(v) for r, v in SPECIAL.items()}
    assert res.pairs_written == 5 and res.rows_read == len(ips) + 5
    # neighbours of the special ranges are ordinary peers
    write_rows(part / "special.parquet", vpc_rows(4, ip_of=lambda i: ["1.0.0.1", "126.255.255.255",
                                                                       "169.253.0.1", "240.0.0.1"][i]))
    res = extract(root, tmp_path / "q.parquet")
    assert res.pairs_written == 4 and sum(res.dropped.values()) == 0


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\u2066", "\x85", "\x9b", "\ufeff", "\u2028", "\x1b"])
def test_invisible_and_bidi_characters_are_dropped_as_hostile(tmp_path: Path, char: str) -> None:
    root = tmp_path / "lake"
    part = partition(root)
    rows = vpc_rows(3, entity_of=lambda i: f"i-{i}{char}x" if i == 0 else f"i-{i}")
    rows += vpc_rows(1, ip_of=lambda i: f"10.0.0.{i}{char}", first=9)
    write_rows(part / "x.parquet", rows)
    res = extract(root, tmp_path / "p.parquet")
    assert res.dropped["hostile"] == 2 and res.pairs_written == 2
    assert all(char not in e and char not in ip for e, ip in pairs_of(tmp_path / "p.parquet"))


def test_cli_prints_hostile_file_names_escaped_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    part = partition(root)
    write_rows(part / "good.parquet", vpc_rows(2))
    (part / "bad\x1b[31m\u202e.parquet").write_bytes(b"PAR1 not parquet")
    proc = run_cli("pairs", "extract", "--root", str(root), "--source", "vpc_flow", "--view", "instance_src_ip",
                   "--start", "2022-04-12", "--end", "2022-04-13", "--out", str(tmp_path / "p.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "bad\\x1b[31m\\u202e.parquet" in proc.stdout
    assert "escaped       2 control or bidi characters" in proc.stdout
    assert "pairs written 2" in proc.stdout
    assert os.path.exists(tmp_path / "p.parquet.quarantine.json")
