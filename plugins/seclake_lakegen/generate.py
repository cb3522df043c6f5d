"""Generate a sample Amazon Security Lake on local disk.

Layout (as Security Lake writes AWS-native sources; source version 2 uses ``2.0``)::

    <root>/aws/VPC_FLOW/1.0/region=<region>/accountId=<12 digits>/eventDay=<YYYYMMDD>/flow-….gz.parquet
    <root>/aws/ROUTE53/1.0/region=…/accountId=…/eventDay=…/dns-….gz.parquet
    <root>/aws/CLOUD_TRAIL_MGMT/1.0/region=…/accountId=…/eventDay=…/auth-….gz.parquet   (3002 sign-ins)
    <root>/aws/CLOUD_TRAIL_MGMT/1.0/region=…/accountId=…/eventDay=…/api-….gz.parquet    (3005 / 6003 calls)
    <root>/aws/S3_DATA/1.0/region=…/accountId=…/eventDay=…/s3-….gz.parquet          (3005 / 6003 S3 object calls)
    <root>/aws/LAMBDA_EXECUTION/1.0/region=…/accountId=…/eventDay=…/lambda-….gz.parquet (3005 / 6003 Invoke)
    <root>/ground_truth/anomalies.parquet   injected anomalies (never marked in the lake itself)
    <root>/ground_truth/synthetic_risk_labels.csv   SYNTHETIC analyst risk labels of a sample of the
                                            CloudTrail events (policy: :mod:`.gen_labels`)
    <root>/ground_truth/manifest.json       seed, arguments, rows per source, anomaly and label counts

The partition folder is the UTC day of each row's ``time``. Files are gzip-compressed Parquet, rows
sorted by time, one row group per generated chunk. Each partition is generated from its own seeded
random stream and streamed chunk by chunk, so memory stays bounded whatever the size, and the same
seed and arguments give byte-identical files. Partitions are written by a small thread pool.

The estate behind the data (accounts, VPCs, instances, people, roles, their peers and networks) and the
injected anomalies are described in :mod:`.gen_env` and :mod:`.gen_anomalies`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import time as _time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import ocsf_schemas as O
from .gen_anomalies import AnomalyPlan, plan_anomalies
from .gen_cloudtrail import (
    DATA_SOURCES,
    api_table,
    concat_signin,
    data_channel_weights,
    data_tables,
    day_context,
    sample_api,
    sample_data,
    sample_signins,
    signin_table,
    site_channel_weights,
)
from .gen_common import (
    DAY_MS,
    chunk_minute_ranges,
    day_start_ms,
    diurnal_weights,
    minute_counts,
    rng_for,
    split_total,
    stable_token,
    times_in_minutes,
    weighted_index,
)
from .gen_env import Environment, Site, build_environment
from .gen_labels import LABEL_FILE, LabelCollector
from .gen_network import concat_specs, dns_table, flow_table, sample_dns, sample_flows

__all__ = ["generate_lake", "add_generate_arguments", "run_generate", "DEFAULTS", "LAKE_SOURCES", "LakeExistsError"]


class LakeExistsError(FileExistsError, ValueError):
    """Generated data is already under the root and ``overwrite`` was not requested."""


#: folder under ``aws/`` per generated source
LAKE_SOURCES = {
    "vpc_flow": "VPC_FLOW",
    "route53": "ROUTE53",
    "cloudtrail": "CLOUD_TRAIL_MGMT",
    "s3_data": "S3_DATA",
    "lambda_execution": "LAMBDA_EXECUTION",
}
ALL_SOURCES = tuple(LAKE_SOURCES)

#: scale and behaviour knobs with their defaults (``None`` = derived, see :func:`_resolve`)
DEFAULTS: dict[str, Any] = {
    "accounts": 3,
    "regions": ("us-east-1", "eu-west-1"),
    "vpcs_per_region": 1,
    "instances_per_vpc": 8,
    "users_per_account": 6,
    "flows_per_day": 100_000,
    "dns_per_day": None,  # flows_per_day / 8
    "api_calls_per_day": None,  # max(2000, flows_per_day / 10), on a working day
    "s3_data_per_day": None,  # api_calls_per_day / 4 (S3 object calls), on a working day
    "lambda_per_day": None,  # api_calls_per_day / 10 (Lambda Invoke calls), on a working day
    "anomalies_per_kind": 5,
    "warmup_fraction": 2.0 / 3.0,
    "sources": ALL_SOURCES,
    "row_group_rows": 250_000,
    "rows_per_file": 2_000_000,
    "compression_level": 1,
    "workers": None,  # min(4, CPU count)
    "overwrite": False,
}

# random stream keys per source
_S_VPC, _S_DNS, _S_AUTH, _S_API, _S_S3, _S_LAMBDA = 11, 12, 13, 14, 15, 16
_PREFIX = {
    "vpc_flow": "flow", "route53": "dns", "cloudtrail_auth": "auth", "cloudtrail_api": "api", "s3_data": "s3",
    "lambda_execution": "lambda",
}  # fmt: skip
#: rows per data-event source: the option giving its volume and its random stream key
_DATA_VOLUME = {"s3_data": "s3_data_per_day", "lambda_execution": "lambda_per_day"}  # the option per source


@dataclass(frozen=True)
class _Task:
    kind: str  # vpc_flow | route53 | cloudtrail_auth | cloudtrail_api | s3_data | lambda_execution
    site: int
    day: int
    rows: int  # planned baseline rows (API: working-day rows before the weekday factor)


# ----------------------------------------------------------------------------- arguments
def _resolve(scale: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(scale) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown generator option(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in scale.items() if v is not None}}
    regions = cfg["regions"]
    if isinstance(regions, str):
        regions = [r.strip() for r in regions.split(",") if r.strip()]
    cfg["regions"] = tuple(regions)
    sources = cfg["sources"]
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    cfg["sources"] = tuple(s for s in ALL_SOURCES if s in set(sources))
    bad = sorted(set(sources) - set(ALL_SOURCES))
    if bad or not cfg["sources"]:
        raise ValueError(f"sources: got {list(sources)!r}; allowed: {', '.join(ALL_SOURCES)} (at least one)")
    for key in ("accounts", "vpcs_per_region", "instances_per_vpc", "users_per_account", "row_group_rows", "rows_per_file"):
        if not isinstance(cfg[key], (int, np.integer)) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"{key}: got {cfg[key]!r}; allowed: an integer >= 1")
    for key in ("flows_per_day", "anomalies_per_kind"):
        if not isinstance(cfg[key], (int, np.integer)) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise ValueError(f"{key}: got {cfg[key]!r}; allowed: an integer >= 0")
    if cfg["dns_per_day"] is None:
        cfg["dns_per_day"] = cfg["flows_per_day"] // 8
    if cfg["api_calls_per_day"] is None:
        cfg["api_calls_per_day"] = max(2000, cfg["flows_per_day"] // 10)
    for key in ("dns_per_day", "api_calls_per_day"):
        if int(cfg[key]) < 0:
            raise ValueError(f"{key}: got {cfg[key]!r}; allowed: an integer >= 0")
        cfg[key] = int(cfg[key])
    for key, share in (("s3_data_per_day", 4), ("lambda_per_day", 10)):
        if cfg[key] is None:
            cfg[key] = cfg["api_calls_per_day"] // share
        if not isinstance(cfg[key], (int, np.integer)) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise ValueError(f"{key}: got {cfg[key]!r}; allowed: an integer >= 0")
        cfg[key] = int(cfg[key])
    if cfg["accounts"] > 50:
        raise ValueError(f"accounts: got {cfg['accounts']}; allowed: 1..50")
    if not cfg["regions"] or len(set(cfg["regions"])) != len(cfg["regions"]):
        raise ValueError(f"regions: got {cfg['regions']!r}; allowed: distinct AWS region names")
    for r in cfg["regions"]:
        parts = r.split("-")
        if len(parts) < 3 or not parts[-1].isdigit() or not r.replace("-", "").isalnum() or r.lower() != r:
            raise ValueError(f"regions: got {r!r}; allowed: region names such as us-east-1")
    wf = float(cfg["warmup_fraction"])
    if not 0.0 <= wf < 1.0:
        raise ValueError(f"warmup_fraction: got {cfg['warmup_fraction']!r}; allowed: 0 <= x < 1")
    cfg["warmup_fraction"] = wf
    if not 0 <= int(cfg["compression_level"]) <= 9:
        raise ValueError(f"compression_level: got {cfg['compression_level']!r}; allowed: 0..9 (gzip)")
    if cfg["workers"] is None:
        cfg["workers"] = max(1, min(4, os.cpu_count() or 1))
    if int(cfg["workers"]) < 1:
        raise ValueError(f"workers: got {cfg['workers']!r}; allowed: an integer >= 1")
    return cfg


# ----------------------------------------------------------------------------- writing
class _PartitionWriter:
    """Writes one partition's rows of one kind as gzip Parquet files, rolling over at ``rows_per_file``."""

    def __init__(self, folder: Path, prefix: str, token: str, schema: pa.Schema, cfg: dict[str, Any]) -> None:
        self.folder = folder
        self.prefix = prefix
        self.token = token
        self.schema = schema
        self.cfg = cfg
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._in_file = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is not None and self._in_file + table.num_rows > self.cfg["rows_per_file"] and self._in_file:
            self._close_file()
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{self.prefix}-{self.token}-{len(self.files):04d}.gz.parquet"
            self._final = self.folder / name
            self._tmp = self.folder / f".{name}.tmp"
            self._writer = pq.ParquetWriter(
                self._tmp,
                self.schema,
                compression="gzip",
                compression_level=int(self.cfg["compression_level"]),
                use_dictionary=True,
                write_statistics=True,
            )
            self._in_file = 0
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._in_file += table.num_rows
        self.rows += table.num_rows

    def _close_file(self) -> None:
        assert self._writer is not None and self._tmp is not None and self._final is not None
        self._writer.close()
        os.replace(self._tmp, self._final)
        self.files.append(self._final)
        self._writer = None

    def close(self) -> None:
        if self._writer is not None:
            self._close_file()

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                if self._tmp is not None and self._tmp.exists():
                    self._tmp.unlink()
                self._writer = None


