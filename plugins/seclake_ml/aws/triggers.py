"""Deferrable waits of the AWS backend: serializable triggers that poll SageMaker in the triggerer.

:class:`SageMakerJobTrigger` waits for a training or Batch Transform job, :class:`EndpointRolloutTrigger`
for an endpoint create or blue/green update. Each polls the ``Describe*`` call through the Amazon
provider's async (aiobotocore) client of :class:`SageMakerHook`, so the aws connection (and its
``endpoint_url``) is the one the operator uses, and yields exactly one :class:`TriggerEvent`. Its
payload is a small JSON dict with ``status`` and a one-line ``message``; ``run()`` never raises for
an AWS or other error, it reports it in the event. Throttling, 5xx and connection errors on one poll
are logged and retried at the next poll (each counts as an attempt).

:class:`EndpointWatch` is the one place that decides whether a rollout has ended and how; the
synchronous :func:`seclake_ml.aws.rollout.wait_for_endpoint` uses it too.

This module imports only the standard library and Airflow's trigger base at top level (the
triggerer imports it for every deferred task); boto, aiobotocore and the provider are imported
inside :meth:`run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from seclake_ml.aws_errors import error_fields

JobType = Literal["training", "transform"]

#: ``job_type`` -> (Describe method of the client, its name argument, status field).
JOB_TYPES: dict[str, tuple[str, str, str]] = {
    "training": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "transform": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
}
JOB_SUCCESS_STATES = frozenset({"Completed"})
JOB_FAILED_STATES = frozenset({"Failed", "Stopped"})

ENDPOINT_BUSY_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
ENDPOINT_BROKEN_STATES = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService"})
# InService on the old config before any in-progress state was seen may just be the update not
# showing yet; look this many more times before calling it a rollback.
SETTLE_POLLS = 3

DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_JOB_MAX_ATTEMPTS = 2880  # 24 h at 30 s
DEFAULT_ENDPOINT_MAX_ATTEMPTS = 480  # 4 h at 30 s

# Error codes worth another poll: throttling and server-side trouble.
TRANSIENT_ERROR_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "SlowDown", "PriorRequestNotComplete", "InternalFailure", "InternalError",
    "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
    "RequestTimeoutException",
})
_NOT_FOUND_CODES = frozenset({"ValidationException", "ResourceNotFound", "ResourceNotFoundException"})
_NOT_FOUND_WORDS = ("not found", "does not exist", "could not find")


# -------------------------------------------------------------------------------- error helpers
def _one_line(text: Any, limit: int = 1000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """``Code: message`` of an AWS error (type name and text of any other exception), on one line."""
    code, message, _ = error_fields(exc)
    return _one_line(f"{code or type(exc).__name__}: {message}")


def is_not_found(exc: BaseException) -> bool:
    """Whether SageMaker answered that the described resource does not exist."""
    code, message, _ = error_fields(exc)
    return code in _NOT_FOUND_CODES and any(w in message.lower() for w in _NOT_FOUND_WORDS)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed poll is worth repeating: throttling, a 5xx answer, a connection problem or time-out."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return True
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - botocore is a dependency of the provider
        return False
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    code, _, status = error_fields(exc)
    return code in TRANSIENT_ERROR_CODES or (status is not None and status >= 500)


# ---------------------------------------------------------------------------------- validation
def _check_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: got {value!r}; expected a non-empty SageMaker resource name")
    return value


def _check_poll(poll_interval: Any, max_attempts: Any) -> tuple[float, int]:
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or not poll_interval >= 0:
        raise ValueError(f"poll_interval: got {poll_interval!r}; expected a number of seconds >= 0")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts: got {max_attempts!r}; expected an int >= 1")
    return float(poll_interval), max_attempts


# --------------------------------------------------------------------------------- base class
class _SageMakerPollTrigger(BaseTrigger):
    """Shared loop: describe every ``poll_interval`` seconds until a verdict, at most ``max_attempts`` times."""

    aws_conn_id: str | None
    region_name: str | None
    poll_interval: float
    max_attempts: int

    def _hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        return SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    async def _describe(self, client: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _verdict(self, description: Mapping[str, Any]) -> dict[str, Any] | None:
        """The event payload when ``description`` ends the wait, else ``None``."""
        raise NotImplementedError

    def _payload(self, status: str, message: str, description: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _what(self) -> str:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the resource reaches a final state; yield one event and return."""
        try:
            payload = await self._watch()
        except Exception as exc:  # anything unexpected is reported, never raised into the triggerer
            payload = self._payload("failed", f"waiting for {self._what()} failed: {describe_error(exc)}")
        self.log.info("%s event: %s", payload["status"], payload["message"])
        yield TriggerEvent(payload)

    async def _watch(self) -> dict[str, Any]:
        last: Mapping[str, Any] | None = None
        last_error: str | None = None
        async with await self._hook().get_async_conn() as client:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    description = await self._describe(client)
                except Exception as exc:
                    if is_not_found(exc):
                        return self._payload(
                            "failed", f"{self._what()} does not exist ({describe_error(exc)})")
                    if not is_transient(exc):
                        return self._payload(
                            "failed", f"describing {self._what()} failed: {describe_error(exc)}", last)
                    last_error = describe_error(exc)
                    self.log.warning("poll %d of %s failed, retrying: %s", attempt, self._what(), last_error)
                else:
                    last, last_error = description, None
                    verdict = self._verdict(description)
                    if verdict is not None:
                        return verdict
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.poll_interval)
        message = self._timeout_message(last, (self.max_attempts - 1) * self.poll_interval)
        if last_error is not None:
            message += f"; the last poll failed: {last_error}"
        return self._payload("timeout", message, last)

    def _timeout_message(self, description: Mapping[str, Any] | None, waited_seconds: float) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------------------- job trigger
