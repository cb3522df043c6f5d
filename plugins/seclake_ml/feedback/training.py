"""Analysts' feedback for the next IP Insights model: what training must leave out, and what joins
the calibration sets.

* Pairs of the detector's own findings in the window are never used as known-normal training data
  unless an analyst labelled one of the pair's findings ``benign``: the model must not learn its own
  alerts as normal. A finding an allow-list entry suppressed counts as labelled benign (an analyst
  accepted the pair). A pair with any finding labelled ``malicious`` is left out whatever else was
  labelled. (Verdicts are folded per ``(entity, ip)``: the same pair is a new finding in every
  object it is flagged in.)
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

from seclake_ml.scoring.findings import STATUS_ID_SUPPRESSED

if TYPE_CHECKING:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.interval import DataInterval

log = logging.getLogger(__name__)

_DAY_RE = re.compile(r"eventDay=(\d{8})")
DETECTOR_GLOB = "ipinsights-*"
_S3_KEY_RE = re.compile(r"ext/ipinsights-[^/]+/region=[^/]+/accountId=[^/]+/eventDay=(\d{8})/[^/]+\.parquet")
MAX_S3_OBJECT_BYTES = 256 * 1024 * 1024


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


def _s3_finding_files(location: str, client: Any, window: DataInterval | None, tmp: str) -> list[str]:
    """Local copies of the IP Insights findings objects of ``window``'s days under ``location``/ext/.

    Only the window's partitions are listed: the ``ipinsights-*`` sources, regions and accounts are
    walked one folder level at a time (``Delimiter='/'``) down to ``eventDay=<day>/`` of each day (every
    day when ``window`` is ``None``). Objects are streamed to files under ``tmp``, never held in memory.
    """
    from seclake_ml.uris import s3_prefix, s3_subfolders

    bucket, prefix = s3_prefix(location, "findings location", allow_root=True)
    paginator = client.get_paginator("list_objects_v2")

    def folders(under: str, part: str) -> list[str]:
        """The sub-folders of ``under`` whose name starts with ``part``."""
        return [f for f in s3_subfolders(paginator, bucket, under) if f[len(under):].startswith(part)]

    def objects(under: str) -> list[dict[str, Any]]:
        """The objects directly under ``under``."""
        found: list[dict[str, Any]] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=under, Delimiter="/"):
            found += page.get("Contents", [])
        return found

    days = sorted(d.strftime("%Y%m%d") for d in window.days()) if window is not None else None
    out: list[str] = []
    for source in s3_subfolders(paginator, bucket, f"{prefix}ext/{DETECTOR_GLOB.rstrip('*')}"):
        for region in folders(source, "region="):
            for account in folders(region, "accountId="):
                parts = folders(account, "eventDay=") if days is None else [f"{account}eventDay={d}/" for d in days]
                for part in parts:
                    for item in sorted(objects(part), key=lambda x: x["Key"]):
                        if not _S3_KEY_RE.fullmatch(item["Key"][len(prefix):]):
                            continue
                        if int(item.get("Size") or 0) > MAX_S3_OBJECT_BYTES:
                            log.warning("findings object s3://%s/%s is over %d bytes; not read", bucket, item["Key"],
                                        MAX_S3_OBJECT_BYTES)
                            continue
                        path = Path(tmp) / f"{len(out):06d}.parquet"
                        client.download_file(bucket, item["Key"], str(path))
                        out.append(str(path))
    return out


def finding_pairs(files: list[str]) -> tuple[Any, int]:
    """``(uid, entity, ip)`` of the findings in ``files`` (unreadable files are skipped and counted)."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames, skipped = [], 0
    for path in files:
        try:
            table = pq.read_table(path, columns=["finding_info", "unmapped", "status_id"])
        except Exception as exc:  # noqa: BLE001 - a damaged findings file must not stop training
            log.warning("findings file %s is unreadable (%s); its pairs are not left out", path, str(exc)[:200])
            skipped += 1
            continue
        info = table.column("finding_info").to_pylist()
        unmapped = table.column("unmapped").to_pylist()
        status = table.column("status_id").to_pylist()
        rows = []
        for fi, um, st in zip(info, unmapped, status):
            fields = dict(um or [])
            if fi and fields.get("entity") and fields.get("ip"):
                rows.append((fi["uid"], fields["entity"], fields["ip"], st == STATUS_ID_SUPPRESSED))
        frames.append(pd.DataFrame(rows, columns=["uid", "entity", "ip", "suppressed"]))
    if not frames:
        return pd.DataFrame(columns=["uid", "entity", "ip", "suppressed"]), skipped
    return pd.concat(frames, ignore_index=True), skipped