def _partition_folder(root: Path, lake_source: str, version: int, site: Site, day: _dt.date) -> Path:
    return (
        root / "aws" / lake_source / f"{version}.0" / f"region={site.region}" / f"accountId={site.account}"
        / f"eventDay={day:%Y%m%d}"
    )  # fmt: skip


# ----------------------------------------------------------------------------- generation
class _Generator:
    def __init__(self, root: Path, start: _dt.date, days: int, seed: int, version: int, cfg: dict[str, Any]) -> None:
        self.root = root
        self.start = start
        self.days = days
        self.seed = seed
        self.version = version
        self.cfg = cfg
        self.start_ms = day_start_ms(start)
        self.env: Environment = build_environment(
            seed,
            accounts=cfg["accounts"],
            regions=cfg["regions"],
            vpcs_per_site=cfg["vpcs_per_region"],
            instances_per_vpc=cfg["instances_per_vpc"],
            users_per_account=cfg["users_per_account"],
        )
        self.plan: AnomalyPlan = plan_anomalies(
            self.env, seed, self.start_ms, days, cfg["anomalies_per_kind"], cfg["warmup_fraction"], cfg["sources"]
        )
        env = self.env
        self.flow_split = split_total(cfg["flows_per_day"], [s.flow_weight for s in env.sites])
        self.dns_split = split_total(cfg["dns_per_day"], [s.dns_weight for s in env.sites])
        self.api_weights = [site_channel_weights(env, s) for s in env.sites]
        self.api_split = split_total(cfg["api_calls_per_day"], [w.sum() for w, _ in self.api_weights])
        data_tables(env)  # built here, before partitions are generated in threads
        self.data_weights = {src: [data_channel_weights(env, s, src) for s in env.sites] for src in DATA_SOURCES}
        self.data_split = {
            src: split_total(cfg[_DATA_VOLUME[src]], [w.sum() for w, _ in self.data_weights[src]])
            for src in DATA_SOURCES
        }
        self.labels = LabelCollector(env, self.plan, seed, version)
        self.days_ctx = [
            day_context(env, seed, d, self.start_ms + d * DAY_MS, (start + _dt.timedelta(days=d)).weekday() < 5)
            for d in range(days)
        ]

    def tasks(self) -> list[_Task]:
        out: list[_Task] = []
        for d in range(self.days):
            for s in self.env.sites:
                if "vpc_flow" in self.cfg["sources"]:
                    out.append(_Task("vpc_flow", s.index, d, int(self.flow_split[s.index])))
                if "route53" in self.cfg["sources"]:
                    out.append(_Task("route53", s.index, d, int(self.dns_split[s.index])))
                if "cloudtrail" in self.cfg["sources"]:
                    out.append(_Task("cloudtrail_auth", s.index, d, 0))
                    out.append(_Task("cloudtrail_api", s.index, d, int(self.api_split[s.index])))
                for src in DATA_SOURCES:
                    if src in self.cfg["sources"]:
                        out.append(_Task(src, s.index, d, int(self.data_split[src][s.index])))
        return out

    # ---------------------------------------------------------------- one partition
    def run_task(self, task: _Task) -> tuple[int, list[Path]]:
        site = self.env.sites[task.site]
        day = self.start + _dt.timedelta(days=task.day)
        lake_source = LAKE_SOURCES["cloudtrail" if task.kind.startswith("cloudtrail") else task.kind]
        folder = _partition_folder(self.root, lake_source, self.version, site, day)
        token = stable_token(self.seed, self.version, task.kind, site.account, site.region, f"{day:%Y%m%d}", length=12)
        schema = O.schema_for("cloudtrail_api" if task.kind in DATA_SOURCES else task.kind, self.version)
        writer = _PartitionWriter(folder, f"{_PREFIX[task.kind]}-{day:%Y%m%d}", token, schema, self.cfg)
        try:
            for table in getattr(self, f"_chunks_{task.kind}")(task, site):
                writer.write(table)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return writer.rows, writer.files

    def _day_ms(self, task: _Task) -> int:
        return self.start_ms + task.day * DAY_MS

    def _extra(self, store, task: _Task, lo_ms: int, hi_ms: int) -> list[dict[str, np.ndarray]]:
        out = []
        for spec in store.get((task.site, task.day), []):
            m = (spec["time"] >= lo_ms) & (spec["time"] < hi_ms)
            if m.any():
                out.append({k: v[m] for k, v in spec.items()})
        return out

    def _network_chunks(self, task: _Task, site: Site, key: int, amplitude: float):
        rng = rng_for(self.seed, key, task.site, task.day)
        counts = minute_counts(rng, task.rows, diurnal_weights(site.utc_offset, amplitude))
        day_ms = self._day_ms(task)
        for ci, (lo, hi) in enumerate(chunk_minute_ranges(counts, self.cfg["row_group_rows"])):
            crng = rng_for(self.seed, key, task.site, task.day, ci + 1)
            times = times_in_minutes(crng, day_ms, counts, lo, hi)
            hi_ms = day_ms + hi * 60_000 if hi < 1440 else day_ms + DAY_MS
            yield crng, times, day_ms + lo * 60_000, hi_ms

    def _chunks_vpc_flow(self, task: _Task, site: Site):
        if not site.conv:
            return
        for crng, times, lo_ms, hi_ms in self._network_chunks(task, site, _S_VPC, 0.35):
            spec = concat_specs([sample_flows(crng, site, times), *self._extra(self.plan.flows, task, lo_ms, hi_ms)])
            if spec:
                yield flow_table(site, spec, self.version)

    def _chunks_route53(self, task: _Task, site: Site):
        if not site.dns:
            return
        for crng, times, _, _ in self._network_chunks(task, site, _S_DNS, 0.3):
            if len(times):
                yield dns_table(self.env, site, sample_dns(crng, site, times), self.version)

    def _chunks_cloudtrail_auth(self, task: _Task, site: Site):
        rng = rng_for(self.seed, _S_AUTH, task.site, task.day)
        day = self.days_ctx[task.day]
        weights = diurnal_weights(site.utc_offset, 5.0, peak_local_h=9.5, width_h=2.5)
        base = sample_signins(rng, self.env, site, day, weights)
        spec = concat_signin([base, *self._extra(self.plan.signins, task, day.day_ms, day.day_ms + DAY_MS)])
        if len(spec["time"]):
            table = signin_table(self.env, site, spec, self.version, rng)
            self.labels.add_signins(task.site, task.day, 0, site, spec, table)
            yield table

    def _chunks_cloudtrail_api(self, task: _Task, site: Site):
        yield from self._api_chunks(task, site, _S_API, self.api_weights[task.site], self.plan.api, None)

    def _chunks_s3_data(self, task: _Task, site: Site):
        weights = self.data_weights["s3_data"][task.site]
        yield from self._api_chunks(task, site, _S_S3, weights, self.plan.s3_data, "s3_data")

    def _chunks_lambda_execution(self, task: _Task, site: Site):
        weights = self.data_weights["lambda_execution"][task.site]
        yield from self._api_chunks(task, site, _S_LAMBDA, weights, {}, "lambda_execution")

    def _api_chunks(self, task: _Task, site: Site, key: int, weights: tuple[np.ndarray, np.ndarray], store,
                    data_source: str | None):
        """API Activity rows of one partition: management calls (``data_source`` None) or data events.

        Channels are drawn by ``weights`` (per channel, and whether it follows working hours), human
        channels over the working day, machine ones around the clock; ``store`` holds injected rows.
        """
        env = self.env
        rng = rng_for(self.seed, key, task.site, task.day)
        day = self.days_ctx[task.day]
        w, human = weights
        total = w.sum()
        extra_all = store.get((task.site, task.day), [])
        if total <= 0 and not extra_all:
            return
        w_h = w * human
        w_m = w * ~human
        share_h = w_h.sum() / total if total > 0 else 0.0
        n_h = int(round(task.rows * share_h * day.human_factor))
        n_m = task.rows - int(round(task.rows * share_h))
        c_h = minute_counts(rng, n_h, diurnal_weights(site.utc_offset, 6.0, peak_local_h=13.0, width_h=3.0))
        c_m = minute_counts(rng, n_m, diurnal_weights(site.utc_offset, 0.15))
        cum_h, cum_m = np.cumsum(w_h), np.cumsum(w_m)
        for ci, (lo, hi) in enumerate(chunk_minute_ranges(c_h + c_m, self.cfg["row_group_rows"])):
            crng = rng_for(self.seed, key, task.site, task.day, ci + 1)
            th = times_in_minutes(crng, day.day_ms, c_h, lo, hi)
            tm = times_in_minutes(crng, day.day_ms, c_m, lo, hi)
            ch = np.concatenate([weighted_index(crng, cum_h, len(th)), weighted_index(crng, cum_m, len(tm))])
            times = np.concatenate([th, tm])
            order = np.argsort(times, kind="stable")
            times, ch = times[order], ch[order]
            if data_source is None:
                spec = sample_api(crng, env, site, times, ch.astype(np.int32), day)
            else:
                spec = sample_data(crng, env, site, times, ch.astype(np.int32), day, data_source)
            hi_ms = day.day_ms + (hi * 60_000 if hi < 1440 else DAY_MS)
            extra = self._extra(store, task, day.day_ms + lo * 60_000, hi_ms)
            if extra:
                spec = concat_specs([spec, *extra])
            if spec and len(spec["time"]):
                table = api_table(env, site, spec, self.version, crng, data=data_source is not None)
                if data_source is None:  # the synthetic risk labels sample management calls only
                    self.labels.add_api(task.site, task.day, ci, site, spec, table)
                yield table


