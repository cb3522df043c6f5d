"""Two interchangeable pair scorers: the in-process NumPy scorer and a SageMaker endpoint.

Both return SageMaker's ``dot_product`` per pair (higher = more normal; NaN when the IP is not
IPv4) and whether the entity was seen in training (``None`` when the scorer cannot tell, as an
endpoint cannot). :class:`AnomalyScorer` turns ``dot_product`` into the anomaly score the threshold
applies to: ``-dot_product``, or the model's calibrated combination with the entity's history.

:class:`EndpointScorer` sends ``text/csv`` ``entity,ip`` lines, the request format of the IP Insights
endpoint, in requests under ``max_payload_bytes`` (SageMaker refuses real-time payloads over 6 MB;
the default stays under 5 MB) and at most ``max_rows`` lines. Throttling, 5xx model errors and
connection failures are retried with exponential backoff and jitter; a request that still fails
raises :class:`ScoringError`, so the caller can leave the object for a retry.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seclake_ml.aws_errors import error_fields

log = logging.getLogger(__name__)

RETRYABLE_CODES = {
    "ThrottlingException", "Throttling", "TooManyRequestsException", "ServiceUnavailable",
    "InternalFailure", "InternalServerError", "ModelNotReadyException", "RequestTimeout",
}


class ScoringError(RuntimeError):
    """Scoring failed after retries (or the endpoint answered something unusable)."""


@dataclass
class Scores:
    dot_product: np.ndarray  # float64, NaN for invalid IPs
    known_entity: np.ndarray | None  # bool, or None when unknown to the scorer


class AnomalyScorer:
    """The score a batch's threshold applies to (higher = more anomalous, NaN for invalid IPs).

    Without a combiner it is ``-dot_product``, as models calibrated before the combiner existed
    expect. With one it is the combiner's log-odds of ``dot_product`` and the entity's training
    history (:class:`~seclake_ml.ipinsights.combiner.ScoreCombiner`), the score the threshold was
    calibrated on; the same for the local scorer and the endpoint, whose ``dot_product`` it takes.

    :param combiner: the combiner's JSON form (``None``: ``-dot_product``); validated here.
    :param history_loader: ``() -> HistoryIndex`` of the model's profile, called on first use.
    """

    def __init__(self, combiner: dict[str, Any] | None, history_loader: Callable[[], Any] | None = None) -> None:
        from seclake_ml.ipinsights.combiner import ScoreCombiner

        self.combiner = ScoreCombiner.from_dict(combiner) if combiner is not None else None
        self._loader = history_loader
        self._history: Any = None

    def _load(self) -> Any:
        if self._history is None:
            if self._loader is None:
                raise ScoringError("the model's score combiner needs the entity profile, and the model names none")
            self._history = self._loader()
            if self._history is None:
                raise ScoringError("the model's score combiner needs the entity profile, and it is unavailable")
        return self._history

    def estate_counts(self, entities: Sequence[str], ips: Sequence[str]) -> dict[int, np.ndarray] | None:
        """Other entities seen in each IP's /24 and /16 (``{24: ..., 16: ...}``) when the combined score
        weighs them; ``None`` when it does not."""
        if self.combiner is None or not self.combiner.uses_estate:
            return None
        return self._load().estate_entities(entities, ips)

    def score(self, entities: Sequence[str], ips: Sequence[str], dot_product: np.ndarray) -> np.ndarray:
        """Anomaly scores of the pairs whose ``dot_product`` is given."""
        dots = np.asarray(dot_product, dtype=np.float64)
        if self.combiner is None:
            return -dots
        history = self._load().features(entities, ips, self.combiner.features) if self.combiner.needs_history else None
        return self.combiner.decision_function(dots, history)


class LocalScorer:
    """The package's NumPy scorer over a model folder (``model.npz`` + ``model.json``)."""

    def __init__(self, model_dir: str) -> None:
        from seclake_ml.ipinsights.scorer import IPInsightsScorer

        self.model_dir = str(model_dir)
        self._scorer = IPInsightsScorer.load(model_dir)
        self.requests = 0

    def score(self, entities: Sequence[str], ips: Sequence[str]) -> Scores:
        self.requests += 1
        res = self._scorer.score(list(entities), list(ips))
        return Scores(np.asarray(res.dot_product, dtype=np.float64), np.asarray(res.known_entity, dtype=bool))


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_batches(entities: Sequence[str], ips: Sequence[str], max_payload_bytes: int,
                max_rows: int) -> list[tuple[int, int, bytes]]:
    """Split pairs into ``(start, stop, body)`` requests of at most ``max_payload_bytes`` / ``max_rows``."""
    out: list[tuple[int, int, bytes]] = []
    start, size, lines = 0, 0, []
    for i, (e, ip) in enumerate(zip(entities, ips)):
        line = f"{_csv_field(e)},{_csv_field(ip)}\n".encode()
        if len(line) > max_payload_bytes:
            raise ScoringError(f"pair {i} alone is {len(line)} bytes, over the {max_payload_bytes}-byte payload limit")
        if lines and (size + len(line) > max_payload_bytes or len(lines) >= max_rows):
            out.append((start, i, b"".join(lines)))
            start, size, lines = i, 0, []
        lines.append(line)
        size += len(line)
    if lines:
        out.append((start, start + len(lines), b"".join(lines)))
    return out


