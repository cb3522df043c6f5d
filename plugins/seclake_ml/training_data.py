"""Combine extracted pairs of several source views and split them in time for training.

The earlier part of the window (``train_fraction`` of it, 0.7 by default) trains the model; the later
part is held out: calibration draws its known-normal set from held-out pairs of entities seen in
training, as the IP Insights tutorial does. Local files are combined with DuckDB; nothing here
imports Airflow.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from seclake_ml import sqlsafe

log = logging.getLogger(__name__)
_SAFE_PATH_RE = re.compile(r"[A-Za-z0-9_./+-]{1,4096}")


@dataclass
class SplitResult:
    train: str
    holdout: str
    split_time: str
    train_rows: int
    holdout_rows: int
    train_entities: int
    inputs: int
    duplicates_removed: int
    feedback_excluded: int = 0  # rows of the detector's findings (not labelled benign) left out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_time(start: datetime, end: datetime, train_fraction: float) -> datetime:
    if not 0.05 <= train_fraction <= 0.95:
        raise ValueError(f"train_fraction: got {train_fraction!r}; allowed: 0.05 .. 0.95")
    return start + (end - start) * train_fraction


def combine_and_split(
    inputs: list[str], out_dir: str | Path, *, start: datetime, end: datetime,
    train_fraction: float = 0.7, dedupe: bool = False, memory_limit: str = "4GB", exclude: Any = None,
) -> SplitResult:
    """Write ``train.parquet`` and ``holdout.parquet`` under ``out_dir`` from the pairs files ``inputs``.

    With ``dedupe`` each ``(entity, ip)`` keeps its first occurrence within each part. Files that do
    not exist (a view with no data) are skipped; outputs are replaced atomically. File names are
    read literally (never as glob patterns).

    :param memory_limit: DuckDB memory limit (the configuration's ``duckdb_memory``).
    :param exclude: ``(entity, ip)`` pairs (a DataFrame) left out of both parts: the detector's own
        findings not labelled benign, and pairs labelled malicious (:mod:`seclake_ml.feedback.training`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cut = split_time(start, end, train_fraction)
    from seclake_ml.lake.duck import literal_path, spilling_connection

    files = [literal_path(str(p)) for p in inputs if Path(p).is_file()]
    train_path, hold_path = out / "train.parquet", out / "holdout.parquet"
    # A disk-backed spill folder and a memory cap keep large windows from exhausting the worker.
    with spilling_connection(memory_limit, prefix="seclake-split-") as (con, tmp):
        con.execute(
            "CREATE TEMP TABLE pairs (entity VARCHAR, ip VARCHAR, event_time TIMESTAMPTZ, source VARCHAR, "
            "account VARCHAR, region VARCHAR)"
        )
        if files:
            con.execute(
                "INSERT INTO pairs SELECT entity, ip, event_time, source, account, region "
                "FROM read_parquet($files, union_by_name = true) WHERE event_time >= $start AND event_time < $end",
                {"files": files, "start": start, "end": end},
            )
        excluded = 0
        if exclude is not None and len(exclude):
            con.register("feedback_exclude", exclude[["entity", "ip"]])
            excluded = con.execute(
                "DELETE FROM pairs WHERE (entity, ip) IN (SELECT entity, ip FROM feedback_exclude)"
            ).fetchone()[0]
        total = con.execute("SELECT count(*) FROM pairs").fetchone()[0]
        qualify = "QUALIFY row_number() OVER (PARTITION BY entity, ip ORDER BY event_time) = 1" if dedupe else ""
        parts = {"train": ("<", tmp / "train.parquet"), "holdout": (">=", tmp / "holdout.parquet")}
        for _, (op, path) in parts.items():
            con.execute(
                f"COPY (SELECT * FROM pairs WHERE event_time {op} $cut {qualify} "
                f"ORDER BY event_time, entity, ip) TO {sqlsafe.string_literal(str(path), _SAFE_PATH_RE)} "
                "(FORMAT parquet, COMPRESSION zstd)",
                {"cut": cut},
            )
        train_rows = con.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(parts['train'][1])}).fetchone()[0]
        hold_rows = con.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(parts['holdout'][1])}).fetchone()[0]
        entities = con.execute(
            "SELECT count(DISTINCT entity) FROM read_parquet($p)", {"p": str(parts['train'][1])}
        ).fetchone()[0]
        for tmp_path, final in ((parts["train"][1], train_path), (parts["holdout"][1], hold_path)):
            staged = final.with_name(f".{final.name}.tmp")
            shutil.copyfile(tmp_path, staged)
            os.replace(staged, final)
    res = SplitResult(
        train=str(train_path), holdout=str(hold_path), split_time=cut.isoformat(),
        train_rows=int(train_rows), holdout_rows=int(hold_rows), train_entities=int(entities),
        inputs=len(files), duplicates_removed=int(total - train_rows - hold_rows), feedback_excluded=int(excluded),
    )
    log.info(
        "combined %d pairs files: %d training rows (%d entities) before %s, %d held out, %d duplicates removed",
        res.inputs, res.train_rows, res.train_entities, res.split_time, res.holdout_rows, res.duplicates_removed,
    )
    return res