def generate_lake(
    root: str | os.PathLike[str],
    start: _dt.date,
    days: int,
    seed: int,
    source_version: int = 1,
    **scale: Any,
) -> dict[str, Any]:
    """Write a sample Security Lake under ``root`` and return a summary.

    :param root: local folder; ``aws/…`` and ``ground_truth/`` are created in it.
    :param start: first UTC day.
    :param days: number of days (>= 1).
    :param seed: random seed; the same seed and arguments give byte-identical files.
    :param source_version: 1 (OCSF 1.0.0-rc.2) or 2 (OCSF 1.1.0).
    :param scale: knobs, see :data:`DEFAULTS`: ``accounts``, ``regions``, ``vpcs_per_region``,
        ``instances_per_vpc``, ``users_per_account``, ``flows_per_day`` (VPC flow rows per day over the
        whole estate), ``dns_per_day``, ``api_calls_per_day`` (on a working day; weekends are quieter),
        ``s3_data_per_day`` and ``lambda_per_day`` (CloudTrail data events: S3 object calls and Lambda
        invocations, on a working day), ``anomalies_per_kind``, ``warmup_fraction`` (anomalies only after
        this share of the period), ``sources`` (subset of vpc_flow, route53, cloudtrail, s3_data,
        lambda_execution), ``row_group_rows``, ``rows_per_file``,
        ``compression_level`` (gzip), ``workers`` (parallel partitions), ``overwrite``.
    :returns: summary with rows and files per source, anomaly counts, paths and seconds.
    """
    t_start = _time.perf_counter()
    if isinstance(start, _dt.datetime) or not isinstance(start, _dt.date):
        raise ValueError(f"start: got {start!r}; allowed: a datetime.date")
    if not isinstance(days, (int, np.integer)) or isinstance(days, bool) or not 1 <= days <= 3660:
        raise ValueError(f"days: got {days!r}; allowed: an integer 1..3660")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: got {seed!r}; allowed: an integer >= 0")
    if source_version not in (1, 2) or isinstance(source_version, bool):
        raise ValueError(f"source_version: got {source_version!r}; allowed: 1, 2")
    cfg = _resolve(scale)
    root = Path(root)
    _prepare_root(root, int(source_version), cfg)

    gen = _Generator(root, start, int(days), int(seed), int(source_version), cfg)
    tasks = gen.tasks()
    if cfg["workers"] > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=int(cfg["workers"])) as pool:
            results = list(pool.map(gen.run_task, tasks))
    else:
        results = [gen.run_task(t) for t in tasks]

    rows = {"vpc_flow": 0, "route53": 0, "cloudtrail_auth": 0, "cloudtrail_api": 0, "s3_data": 0, "lambda_execution": 0}
    files = {k: 0 for k in rows}
    for task, (n, paths) in zip(tasks, results):
        rows[task.kind] += n
        files[task.kind] += len(paths)

    gt_dir = root / "ground_truth"
    gt_dir.mkdir(parents=True, exist_ok=True)
    truth = gen.plan.truth_table()
    pq.write_table(truth, gt_dir / "anomalies.parquet", compression="gzip")
    anomalies = gen.plan.counts()
    labels = gen.labels.write(gt_dir / LABEL_FILE)
    manifest = {
        "generator": "seclake_lakegen.generate",
        "seed": int(seed),
        "start": start.isoformat(),
        "days": int(days),
        "source_version": int(source_version),
        "ocsf_version": O.OCSF_VERSION[int(source_version)],
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k not in ("workers", "overwrite")},
        "accounts": gen.env.accounts,
        "regions": gen.env.regions,
        "instances": sum(len(s.instances) for s in gen.env.sites),
        "principals": len(gen.env.principals),
        "rows": rows,
        "files": files,
        "anomalies": anomalies,
        "anomaly_events": gen.plan.events(),
        "anomaly_rows": dict(sorted(gen.plan.rows.items())),
        "anomaly_window": [
            _iso(gen.plan.window[0]),
            _iso(gen.plan.window[1]),
        ],
        "labels": labels,  # file relative to this manifest's folder
    }
    (gt_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    seconds = _time.perf_counter() - t_start
    return {
        **manifest,
        "root": str(root),
        "ground_truth": str(gt_dir / "anomalies.parquet"),
        "manifest": str(gt_dir / "manifest.json"),
        "labels_file": str(gt_dir / LABEL_FILE),
        "total_rows": sum(rows.values()),
        "total_files": sum(files.values()),
        "seconds": round(seconds, 3),
    }


def newest_day(root: str | os.PathLike[str]) -> _dt.date:
    """The newest ``eventDay`` partition in a local lake (``ValueError`` when it holds none)."""
    days = [p.name.split("=", 1)[1] for p in Path(root).glob("aws/*/*/*/*/eventDay=*") if p.is_dir()]
    valid = sorted(d for d in days if len(d) == 8 and d.isdigit())
    if not valid:
        raise ValueError(f"no eventDay partitions under {root}/aws")
    return _dt.datetime.strptime(valid[-1], "%Y%m%d").date()


def drop_batch(root: str | os.PathLike[str], day: _dt.date, seed: int, source_version: int = 1,
               **scale: Any) -> dict[str, Any]:
    """Add one new day of data to an existing sample lake, as a new log batch landing in it.

    The day is generated with the same ``seed`` (so the same accounts, instances and people as the
    lake) and anomalies anywhere in the day (``warmup_fraction=0`` unless given), in a hidden staging
    folder under ``root``, then every object is moved into the lake atomically (``os.replace``), so a
    scanner never sees a half-written object. The day's ground truth goes to
    ``ground_truth/batches/<YYYYMMDD>/`` (anomalies, synthetic risk labels, manifest; the lake's own
    ground truth is left alone).
    """
    root = Path(root)
    stamp = day.strftime("%Y%m%d")
    staging = root / f".incoming-{stamp}"
    shutil.rmtree(staging, ignore_errors=True)
    scale = {"warmup_fraction": 0.0, **scale, "overwrite": True}
    summary = generate_lake(staging, day, 1, seed, source_version=source_version, **scale)
    moved = []
    for path in sorted((staging / "aws").rglob("*.parquet")):
        dst = root / path.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dst)
        moved.append(str(dst.relative_to(root)))
    truth = root / "ground_truth" / "batches" / stamp
    truth.mkdir(parents=True, exist_ok=True)
    for name in ("anomalies.parquet", LABEL_FILE, "manifest.json"):
        os.replace(staging / "ground_truth" / name, truth / name)
    shutil.rmtree(staging, ignore_errors=True)
    return {"day": day.isoformat(), "objects": moved, "rows": summary["rows"], "anomalies": summary["anomalies"],
            "ground_truth": str(truth / "anomalies.parquet"), "labels": str(truth / LABEL_FILE)}


