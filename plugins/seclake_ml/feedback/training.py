"""Analysts' feedback for the next IP Insights model: what training must leave out, and what joins
the calibration sets.

* Pairs of the detector's own findings in the window are never used as known-normal training data
  unless an analyst labelled the finding ``benign``: the model must not learn its own alerts as normal.
  Pairs of findings labelled ``malicious`` are left out whatever else happens.
* Labelled findings join the calibration sets: ``benign`` pairs as known-normal, ``malicious`` pairs
  as abnormal (kind ``labelled_malicious``), so the threshold and the AUC answer to what analysts said.

Findings are read from the local findings tree (``<findings location>/ext/ipinsights-*/…``, eventDay
partitions of the window only) and labels from the label store (kind ``finding``, latest per uid).
On aws the same is read through S3 by the scoring site's client when one is given. No Airflow.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.interval import DataInterval

log = logging.getLogger(__name__)

_DAY_RE = re.compile(r"eventDay=(\d{8})")
DETECTOR_GLOB = "ipinsights-*"


@dataclass
class Feedback:
    """Pairs to leave out of training, and labelled pairs for the calibration sets (pandas frames with
    ``entity`` and ``ip``), with the counts the reports show."""

    exclude: Any
    benign: Any
    malicious: Any
    counts: dict[str, int] = field(default_factory=dict)


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame({"entity": pd.Series(dtype="string"), "ip": pd.Series(dtype="string")})


def _finding_files(root: Path, window: DataInterval | None) -> list[str]:
    days = {d.strftime("%Y%m%d") for d in window.days()} if window is not None else None
    out = []
    for path in sorted((root / "ext").glob(f"{DETECTOR_GLOB}/**/*.parquet")):
        found = _DAY_RE.search(str(path))
        if days is None or (found and found.group(1) in days):
            out.append(str(path))
    return out


def finding_pairs(files: list[str]) -> tuple[Any, int]:
    """``(uid, entity, ip)`` of the findings in ``files`` (unreadable files are skipped and counted)."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames, skipped = [], 0
    for path in files:
        try:
            table = pq.read_table(path, columns=["finding_info", "unmapped"])
        except Exception as exc:  # noqa: BLE001 - a damaged findings file must not stop training
            log.warning("findings file %s is unreadable (%s); its pairs are not left out", path, str(exc)[:200])
            skipped += 1
            continue
        info = table.column("finding_info").to_pylist()
        unmapped = table.column("unmapped").to_pylist()
        rows = []
        for fi, um in zip(info, unmapped):
            fields = dict(um or [])
            if fi and fields.get("entity") and fields.get("ip"):
                rows.append((fi["uid"], fields["entity"], fields["ip"]))
        frames.append(pd.DataFrame(rows, columns=["uid", "entity", "ip"]))
    if not frames:
        return pd.DataFrame(columns=["uid", "entity", "ip"]), skipped
    return pd.concat(frames, ignore_index=True), skipped


def training_feedback(cfg: SeclakeConfig, window: DataInterval | None = None, *, findings_root: str | None = None,
                      labels: dict[str, str] | None = None) -> Feedback:
    """The feedback for a model trained on ``window`` (locally: the findings tree under the lake root,
    or ``extra.scoring.findings_location``).

    :param labels: finding uid → verdict (default: the label store of the work location, kind ``finding``).
    """
    from seclake_ml.locations import work_root

    root = Path(findings_root or cfg.scoring.findings_location or cfg.lake_root).expanduser()
    if labels is None:
        from seclake_ml.risk.labels import label_store_for

        labels = {uid: rec.verdict for uid, rec in label_store_for(work_root(cfg)).latest("finding").items()}
    files = _finding_files(root, window) if root.is_dir() else []
    pairs, skipped = finding_pairs(files)
    if not len(pairs):
        empty = _empty()
        return Feedback(empty, empty, empty, {"findings": 0, "excluded_pairs": 0, "labelled_benign": 0,
                                              "labelled_malicious": 0, "unreadable_files": skipped})
    verdict = pairs["uid"].map(labels).fillna("")
    benign = pairs.loc[verdict == "benign", ["entity", "ip"]].drop_duplicates()
    malicious = pairs.loc[verdict == "malicious", ["entity", "ip"]].drop_duplicates()
    exclude = pairs.loc[verdict != "benign", ["entity", "ip"]].drop_duplicates()
    counts = {"findings": int(len(pairs)), "excluded_pairs": int(len(exclude)), "labelled_benign": int(len(benign)),
              "labelled_malicious": int(len(malicious)), "unreadable_files": skipped}
    log.info("feedback for %s: %s", window.label if window is not None else "all findings", counts)
    return Feedback(exclude.reset_index(drop=True), benign.reset_index(drop=True), malicious.reset_index(drop=True),
                    counts)
