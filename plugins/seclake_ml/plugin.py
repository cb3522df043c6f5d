"""Airflow plugin registration for ``seclake_ml``.

Airflow (and MWAA, which unpacks ``plugins.zip`` into its plugins folder) puts the plugins folder on
``sys.path``, so DAGs import operators straight from ``seclake_ml.operators``; this plugin only adds
what must be registered with Airflow itself: template macros for interval-keyed paths, the operator
link, and the analysts' workspace (a FastAPI app the api-server mounts at ``/seclake-ml``, with a
navigation entry). Custom
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
from seclake_ml.workspace.app import create_app

#: Where the api-server mounts the analysts' workspace (:mod:`seclake_ml.workspace.app`).
WORKSPACE_PREFIX = "/seclake-ml"


def interval_key(start: object, end: object) -> str:
    """Template macro: the path segment ``interval=<start>_<end>`` of a data interval."""
    return DataInterval.parse(start, end).key


class SeclakeMlPlugin(AirflowPlugin):
    """Registers ``{{ macros.seclake_ml.interval_key(start, end) }}`` and ``{{ macros.seclake_ml.iso(ts) }}``."""

    name = "seclake_ml"
    macros = [interval_key, iso]
    operator_extra_links = [CalibrationReportLink()]
    # The workspace: a FastAPI app mounted by the api-server (Airflow's auth on every route), shown in
    # the UI's navigation as an embedded view (``url_route`` set: the UI frames ``href`` at /plugin/<url_route>).
    fastapi_apps = [{"app": create_app(), "url_prefix": WORKSPACE_PREFIX, "name": "seclake-ml workspace"}]
    external_views = [{"name": "Analyst workspace", "href": WORKSPACE_PREFIX + "/", "destination": "nav",
                       "url_route": "seclake-ml", "category": "browse"}]
