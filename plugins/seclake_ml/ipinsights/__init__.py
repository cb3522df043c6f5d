"""IP Insights for ``(entity, IPv4)`` pairs: a local equivalent of the SageMaker built-in algorithm.

Modules (none imports Airflow; only ``model`` and ``trainer`` import torch):

``hyperparams``  SageMaker's hyperparameters with their names, defaults and ranges
``ipv4``         strict vectorised IPv4 parsing, reserved ranges
``encoding``     entity hashing and IPv4 prefix rows (shared by training and scoring)
``data``         reading pairs files (Parquet, headerless CSV) and encoding them once
``model``        the torch network
``trainer``      :class:`~seclake_ml.ipinsights.trainer.IPInsights` estimator (``fit``)
``artifact``     ``model.npz`` + ``model.json``, verified on load
``scorer``       NumPy scoring and SageMaker's inference request/response formats
``metrics``      ROC AUC and ROC curve
``history``      features of a pair from the entity's training history (nearest known IP, shares)
``combiner``     logistic combination of ``dot_product`` and history features (JSON, no pickle)
``calibration``  known-normal and injected-abnormal sets, thresholds (on ``-dot_product`` or combined)
``report``       PNG/JSON/HTML calibration report
``cli``          ``ipinsights train | score | calibrate`` commands

Sign convention: ``dot_product`` (SageMaker's score) is higher for more normal pairs; every
``anomaly_score``/``decision_function`` here is ``-dot_product`` (higher = more anomalous), and the
combiner's score is a log-odds of being abnormal (also higher = more anomalous).
"""

from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters

__all__ = ["IPInsightsHyperparameters"]
