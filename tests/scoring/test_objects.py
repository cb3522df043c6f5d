"""Reading one lake object for scoring (seclake_ml.scoring.objects): ranges, bounded chunks, odd files."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seclake_ml.scoring.lake_object import parse_lake_key
from seclake_ml.scoring.objects import ObjectChanged, iter_view_chunks, open_parquet, row_ranges

KEY = "aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240301/f.parquet"
T0 = 1709251200000


def _flows(n: int, distinct: int, **extra: pa.Array) -> pa.Table:
    """``n`` flow rows (src_endpoint instance and IP) cycling through ``distinct`` pairs; every 7th IP is '-'."""
    ips = ["-" if i % 7 == 6 else f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(distinct)]
    columns = {
        "time": pa.array([T0 + i for i in range(n)], pa.int64()),
        "src_endpoint": pa.array([{"instance_uid": f"i-{i % distinct:06d}", "ip": ips[i % distinct]} for i in range(n)]),
    }
    columns.update(extra)
    return pa.table(columns)


def _read(path: Path, chunk_rows: int) -> list:
    obj = parse_lake_key(KEY, bucket="b")
    con = duckdb.connect()
    try:
        return list(iter_view_chunks(con, open_parquet(str(path)), obj, "vpc_flow", "instance_src_ip",
                                     chunk_rows=chunk_rows))
    finally:
        con.close()


def _totals(chunks: list) -> tuple[int, int, dict, dict]:
    pairs: dict = {}
    dropped: dict = {}
    for c in chunks:
        for e, ip, n in zip(c.entity, c.ip, c.events.tolist()):
            pairs[(e, ip)] = pairs.get((e, ip), 0) + n
        for r, n in c.dropped.items():
            dropped[r] = dropped.get(r, 0) + n
    return sum(c.rows for c in chunks), sum(c.ok_rows for c in chunks), dropped, pairs


def test_row_ranges_take_whole_row_groups() -> None:
    meta = type("M", (), {"num_row_groups": 4, "row_group": lambda self, i: type("R", (), {"num_rows": [100, 100, 250, 30][i]})()})()
    assert row_ranges(meta, 150) == [(0, 200), (200, 450), (450, 480)]
    assert row_ranges(meta, 1_000) == [(0, 480)]
    assert row_ranges(meta, 1) == [(0, 100), (100, 200), (200, 450), (450, 480)]


def test_a_big_row_group_of_distinct_pairs_comes_back_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "one-group.parquet"
    pq.write_table(_flows(3_000, 1_400), path, row_group_size=3_000)  # one row group, 1,400 distinct pairs
    small, whole = _read(path, 250), _read(path, 10_000)
    assert max(len(c.entity) for c in small) <= 250 and len(small) >= 1_200 // 250
    assert len(whole) == 1
    # the same rows, drops and pairs whichever the chunking
    assert _totals(small) == _totals(whole)
    rows, ok, dropped, pairs = _totals(small)
    assert rows == 3_000 and dropped["dash"] == 3_000 - ok and len(pairs) == 1_400 - 200


def test_several_row_groups_are_read_in_ranges(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(_flows(1_000, 90), path, row_group_size=100)
    chunks = _read(path, 300)
    assert [c.rows for c in chunks if c.rows] == [300, 300, 300, 100]
    assert _totals(chunks) == _totals(_read(path, 10_000))


@pytest.mark.parametrize("name", ["file_row_number", "File_Row_Number"])
def test_an_object_with_a_file_row_number_column_is_still_scored(tmp_path: Path, name: str, caplog) -> None:
    plain, odd = tmp_path / "plain.parquet", tmp_path / "odd.parquet"
    pq.write_table(_flows(500, 40), plain, row_group_size=100)
    pq.write_table(_flows(500, 40, **{name: pa.array([0] * 500, pa.int64())}), odd, row_group_size=100)
    with caplog.at_level("WARNING", logger="seclake_ml.scoring.objects"):
        chunks = _read(odd, 100)
    assert _totals(chunks) == _totals(_read(plain, 100))
    assert any("read in one range" in r.message for r in caplog.records)


def test_an_object_replaced_while_being_read_is_not_scored_from_two_files(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(_flows(900, 30), path, row_group_size=300)
    obj = parse_lake_key(KEY, bucket="b")
    con = duckdb.connect()
    chunks = iter_view_chunks(con, open_parquet(str(path)), obj, "vpc_flow", "instance_src_ip", chunk_rows=300)
    next(chunks)
    pq.write_table(_flows(3_000, 5), tmp_path / "new.parquet", row_group_size=3_000)
    os.replace(tmp_path / "new.parquet", path)  # a writer swaps the file in place
    with pytest.raises(ObjectChanged, match="replaced or rewritten"):
        list(chunks)
    con.close()
