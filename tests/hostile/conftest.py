"""Shared pieces of the hostile-input corpus: small real lakes, the real CLI, byte/mtime snapshots.

Every case in this folder asserts one outcome class:

* **error**: a clear one-line error that names the input (CLI: exit status 2, one stderr line);
* **counted**: the bad part is dropped or quarantined and counted, the rest is processed;
* **unchanged**: existing data keeps its bytes and modification time.

Lakes are built from the AWS-written Security Lake samples in ``tests/data/reference`` (see
``tests/data/SOURCES.md``) and, for scoring, from the generated site of ``tests/scoring/conftest.py``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.scoring.conftest import SOURCES, drop_day, make_config, site, trained_site  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
DAY = "20220412"
BASE_MS = 1649721732000  # 2022-04-12T00:02:12Z, inside DAY
VPC_SAMPLE = REPO / "tests" / "data" / "reference" / "securitylake-parquet" / "vpc_flow_example0.gz.parquet"


def partition(root: Path, day: str = DAY, source: str = "VPC_FLOW", account: str = "123456789012",
              region: str = "us-east-1") -> Path:
    d = root / "aws" / source / "1.0" / f"region={region}" / f"accountId={account}" / f"eventDay={day}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def vpc_rows(n: int, *, ip_of=None, entity_of=None, first: int = 0) -> list[dict]:
    """``n`` VPC flow rows from the AWS sample, with distinct peers (``instance_src_ip`` view)."""
    row = pq.read_table(VPC_SAMPLE).to_pylist()[0]
    rows = []
    for i in range(first, first + n):
        r = copy.deepcopy(row)
        r["time"] = BASE_MS + i * 1000
        r["src_endpoint"]["ip"] = ip_of(i) if ip_of else f"198.51.100.{i % 250 + 1}"
        r["src_endpoint"]["instance_uid"] = entity_of(i) if entity_of else f"i-{i:017d}"
        rows.append(r)
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(VPC_SAMPLE)), path)
    return path


@pytest.fixture()
def lake(tmp_path: Path) -> Path:
    """A one-day VPC flow lake: two objects of 10 rows each, every row a distinct valid pair."""
    root = tmp_path / "lake"
    part = partition(root)
    write_rows(part / "a.parquet", vpc_rows(10))
    write_rows(part / "b.parquet", vpc_rows(10, first=10))
    return root


def config(root: Path, work: Path | None = None, **kw):
    from seclake_ml.config import load_config

    return load_config({"lake_root": str(root), "work_location": str(work or root.parent / "work"),
                        "sources": ["vpc_flow:instance_src_ip"], **kw}, environ={})


def extract(root: Path, out: Path, **kw):
    from seclake_ml.extraction import extract_pairs

    return extract_pairs(config(root, **kw), "vpc_flow", "instance_src_ip", "2022-04-12", "2022-04-13", str(out))


def pairs_of(path: Path | str) -> list[tuple[str, str]]:
    t = pq.read_table(path)
    return list(zip(t["entity"].to_pylist(), t["ip"].to_pylist()))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECLAKE_ML_", "AIRFLOW"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "plugins"), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m seclake_ml <args>`` in a child process (the real CLI, its real exit status)."""
    return subprocess.run([sys.executable, "-m", "seclake_ml", *args], capture_output=True, text=True,
                          env=env or cli_env(), cwd=cwd or REPO, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, one ``error:`` line on stderr (no traceback) that contains every needle."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(path: Path) -> tuple[bytes, int]:
    """Bytes and modification time of a file (for "no change to existing data")."""
    return path.read_bytes(), path.stat().st_mtime_ns