def parse_predictions(body: bytes, expected: int) -> np.ndarray:
    """``dot_product`` values of an IP Insights JSON response (``null`` -> NaN)."""
    try:
        doc = json.loads(body)
        preds = doc["predictions"]
        values = [np.nan if p.get("dot_product") is None else float(p["dot_product"]) for p in preds]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ScoringError(f"endpoint response is not IP Insights JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if len(values) != expected:
        raise ScoringError(f"endpoint returned {len(values)} predictions for {expected} pairs")
    return np.asarray(values, dtype=np.float64)


class EndpointScorer:
    """``invoke_endpoint`` on a SageMaker IP Insights endpoint, batched and retried.

    :param client: a ``sagemaker-runtime`` client (e.g. from the provider's ``AwsBaseHook``).
    :param endpoint_name: the endpoint serving the active model.
    :param max_payload_bytes: request size cap (default 5,000,000 bytes).
    :param max_rows: lines per request cap.
    :param max_attempts: attempts per request (first try included).
    :param base_delay: first backoff in seconds (doubles per attempt, with jitter, capped at ``max_delay``).
    """

    def __init__(self, client: Any, endpoint_name: str, *, max_payload_bytes: int = 5_000_000,
                 max_rows: int = 50_000, max_attempts: int = 6, base_delay: float = 0.2, max_delay: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.max_payload_bytes = int(max_payload_bytes)
        self.max_rows = int(max_rows)
        self.max_attempts = int(max_attempts)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self._sleep = sleep
        self.requests = 0
        self.retries = 0

    def score(self, entities: Sequence[str], ips: Sequence[str]) -> Scores:
        out = np.full(len(entities), np.nan, dtype=np.float64)
        for start, stop, body in csv_batches(entities, ips, self.max_payload_bytes, self.max_rows):
            out[start:stop] = parse_predictions(self._invoke(body), stop - start)
        return Scores(out, None)

    def _invoke(self, body: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.max_attempts + 1):
            try:
                self.requests += 1
                resp = self.client.invoke_endpoint(
                    EndpointName=self.endpoint_name, ContentType="text/csv", Accept="application/json", Body=body
                )
                return resp["Body"].read()
            except ClientError as exc:
                code, message, status = error_fields(exc)
                status = status or 0
                original = exc.response.get("OriginalStatusCode")  # SageMaker Runtime: the model container's status
                original = original if isinstance(original, int) else 0
                retryable = code in RETRYABLE_CODES or status == 429 or status >= 500 or original >= 500 or original == 429
                if not retryable or attempt == self.max_attempts:
                    raise ScoringError(f"invoke_endpoint {self.endpoint_name}: {code or status}: {message[:200]}") from None
                reason = code or str(status)
            except BotoCoreError as exc:  # connection errors, read timeouts
                if attempt == self.max_attempts:
                    raise ScoringError(f"invoke_endpoint {self.endpoint_name}: {type(exc).__name__}") from None
                reason = type(exc).__name__
            delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            self.retries += 1
            log.warning("invoke_endpoint %s: %s, retry %d/%d in %.2fs", self.endpoint_name, reason, attempt,
                        self.max_attempts - 1, delay)
            self._sleep(delay)
        raise ScoringError("unreachable")  # pragma: no cover
