"""What an AWS error says, read from botocore's ``ClientError`` shape without importing botocore.

A ``ClientError`` carries ``response = {"Error": {"Code", "Message"}, "ResponseMetadata":
{"HTTPStatusCode"}}``; any other exception (a network failure, a fake client's own error) has no
``response`` mapping. Standard library only: the engines, the AWS layer, the workspace and the
Lambda read errors with it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["error_code", "error_fields"]


def error_fields(exc: BaseException) -> tuple[str | None, str, int | None]:
    """``(code, message, HTTP status)`` of an AWS service error; ``(None, str(exc), None)`` for any other
    exception. ``code`` is ``None`` when the answer names none."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, str(exc), None
    error = response.get("Error")
    error = error if isinstance(error, Mapping) else {}
    meta = response.get("ResponseMetadata")
    status = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
    code = error.get("Code")
    return (str(code) if code else None), str(error.get("Message") or exc), (status if isinstance(status, int) else None)


def error_code(exc: BaseException) -> str | None:
    """The error code of an AWS service error (``"error"`` when the answer names none); ``None`` for an
    exception that carries no AWS answer."""
    if not isinstance(getattr(exc, "response", None), Mapping):
        return None
    return error_fields(exc)[0] or "error"