class SageMakerJobTrigger(_SageMakerPollTrigger):
    """Wait in the triggerer for a SageMaker training or Batch Transform job to end.

    The single event's payload: ``{"status": "success" | "failed" | "timeout", "job_name",
    "job_type", "job_status": <SageMaker status or None>, "message": <one line>}``. ``Completed`` is
    success; ``Failed`` and ``Stopped`` are failed (the message carries SageMaker's
    ``FailureReason``); a job SageMaker does not know, or an AWS error that is not transient, is
    failed with ``job_status`` ``None``; still running after ``max_attempts`` polls is timeout.

    :param job_name: the SageMaker job name.
    :param job_type: ``"training"`` or ``"transform"``.
    :param aws_conn_id: Airflow AWS connection (``None``: boto's default credential chain).
    :param region_name: AWS region; ``None`` uses the connection's.
    :param poll_interval: seconds between two ``Describe*`` calls.
    :param max_attempts: number of ``Describe*`` calls before giving up with a timeout event.
    """

    def __init__(
        self,
        job_name: str,
        job_type: JobType,
        aws_conn_id: str | None,
        region_name: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_attempts: int = DEFAULT_JOB_MAX_ATTEMPTS,
    ) -> None:
        super().__init__()
        if job_type not in JOB_TYPES:
            raise ValueError(f"job_type: got {job_type!r}; allowed: {' | '.join(JOB_TYPES)}")
        self.job_name = _check_name(job_name, "job_name")
        self.job_type: JobType = job_type
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval, self.max_attempts = _check_poll(poll_interval, max_attempts)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument, to rebuild the trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "job_type": self.job_type,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "max_attempts": self.max_attempts,
            },
        )

    def _what(self) -> str:
        return f"SageMaker {self.job_type} job {self.job_name}"

    async def _describe(self, client: Any) -> dict[str, Any]:
        method, argument, _ = JOB_TYPES[self.job_type]
        return await getattr(client, method)(**{argument: self.job_name})

    def _status(self, description: Mapping[str, Any] | None) -> str | None:
        if description is None:
            return None
        value = description.get(JOB_TYPES[self.job_type][2])
        return str(value) if value is not None else None

    def _timeout_message(self, description: Mapping[str, Any] | None, waited_seconds: float) -> str:
        return (f"{self._what()} still {self._status(description)} after {self.max_attempts} poll(s) "
                f"over {waited_seconds:.0f} s")

    def _payload(self, status: str, message: str, description: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "job_name": self.job_name,
            "job_type": self.job_type,
            "job_status": self._status(description),
            "message": _one_line(message),
        }

    def _verdict(self, description: Mapping[str, Any]) -> dict[str, Any] | None:
        job_status = self._status(description)
        if job_status in JOB_SUCCESS_STATES:
            return self._payload("success", f"{self._what()} {job_status}", description)
        if job_status in JOB_FAILED_STATES:
            reason = description.get("FailureReason") or "no failure reason given"
            return self._payload("failed", f"{self._what()} {job_status}: {reason}", description)
        return None


