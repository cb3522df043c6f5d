"""Scoring subsystem: new Security Lake objects in, OCSF Detection Findings out (no Airflow imports)."""
