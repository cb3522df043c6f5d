"""seclake_ml: Security Lake anomaly detection with IP Insights, as an Airflow plugin package.

The engine modules (config, sources, lake, pairs, ipinsights, …) never import Airflow; the operator
modules import it lazily so DAG files parse fast.
"""

__version__ = "0.1.0"
