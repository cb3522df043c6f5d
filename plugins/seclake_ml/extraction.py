"""Pair extraction for a data interval: the entry point over both query backends.

:func:`extract_pairs` validates the source, view and interval and hands them to the backend's query
layer: :class:`~seclake_ml.lake.duck.DuckDBLake` (local lake folder) or
:class:`~seclake_ml.lake.athena.AthenaLake` (Glue tables through Athena). The pair contract itself
(result record, drop reasons, view rendering) is :mod:`seclake_ml.pairs`, below both query layers.
"""

from __future__ import annotations

from datetime import datetime

from seclake_ml.config import SeclakeConfig
from seclake_ml.interval import DataInterval
from seclake_ml.pairs import ExtractionResult
from seclake_ml.sources import get_source

__all__ = ["extract_pairs"]


def extract_pairs(
    cfg: SeclakeConfig,
    source: str,
    view: str,
    start: datetime | str,
    end: datetime | str,
    out: str,
    *,
    aws_conn_id: str | None = "aws_default",
) -> ExtractionResult:
    """Extract pairs of ``source``/``view`` whose event time is in ``[start, end)`` into ``out``.

    :param cfg: validated configuration (backend, lake location, source version, filters, dedupe).
    :param source: registered source name, e.g. ``vpc_flow``.
    :param view: the source's pair view, e.g. ``instance_peer``.
    :param start: inclusive start of the data interval (UTC).
    :param end: exclusive end of the data interval (UTC).
    :param out: local Parquet file (local backend) or ``s3://bucket/prefix/`` (aws backend); an
        existing output for the same location is replaced, so re-runs never duplicate.
    :param aws_conn_id: Airflow connection of the aws backend's hooks (ignored locally).
    """
    spec = get_source(source)
    spec.view(view)  # validates the view name
    window = DataInterval.parse(start, end)
    start_utc, end_utc = window.start, window.end
    from seclake_ml.backends import backend_of

    return backend_of(cfg, aws_conn_id).extract_pairs(spec.name, view, start_utc, end_utc, out)
