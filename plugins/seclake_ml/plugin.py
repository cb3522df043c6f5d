"""Airflow plugin registration for ``seclake_ml``.

Airflow (and MWAA, which unpacks ``plugins.zip`` into its plugins folder) puts the plugins folder on
``sys.path``, so DAGs import operators straight from ``seclake_ml.operators``; this plugin only adds
what must be registered with Airflow itself: template macros for interval-keyed paths. Custom
triggers will also live in this package, because Airflow 3 loads triggers from plugins, not from the
DAG bundle.

``plugins/.airflowignore`` keeps Airflow's plugin scanner to this one file: the scanner imports every
``.py`` file it sees as a top-level module, which would run the package's other modules (its CLI
entry point among them) outside their package.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from seclake_ml.interval import DataInterval, iso
from seclake_ml.links import CalibrationReportLink


def interval_key(start: object, end: object) -> str:
    """Template macro: the path segment ``interval=<start>_<end>`` of a data interval."""
    return DataInterval.parse(start, end).key


class SeclakeMlPlugin(AirflowPlugin):
    """Registers ``{{ macros.seclake_ml.interval_key(start, end) }}`` and ``{{ macros.seclake_ml.iso(ts) }}``."""

    name = "seclake_ml"
    macros = [interval_key, iso]
    operator_extra_links = [CalibrationReportLink()]
