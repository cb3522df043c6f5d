"""Where the package's outputs go in the work location: one function per kind of output.

Every location is keyed by a :class:`~seclake_ml.interval.DataInterval` where it belongs to one, so
re-running or backfilling an interval replaces that interval's outputs. Locations are ``s3://`` URIs on
the aws backend and absolute local paths on the local one; the functions here only compute them
(standard library only, nothing is created or read).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from seclake_ml.uris import join_location

if TYPE_CHECKING:
    from seclake_ml.config import SeclakeConfig
    from seclake_ml.interval import DataInterval

PAIRS_FILE = "pairs.parquet"
SUMMARY_FILE = "extract_summary.json"
TRAINING_STAGES = ("data", "calibration")


def work_root(cfg: SeclakeConfig) -> str:
    """The work location as an ``s3://`` URI, or an absolute folder (relative paths: against the cwd).

    :raises ValueError: a local work location that exists and is not a folder.
    """
    if cfg.work_is_s3:
        return cfg.work_location.rstrip("/")
    path = Path(cfg.work_location).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"work_location {cfg.work_location}: is a file, not a folder")
    return str(path)


def pairs_output_location(cfg: SeclakeConfig, source: str, view: str, window: DataInterval) -> str:
    """Where one extraction's pairs go.

    Local: ``<work>/pairs/<source>/<view>/interval=<start>_<end>/pairs.parquet`` (one file).
    S3: ``<work>/pairs/<source>/<view>/interval=<start>_<end>/`` (a prefix; the query engine may write
    several objects under it).
    """
    folder = join_location(work_root(cfg), "pairs", source, view, window.key)
    if cfg.work_is_s3:
        return folder + "/"
    return str(Path(folder) / PAIRS_FILE)


def run_summary_location(cfg: SeclakeConfig, dag_id: str, window: DataInterval) -> str:
    """Where a training run's extraction summary (JSON) goes."""
    return join_location(work_root(cfg), "runs", dag_id, window.key, SUMMARY_FILE)


def training_dir(cfg: SeclakeConfig, stage: str, window: DataInterval) -> str:
    """The folder (or prefix, without a trailing ``/``) of one training stage's outputs for ``window``.

    :param stage: ``data`` (the prepared train/held-out sets) or ``calibration`` (the sets, scores and report).
    """
    if stage not in TRAINING_STAGES:
        raise ValueError(f"training stage: got {stage!r}; allowed: {' | '.join(TRAINING_STAGES)}")
    return join_location(work_root(cfg), "training", stage, window.key)


def ipinsights_store_dir(cfg: SeclakeConfig) -> str:
    """The local IP Insights model store (versions and the ``active.json`` record)."""
    return join_location(work_root(cfg), "models", "ipinsights")
