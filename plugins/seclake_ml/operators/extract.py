"""Operator that extracts ``(entity, ip)`` pairs from Security Lake for one source view and data window."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, XComArg

from seclake_ml.sources import SOURCES, get_source

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

# Warn when more than this share of the rows read was dropped: usually schema drift or a wrong view.
HIGH_DROP_RATIO = 0.5


def _is_deferred(value: Any) -> bool:
    """True for values only known at run time: Jinja templates and XCom references."""
    return isinstance(value, XComArg) or (isinstance(value, str) and ("{{" in value or "{%" in value))


def _validate_source_view(source: Any, view: Any) -> None:
    """Raise ``ValueError`` naming the allowed values when ``source``/``view`` are not registered.

    Values that are still Jinja templates are checked after rendering, in ``execute``.
    """
    if _is_deferred(source):
        return
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"source: got {source!r}; allowed: {', '.join(SOURCES)}")
    if view is None or _is_deferred(view):
        return
    spec = get_source(source)
    if not isinstance(view, str) or view not in {v.name for v in spec.views}:
        allowed = ", ".join(v.name for v in spec.views)
        raise ValueError(f"view: got {view!r} for source {source!r}; allowed: {allowed}")


class SecurityLakePairsOperator(BaseOperator):
    """Extract ``(entity, ip)`` pairs for one Security Lake source view over one data window.

    The backend (local DuckDB over a lake folder, or Athena over the Glue tables) comes from the
    package configuration read at run time: the Airflow Variable ``seclake_ml_config`` when set, else
    the ``SECLAKE_ML_CONFIG`` / ``SECLAKE_ML_<FIELD>`` environment, with ``config_overrides`` on top.
    Output is keyed by the data window and replaced on every run, so retries and re-runs never
    duplicate pairs. Returns the extraction summary (counts, drops, output location): small and XCom-safe.

    :param source: registered source name (``vpc_flow``, ``route53``, ``cloudtrail_signin``,
        ``cloudtrail_api``). Templated.
    :param view: pair view of that source; ``None`` takes the source's default view. Templated.
    :param start: window start (ISO-8601 or datetime); defaults to the run's ``data_interval_start``.
        Templated.
    :param end: window end, exclusive; defaults to the run's ``data_interval_end``. Templated.
    :param out: output location; defaults to
        ``<work_location>/pairs/<source>/<view>/interval=<start>_<end>/pairs.parquet`` (local) or the
        same folder as an S3 prefix. Templated.
    :param config_overrides: configuration fields that win over the Variable and environment for this
        task only (e.g. ``{"dedupe": true}``). Templated (rendered as JSON).
    :param aws_conn_id: Airflow connection for the aws backend (Athena and S3 hooks).
    """

    template_fields: Sequence[str] = ("source", "view", "start", "end", "out", "config_overrides")
    template_fields_renderers = {"config_overrides": "json"}
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        source: str,
        view: str | None = None,
        start: Any = None,
        end: Any = None,
        out: str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _validate_source_view(source, view)
        if config_overrides is not None and not isinstance(config_overrides, (Mapping, str, XComArg)):
            raise ValueError(
                f"config_overrides: got {type(config_overrides).__name__}; expected a mapping of config fields"
            )
        self.source = source
        self.view = view
        self.start = start
        self.end = end
        self.out = out
        self.config_overrides = config_overrides
        self.aws_conn_id = aws_conn_id

    # ------------------------------------------------------------------------------------ run
    def execute(self, context: Context) -> dict[str, Any]:
        from seclake_ml.airflow_support import load_runtime_config
        from seclake_ml.locations import pairs_output_location
        from seclake_ml.backends import backend_of
        from seclake_ml.interval import DataInterval

        _validate_source_view(self.source, self.view)
        view = self.view or get_source(self.source).default_view.name
        cfg = load_runtime_config(self.config_overrides)
        window = DataInterval.from_context(context, self.start, self.end)
        start, end = window.start, window.end
        out = self.out or pairs_output_location(cfg, self.source, view, window)
        label = f"{self.source}/{view} {window.label}"
        self.log.info(
            "extracting pairs %s backend=%s source_version=%s lake=%s -> %s",
            label,
            cfg.backend,
            cfg.source_version,
            backend_of(cfg).lake_label(),
            out,
        )
        t0 = time.perf_counter()
        from seclake_ml.extraction import extract_pairs

        result = extract_pairs(cfg, source=self.source, view=view, start=start, end=end, out=out,
                               aws_conn_id=self.aws_conn_id).to_dict()
        result.setdefault("start", window.start_iso)
        result.setdefault("end", window.end_iso)
        self._log_result(label, result, time.perf_counter() - t0)
        return result

    # ------------------------------------------------------------------------------------ logs
    def _log_result(self, label: str, result: Mapping[str, Any], wall: float) -> None:
        from seclake_ml.runs import describe_quarantined

        rows = int(result.get("rows_read") or 0)
        written = int(result.get("pairs_written") or 0)
        dropped = {k: int(v) for k, v in dict(result.get("dropped") or {}).items()}
        n_dropped = sum(dropped.values())
        drops = ", ".join(f"{k}={v}" for k, v in sorted(dropped.items()) if v) or "none"
        self.log.info(
            "pairs %s: %d rows read, %d pairs written, %d dropped (%s); engine %.2fs, task %.2fs -> %s",
            label,
            rows,
            written,
            n_dropped,
            drops,
            float(result.get("seconds") or 0.0),
            wall,
            result.get("output"),
        )
        quarantined = list(result.get("quarantined") or [])
        if quarantined:
            self.log.warning(
                "pairs %s: %d lake object(s) were unreadable and skipped (quarantined): %s%s. Inspect or "
                "re-deliver them, then clear this task to re-extract the window.",
                label,
                len(quarantined),
                ", ".join(describe_quarantined(q) for q in quarantined[:10]),
                " …" if len(quarantined) > 10 else "",
            )
        if rows == 0:
            self.log.warning(
                "pairs %s: the lake returned no rows. Check that the lake holds data for this window and "
                "that the configured accounts/regions filters and source_version match it.",
                label,
            )
        elif written == 0 or n_dropped / rows > HIGH_DROP_RATIO:
            self.log.warning(
                "pairs %s: %.0f%% of rows were dropped (%s). A changed schema or the wrong view is the "
                "usual cause; compare the view's columns with the lake's.",
                label,
                100.0 * n_dropped / rows,
                drops,
            )