def _iso(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _prepare_root(root: Path, version: int, cfg: dict[str, Any]) -> None:
    targets = [root / "aws" / LAKE_SOURCES[s] / f"{version}.0" for s in cfg["sources"]] + [root / "ground_truth"]
    existing = [p for p in targets if p.exists() and any(p.iterdir())]
    if existing:
        if not cfg["overwrite"]:
            shown = ", ".join(str(p) for p in existing)
            raise LakeExistsError(f"generated data already exists ({shown}); pass overwrite=True (--overwrite) to replace it")
        for p in existing:
            shutil.rmtree(p)
    root.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- CLI glue
def _date(text: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``lake generate`` options to ``parser``."""
    parser.add_argument("--root", required=True, help="folder to write the lake into")
    parser.add_argument("--start", required=True, type=_date, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=7, help="number of days (default 7)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--source-version", type=int, choices=(1, 2), default=1, help="Security Lake source version")
    g = parser.add_argument_group("scale")
    g.add_argument("--flows-per-day", type=int, help=f"VPC flow rows per day, whole estate (default {DEFAULTS['flows_per_day']})")
    g.add_argument("--dns-per-day", type=int, help="Route 53 rows per day (default flows/8)")
    g.add_argument("--api-calls-per-day", type=int, help="CloudTrail API rows per working day (default max(2000, flows/10))")
    g.add_argument("--s3-data-per-day", type=int, help="S3 data-event rows per working day (default API calls/4)")
    g.add_argument("--lambda-per-day", type=int, help="Lambda Invoke data-event rows per working day (default API calls/10)")
    g.add_argument("--accounts", type=int, help=f"number of accounts (default {DEFAULTS['accounts']})")
    g.add_argument("--regions", type=_csv, help="comma-separated regions (default us-east-1,eu-west-1)")
    g.add_argument("--vpcs-per-region", type=int, help="VPCs per account and region (default 1)")
    g.add_argument("--instances-per-vpc", type=int, help=f"EC2 instances per VPC (default {DEFAULTS['instances_per_vpc']})")
    g.add_argument("--users-per-account", type=int, help=f"people per account (default {DEFAULTS['users_per_account']})")
    g.add_argument("--sources", type=_csv, help="subset of vpc_flow,route53,cloudtrail,s3_data,lambda_execution (default all)")
    a = parser.add_argument_group("anomalies")
    a.add_argument("--anomalies-per-kind", type=int, help=f"injected anomalies per kind (default {DEFAULTS['anomalies_per_kind']})")
    a.add_argument("--warmup-fraction", type=float, help="anomalies only after this share of the period (default 2/3)")
    o = parser.add_argument_group("output")
    o.add_argument("--row-group-rows", type=int, help=f"rows per row group / generated chunk (default {DEFAULTS['row_group_rows']})")
    o.add_argument("--rows-per-file", type=int, help=f"roll over to a new file after this many rows (default {DEFAULTS['rows_per_file']})")
    o.add_argument("--compression-level", type=int, help="gzip level 0..9 (default 1)")
    o.add_argument("--workers", type=int, help="partitions generated in parallel (default min(4, CPUs))")
    o.add_argument("--overwrite", action="store_true", help="replace previously generated data under --root")


def run_generate(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`generate_lake` from parsed ``lake generate`` arguments; returns its summary."""
    scale = {k: getattr(args, k, None) for k in DEFAULTS}
    scale["overwrite"] = bool(getattr(args, "overwrite", False))
    return generate_lake(
        args.root,
        args.start,
        args.days,
        args.seed,
        source_version=args.source_version,
        **{k: v for k, v in scale.items() if v is not None},
    )
