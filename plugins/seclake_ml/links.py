"""Operator extra links shown on task instances in the Airflow UI."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

from seclake_ml.uris import is_s3, split_s3_uri

REPORT_URL_KEY = "report_url"


def report_url(location: str, region: str = "us-east-1") -> str:
    """A browsable URL for a report location: ``file://`` for local paths, the S3 console for ``s3://``."""
    if not location:
        return ""
    if is_s3(location):
        bucket, key = split_s3_uri(location, "location")
        return f"https://{region}.console.aws.amazon.com/s3/object/{bucket}?region={region}&prefix={key}"
    from pathlib import Path

    return Path(location).resolve().as_uri()


class CalibrationReportLink(BaseOperatorLink):
    """Opens the calibration report (histograms, ROC, metrics) written by the task's run."""

    name = "Calibration report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(XCom.get_value(key=REPORT_URL_KEY, ti_key=ti_key) or "")
