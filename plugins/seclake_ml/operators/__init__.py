"""Airflow operators of the package. They orchestrate; the engine modules do the work.

Importing this package imports the Airflow task SDK but no data library: pandas, DuckDB, PyArrow,
torch and boto3 load inside ``execute`` only, so DAG files that use these operators parse fast.
"""

from seclake_ml.operators.extract import SecurityLakePairsOperator

__all__ = ["SecurityLakePairsOperator"]