def training_feedback(cfg: SeclakeConfig, window: DataInterval | None = None, *, findings_root: str | None = None,
                      labels: dict[str, str] | None = None, s3_client: Any = None) -> Feedback:
    """The feedback for a model trained on ``window``: the findings tree under ``findings_root``
    (default: the scoring site's, :func:`seclake_ml.scoring.sites.findings_location`: the configured
    ``extra.scoring.findings_location``, else the local lake root, or ``s3://<lake_bucket>`` on aws).

    :param labels: finding uid → verdict (default: the label store of the work location, kind ``finding``).
    :param s3_client: a boto3 S3 client, for findings and labels in S3 (the aws backend).
    """
    import tempfile

    from seclake_ml.locations import work_root
    from seclake_ml.scoring.sites import findings_location
    from seclake_ml.uris import is_s3

    location = findings_root
    if not location:
        try:
            location = findings_location(cfg)
        except ValueError as exc:  # aws without lake_bucket: scoring cannot have written findings either
            log.warning("no findings location (%s); no findings are left out of training", exc)
            location = ""
    if labels is None:
        from seclake_ml.risk.labels import label_store_for

        store = label_store_for(work_root(cfg), s3_client if is_s3(work_root(cfg)) else None)
        labels = {uid: rec.verdict for uid, rec in store.latest("finding").items()}
    with tempfile.TemporaryDirectory(prefix="seclake-feedback-") as tmp:
        if not location:
            files = []  # no findings location: nothing scored yet
        elif is_s3(location):
            if s3_client is None:
                raise ValueError(f"findings location {location}: reading it needs an S3 client")
            files = _s3_finding_files(location, s3_client, window, tmp)
        else:
            root = Path(location).expanduser()
            files = _finding_files(root, window) if root.is_dir() else []
        pairs, skipped = finding_pairs(files)
    if not len(pairs):
        empty = _empty()
        return Feedback(empty, empty, empty, {"findings": 0, "excluded_pairs": 0, "labelled_benign": 0,
                                              "labelled_malicious": 0, "unreadable_files": skipped})
    # A pair is flagged again in every object it appears in (one finding uid each): its verdict is
    # folded over its findings. Malicious on any finding wins; else benign on any finding; else none.
    # A finding suppressed by an allow-list entry was accepted by an analyst: it counts as benign.
    rank = pairs["uid"].map(labels).map({"malicious": 2, "benign": 1}).fillna(0)
    rank = rank.where(rank == 2, rank.where(~pairs["suppressed"].astype(bool), 1))
    folded = pairs.assign(rank=rank).groupby(["entity", "ip"], sort=True, as_index=False)["rank"].max()
    benign = folded.loc[folded["rank"] == 1, ["entity", "ip"]]
    malicious = folded.loc[folded["rank"] == 2, ["entity", "ip"]]
    exclude = folded.loc[folded["rank"] != 1, ["entity", "ip"]]
    counts = {"findings": int(len(pairs)), "excluded_pairs": int(len(exclude)), "labelled_benign": int(len(benign)),
              "labelled_malicious": int(len(malicious)), "unreadable_files": skipped}
    log.info("feedback for %s: %s", window.label if window is not None else "all findings", counts)
    return Feedback(exclude.reset_index(drop=True), benign.reset_index(drop=True), malicious.reset_index(drop=True),
                    counts)
