"""Pairs Parquet on S3 to the CSV channels of a SageMaker IP Insights training job.

The Athena backend ``UNLOAD``s pairs as Parquet (``entity``, ``ip``, ``event_time``, ...) under one
S3 prefix per source view. IP Insights trains on headerless ``entity,ip`` CSV in File mode, from a
``train`` channel and an optional ``validation`` channel. :func:`build_channels` reads the Parquet in
chunks of ``chunk_rows`` rows (awswrangler, with the boto3 session of an :class:`S3Hook`), splits
each chunk at ``split_time`` (earlier rows train, the rest validate, so validation measures how well
the model generalises to later traffic), shuffles each part with a seeded generator and writes it as
one CSV object. The worker holds one chunk at a time, plus the profile's running aggregate (below).

Layout under ``output_uri`` (the channel folders are emptied first and the profile is overwritten,
so a re-run replaces them)::

    train/part-<prefix #>-<chunk #>.csv
    validation/part-<prefix #>-<chunk #>.csv
    profile/profile.parquet

Rows are dropped, and counted, when the entity or IP is missing or empty (``null``), when the
entity or IP holds a CSV delimiter, quote or line break (``delimiter``: the container's CSV reader
is not documented to understand quoting), or when ``event_time`` is missing (``no_event_time``).

The same pass aggregates the **entity profile** of the training rows (one row per ``(entity, ip)``
with event count and first/last time, :func:`seclake_ml.scoring.profile.profile_from_frames`, so
memory follows the distinct pairs, not the rows) and writes it to ``profile/profile.parquet`` under
``output_uri``. The scoring DAGs read it (its URI travels to the registry record as
``profile_uri``) to explain findings with the networks an entity used in training, as the local
backend does with the ``profile.parquet`` in its model folder.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from seclake_ml.interval import parse_utc
from seclake_ml.uris import s3_prefix

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["entity", "ip", "event_time"]
DROP_REASONS = ("null", "delimiter", "no_event_time")
_BAD_CHARS = r"[,\"\r\n]"


def build_channels(
    cfg: Any,
    *,
    pairs_uris: Sequence[str],
    output_uri: str,
    split_time: datetime | str,
    seed: int = 0,
    chunk_rows: int = 500_000,
    aws_conn_id: str | None = "aws_default",
    exclude: Any = None,
) -> dict[str, Any]:
    """Write the ``train`` and ``validation`` CSV channels from pairs Parquet under ``pairs_uris``.

    :param cfg: package configuration (its ``region`` is used for the S3 session).
    :param pairs_uris: ``s3://`` prefixes holding pairs Parquet (e.g. one per source view).
    :param output_uri: ``s3://bucket/prefix/`` that receives ``train/`` and ``validation/``;
        everything under those two folders is deleted first.
    :param split_time: rows with ``event_time`` before this go to ``train``, the others to
        ``validation`` (naive datetimes are UTC).
    :param seed: seed of the in-chunk shuffles; the same seed and inputs give the same files.
    :param chunk_rows: rows read per chunk (bounds the worker's memory).
    :param aws_conn_id: Airflow AWS connection.
    :param exclude: ``(entity, ip)`` pairs (a DataFrame) left out of both channels: the detector's own
        findings not labelled benign and pairs labelled malicious (counted as ``feedback_excluded``).
    :return: ``train_uri``, ``validation_uri`` (``None`` when no row is at or after ``split_time``),
        row counts per channel, rows read, drops by reason, files written, distinct training
        entities, the split time, the seed, and ``profile_uri`` with ``profile`` (entities, pairs,
        events) of the entity profile of the training rows.
    :raises ValueError: bad arguments, or no row left for training.
    """
    import awswrangler as wr
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc
    from seclake_ml.aws.clients import s3_hook

    from seclake_ml.scoring.profile import PROFILE_FILE, profile_from_frames, write_profile_table

    if isinstance(pairs_uris, str) or not pairs_uris:
        raise ValueError(f"pairs_uris: got {pairs_uris!r}; expected a non-empty list of s3:// prefixes")
    inputs = [s3_prefix(u, "pairs_uris") for u in pairs_uris]
    out_bucket, out_key = s3_prefix(output_uri, "output_uri")
    for bucket, key in inputs:
        if bucket == out_bucket and (key.startswith(out_key) or out_key.startswith(key)):
            raise ValueError(f"output_uri {output_uri!r} overlaps the input prefix s3://{bucket}/{key}")
    split = parse_utc(split_time, "split_time")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: got {seed!r}; expected an int >= 0")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: got {chunk_rows!r}; expected an int >= 1")

    t0 = time.perf_counter()
    s3 = s3_hook(cfg, aws_conn_id)
    session = s3.get_session(region_name=cfg.region)
    base = f"s3://{out_bucket}/{out_key}"
    channel_keys = {"train": f"{out_key}train/", "validation": f"{out_key}validation/"}
    for key in channel_keys.values():
        stale = s3.list_keys(bucket_name=out_bucket, prefix=key)
        if stale:
            s3.delete_objects(bucket=out_bucket, keys=stale)
            log.info("removed %d earlier channel object(s) under s3://%s/%s", len(stale), out_bucket, key)

    rows = {"train": 0, "validation": 0}
    files = {"train": 0, "validation": 0}
    dropped = dict.fromkeys(DROP_REASONS, 0)
    rows_read = 0
    excluded = 0
    entity_hashes: list[Any] = []
    excluded_keys = (set(pd.util.hash_pandas_object(exclude[["entity", "ip"]].astype("string"), index=False))
                     if exclude is not None and len(exclude) else None)

    def prefix_chunks(p_idx: int, bucket: str, key: str) -> Any:
        """Write the channel files of one input prefix chunk by chunk; yield each chunk's training rows."""
        nonlocal rows_read, excluded
        uri = f"s3://{bucket}/{key}"
        try:
            chunks = wr.s3.read_parquet(path=uri, columns=PAIR_COLUMNS, chunked=chunk_rows, boto3_session=session)
            chunks = iter(chunks)
            first = next(chunks, None)
        except wr.exceptions.NoFilesFound:
            first = None
        if first is None:
            log.warning("no pairs Parquet under %s; nothing read from it", uri)
            return
        for c_idx, df in enumerate(_chain(first, chunks)):
            rows_read += len(df)
            entity = df["entity"].astype("string")
            ip = df["ip"].astype("string")
            missing = entity.isna() | ip.isna() | (entity.str.len() == 0) | (ip.str.len() == 0)
            bad = ~missing & (entity.str.contains(_BAD_CHARS, regex=True) | ip.str.contains(_BAD_CHARS, regex=True))
            times = pd.to_datetime(df["event_time"], utc=True, errors="coerce")
            no_time = ~missing & ~bad & times.isna()
            dropped["null"] += int(missing.sum())
            dropped["delimiter"] += int(bad.fillna(False).sum())
            dropped["no_event_time"] += int(no_time.sum())
            keep = (~missing & ~bad.fillna(False) & ~no_time).to_numpy(dtype=bool)
            if excluded_keys is not None:
                hashed = pd.util.hash_pandas_object(pd.DataFrame({"entity": entity, "ip": ip}), index=False)
                out = keep & hashed.isin(excluded_keys).to_numpy(dtype=bool)
                excluded += int(out.sum())
                keep &= ~out
            pairs = pd.DataFrame({"entity": entity[keep].to_numpy(), "ip": ip[keep].to_numpy()})
            is_train = (times[keep] < pd.Timestamp(split)).to_numpy(dtype=bool)
            for channel, mask in (("train", is_train), ("validation", ~is_train)):
                part = pairs[mask]
                if part.empty:
                    continue
                rng = np.random.default_rng([seed, p_idx, c_idx, 0 if channel == "train" else 1])
                part = part.iloc[rng.permutation(len(part))]
                path = f"s3://{out_bucket}/{channel_keys[channel]}part-{p_idx:03d}-{c_idx:05d}.csv"
                wr.s3.to_csv(part, path=path, index=False, header=False, boto3_session=session)
                rows[channel] += len(part)
                files[channel] += 1
                if channel == "train":
                    entity_hashes.append(np.unique(pd.util.hash_array(part["entity"].to_numpy(dtype=object))))
            yield pairs[is_train].assign(event_time=times[keep].to_numpy(dtype="datetime64[ns]")[is_train])

    # One pass over the input: the channels are written while the profile aggregates the training rows.
    profile = profile_from_frames(
        frame for p_idx, (bucket, key) in enumerate(inputs) for frame in prefix_chunks(p_idx, bucket, key)
    )
    if rows["train"] == 0:
        raise ValueError(
            f"no training rows: {rows_read} row(s) read under {list(pairs_uris)}, dropped {dropped}, "
            f"{rows['validation']} at or after split_time {split.isoformat()}"
        )
    entities = int(len(np.unique(np.concatenate(entity_hashes)))) if entity_hashes else 0
    profile_key = f"{out_key}profile/{PROFILE_FILE}"
    with tempfile.TemporaryDirectory(prefix="seclake-profile-") as tmp:
        local = write_profile_table(profile, Path(tmp) / PROFILE_FILE)
        s3.load_file(str(local), key=profile_key, bucket_name=out_bucket, replace=True)
    profile_summary = {
        "entities": int(pc.count_distinct(profile["entity"]).as_py()) if profile.num_rows else 0,
        "pairs": int(profile.num_rows),
        "events": int(pc.sum(profile["events"]).as_py() or 0),
    }
    result = {
        "train_uri": f"{base}train/",
        "validation_uri": f"{base}validation/" if rows["validation"] else None,
        "train_rows": rows["train"],
        "validation_rows": rows["validation"],
        "rows_read": rows_read,
        "dropped": dropped,
        "feedback_excluded": excluded,
        "train_files": files["train"],
        "validation_files": files["validation"],
        "train_entities": entities,
        "split_time": split.isoformat(),
        "seed": seed,
        "profile_uri": f"s3://{out_bucket}/{profile_key}",
        "profile": profile_summary,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info(
        "channels: read %d row(s) from %d prefix(es); train %d row(s) in %d file(s) (%d entities), "
        "validation %d row(s) in %d file(s); dropped %s; split at %s; output %s; entity profile %s (%s)",
        rows_read, len(inputs), rows["train"], files["train"], entities, rows["validation"],
        files["validation"], dropped, split.isoformat(), base, result["profile_uri"], profile_summary,
    )
    return result


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest
