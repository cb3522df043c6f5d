"""The backends, chosen in one place: :func:`backend_of` turns ``cfg.backend`` into an object.

``local`` (:mod:`seclake_ml.backends.local`) is the embedded default: a Security Lake-shaped folder
queried with DuckDB, the package's own IP Insights engine and a local model store. ``aws``
(:mod:`seclake_ml.backends.aws`) is Athena over the Glue tables, SageMaker training, Batch Transform
and endpoints, and an SSM registry. Each backend object answers what the steps ask: extract pairs,
read CloudTrail events, prepare the training data, train, calibrate, score stored sets with the active
model, read the active record and activate a candidate. Steps that wait for AWS return a
:class:`~seclake_ml.handoff.Wait`, which the operator turns into a deferral.

Adding a backend is one new module here, named after the backend, with a class ``Backend`` that
implements :class:`Backend`; its name goes into the configuration's list of backends.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from seclake_ml.config import BACKENDS as NAMES
from seclake_ml.config import SeclakeConfig

if TYPE_CHECKING:
    from seclake_ml.handoff import Activation, Calibration, PreparedData, TrainedModel, Wait
    from seclake_ml.interval import DataInterval


class Backend(Protocol):
    """What every backend provides. ``aws_conn_id`` is the Airflow connection of AWS hooks (ignored locally)."""

    name: str
    cfg: SeclakeConfig
    aws_conn_id: str | None
    scores_in_process: bool  # the IP Insights model runs in this process (not behind an endpoint)

    @property
    def local_lake_root(self) -> str | None:
        """The lake folder local outputs must stay out of (``None`` when the lake is not local)."""

    def lake_label(self) -> str:
        """The lake, named for a log line."""

    def extract_pairs(self, source: str, view: str, start: datetime, end: datetime, out: str) -> Any:
        """Extract one source view's ``(entity, ip)`` pairs of ``[start, end)`` to ``out``."""

    def scoring_site(self) -> Any:
        """Where scoring reads the active model and the lake objects and writes findings."""

    def read_events(self, start: datetime, end: datetime, keys: list[str] | None) -> Any:
        """CloudTrail events of ``[start, end)`` for the risk engine; with ``keys``, only those objects."""

    def prepare(self, window: DataInterval, inputs: Sequence[str], train_fraction: float) -> PreparedData:
        """Combine the extracted pairs and split them in time into training and held-out sets."""

    def train(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
              seed: int, deferrable: bool) -> TrainedModel | Wait:
        """Train a candidate on the training set; a :class:`Wait` when it runs elsewhere."""

    def train_complete(self, window: DataInterval, data: PreparedData, hyperparameters: Mapping[str, Any],
                       event: Any) -> TrainedModel:
        """The trained candidate, once the wait of :meth:`train` has ended with ``event``."""

    def calibrate(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                  seed: int, deferrable: bool = False) -> Calibration | Wait:
        """Build the calibration sets, score them with the candidate, choose the threshold, write the
        report; a :class:`Wait` while the sets are scored elsewhere."""

    def calibrate_complete(self, model: TrainedModel, data: PreparedData, mode: str, target_fpr: float,
                           seed: int, event: Any) -> Calibration:
        """The calibration, once the wait of :meth:`calibrate` has ended with ``event``."""

    def active(self) -> dict[str, Any] | None:
        """The active model record, or ``None`` when no model is active."""

    def active_auc(self, active: Mapping[str, Any], calibration: Calibration) -> float | None:
        """The active model's AUC on the candidate's calibration sets (``None``: it cannot be scored)."""

    def activate(self, model: TrainedModel, calibration: Calibration, deferrable: bool) -> Activation | Wait:
        """Make the candidate active with its threshold; a :class:`Wait` while an endpoint rolls out."""

    def activate_complete(self, model: TrainedModel, calibration: Calibration, event: Any,
                          started: Mapping[str, Any] | None = None) -> Activation:
        """The activation, once the wait of :meth:`activate` (which began with ``started``) has ended with ``event``."""


def backend_of(cfg: SeclakeConfig, aws_conn_id: str | None = "aws_default") -> Backend:
    """The backend object of a validated configuration (its module is imported on first use)."""
    if cfg.backend not in NAMES:
        raise ValueError(f"backend: got {cfg.backend!r}; allowed: {' | '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{cfg.backend}")
    return module.Backend(cfg, aws_conn_id)


def local_lake_root_of_config() -> str | None:
    """The local lake root of the loaded configuration (``None`` on a backend without one)."""
    from seclake_ml.config import load_config

    return backend_of(load_config()).local_lake_root


def read_events(cfg: SeclakeConfig, start: datetime, end: datetime, *, keys: list[str] | None = None,
                aws_conn_id: str | None = "aws_default") -> Any:
    """CloudTrail events of ``[start, end)`` for the risk engine (:mod:`seclake_ml.risk.events`), from
    the configured backend's lake; with ``keys``, only those lake objects."""
    return backend_of(cfg, aws_conn_id).read_events(start, end, keys)