# -------------------------------------------------------------------------- endpoint rollout
class EndpointWatch:
    """Decides, one ``DescribeEndpoint`` response at a time, whether a rollout has ended and how.

    * ``InService`` on ``expected_config``: ``success``;
    * ``InService`` on another config (``previous_config`` when it is given): ``rolled_back``, the
      blue/green update was undone (a CloudWatch alarm fired or the new fleet failed). Before any
      in-progress state was seen this is only believed after :data:`SETTLE_POLLS` more looks;
    * ``InService`` on a third config when ``previous_config`` is given, ``Failed``,
      ``UpdateRollbackFailed`` or ``OutOfService``: ``failed``, with SageMaker's ``FailureReason``;
    * ``Creating``, ``Updating``, ``SystemUpdating``, ``RollingBack`` (or anything unknown): not yet.

    :param endpoint_name: the endpoint watched (for messages).
    :param expected_config: the EndpointConfig the rollout puts in service.
    :param previous_config: the config it replaces; ``None`` when unknown or for a new endpoint.
    :param settle_polls: extra looks at ``InService`` on the old config before calling it a rollback.
    """

    def __init__(
        self,
        endpoint_name: str,
        expected_config: str,
        previous_config: str | None = None,
        *,
        settle_polls: int = SETTLE_POLLS,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.expected_config = expected_config
        self.previous_config = previous_config
        self.settle_polls = settle_polls
        self.seen_busy = False
        self._settled = 0

    def observe(self, description: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(status, message)`` when ``description`` ends the rollout, else ``None`` (poll again)."""
        status = description.get("EndpointStatus")
        current = description.get("EndpointConfigName")
        reason = description.get("FailureReason") or "no failure reason given"
        if status in ENDPOINT_BUSY_STATES:
            self.seen_busy = True
            return None
        if status == "InService" and current == self.expected_config:
            return "success", f"endpoint {self.endpoint_name} is InService on {self.expected_config}"
        if status == "InService" and (self.previous_config is None or current == self.previous_config):
            if not self.seen_busy and self._settled < self.settle_polls:
                self._settled += 1
                return None
            return "rolled_back", (
                f"the update to {self.expected_config} was rolled back; the endpoint serves {current} again "
                f"({reason})"
            )
        if status in ENDPOINT_BROKEN_STATES or status == "InService":
            return "failed", f"expected InService on {self.expected_config}, found {status} on {current} ({reason})"
        return None

    def timeout_message(self, description: Mapping[str, Any] | None, waited_seconds: float) -> str:
        """The message of a wait that ran out while the endpoint was still busy."""
        status = description.get("EndpointStatus") if description else None
        current = description.get("EndpointConfigName") if description else None
        return f"still {status} on {current} after {waited_seconds:.0f} s waiting for {self.expected_config}"


class EndpointRolloutTrigger(_SageMakerPollTrigger):
    """Wait in the triggerer for an endpoint create or blue/green update to end (see :class:`EndpointWatch`).

    The single event's payload: ``{"status": "success" | "rolled_back" | "failed" | "timeout",
    "endpoint_name", "endpoint_status", "endpoint_config", "message": <one line>}`` with the last
    ``EndpointStatus`` and ``EndpointConfigName`` seen (``None`` when never described). An endpoint
    that does not exist, or an AWS error that is not transient, is failed.

    :param endpoint_name: the SageMaker endpoint.
    :param expected_config: the EndpointConfig the rollout puts in service.
    :param aws_conn_id: Airflow AWS connection (``None``: boto's default credential chain).
    :param region_name: AWS region; ``None`` uses the connection's.
    :param poll_interval: seconds between two ``DescribeEndpoint`` calls.
    :param max_attempts: number of ``DescribeEndpoint`` calls before giving up with a timeout event.
    :param previous_config: the config an update replaces. When given, only ``InService`` on it is
        a rollback and ``InService`` on any other config is failed; ``None`` treats every other
        config as a rollback.
    """

    def __init__(
        self,
        endpoint_name: str,
        expected_config: str,
        aws_conn_id: str | None,
        region_name: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_attempts: int = DEFAULT_ENDPOINT_MAX_ATTEMPTS,
        previous_config: str | None = None,
    ) -> None:
        super().__init__()
        self.endpoint_name = _check_name(endpoint_name, "endpoint_name")
        self.expected_config = _check_name(expected_config, "expected_config")
        if previous_config is not None:
            _check_name(previous_config, "previous_config")
        self.previous_config = previous_config
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval, self.max_attempts = _check_poll(poll_interval, max_attempts)
        self._watcher = EndpointWatch(endpoint_name, expected_config, previous_config)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument, to rebuild the trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "endpoint_name": self.endpoint_name,
                "expected_config": self.expected_config,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "max_attempts": self.max_attempts,
                "previous_config": self.previous_config,
            },
        )

    def _what(self) -> str:
        return f"SageMaker endpoint {self.endpoint_name}"

    async def _describe(self, client: Any) -> dict[str, Any]:
        return await client.describe_endpoint(EndpointName=self.endpoint_name)

    def _timeout_message(self, description: Mapping[str, Any] | None, waited_seconds: float) -> str:
        return f"{self._what()}: {self._watcher.timeout_message(description, waited_seconds)}"

    def _payload(self, status: str, message: str, description: Mapping[str, Any] | None = None) -> dict[str, Any]:
        endpoint_status = description.get("EndpointStatus") if description else None
        endpoint_config = description.get("EndpointConfigName") if description else None
        return {
            "status": status,
            "endpoint_name": self.endpoint_name,
            "endpoint_status": None if endpoint_status is None else str(endpoint_status),
            "endpoint_config": None if endpoint_config is None else str(endpoint_config),
            "message": _one_line(message),
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the rollout ends; yield one event and return."""
        self._watcher = EndpointWatch(self.endpoint_name, self.expected_config, self.previous_config)
        async for event in super().run():
            yield event

    def _verdict(self, description: Mapping[str, Any]) -> dict[str, Any] | None:
        verdict = self._watcher.observe(description)
        if verdict is None:
            return None
        status, message = verdict
        return self._payload(status, f"{self._what()}: {message}", description)
