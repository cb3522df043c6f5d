"""Supervised risk models: the analysts' linear baseline and a gradient-boosted regressor.

Both learn the analysts' risk score (0-100) of labelled events and are evaluated on a split in time:
the first 70 % of the labelled events (by event time) train, the last 30 % test; R², RMSE and MAE are
reported for both, with residuals by feature group.

* :class:`LinearBaseline` is the model analysts build first: ordinary least squares with an intercept
  over one-hot encoded event fields (event kind, principal type, service, the most frequent
  operations, client type, country, error or not, MFA, 3-hour bucket, weekend). It knows nothing of
  the principal's history. Stored as JSON (vocabularies, coefficients).
* :class:`BoostedModel` is LightGBM over the history features (:mod:`seclake_ml.risk.features`),
  the categorical-outlier flags and the unsupervised score, with monotone constraints where more
  novelty can only mean more risk. The number of trees is chosen by early stopping on the last part
  of the training split (in time), leaves from a small grid, both on validation RMSE. Stored in
  LightGBM's own text format (no pickle); per-event contributions are its SHAP values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRAIN_FRACTION = 0.7
# Features of the boosted model and whether more of it can only raise risk (monotone +1).
BOOSTED_FEATURES: dict[str, int] = {
    "unsupervised": 1, "sensitive": 1, "new_principal": 1, "new_op": 1, "new_service": 1, "new_net": 1,
    "new_asn": 1, "new_country": 1, "new_ua_family": 1, "new_ua": 1, "new_error": 1, "new_hour": 1,
    "rarity_op": 1, "rarity_service": 1, "rarity_net": 1, "rarity_ua_family": 1, "rarity_hour": 1,
    "acct_rarity_op": 1, "acct_rarity_net": 1, "acct_rarity_country": 1, "acct_rarity_ua_family": 1,
    "fails_1h": 1, "denied_1h": 1, "new_ops_1h": 1, "rate_ratio_1h": 1, "signin": 0, "signin_failed": 1,
    "signin_no_mfa": 1, "root": 1, "failed": 0, "hour_of_day": 0, "weekend": 0, "ipinsights": 1,
    "pentest_client": 1, "verb": 0, "category": 0,
}  # fmt: skip
CATEGORICAL = ("category",)  # LightGBM categorical features (codes, not magnitudes)
# Raw fields of the linear baseline: (column, top-k values kept, the rest become "other")
LINEAR_FIELDS = (("kind", 4), ("principal_type", 8), ("service_v", 30), ("op", 40), ("ua_family", 20),
                 ("country", 15), ("error_any", 2), ("mfa_v", 3), ("hour", 8), ("weekend_v", 2))
RESIDUAL_GROUPS = ("kind", "ua_family", "sensitive_any", "new_op", "principal_type")


def linear_inputs(frame: Any) -> Any:
    """The raw categorical columns the linear baseline one-hot encodes."""
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for col in ("kind", "principal_type", "service_v", "op", "ua_family", "country", "hour"):
        out[col] = frame[col].fillna("none").astype(str)
    out["error_any"] = np.where(frame["error"].to_numpy() != "none", "error", "ok")
    out["mfa_v"] = frame["mfa"].map({True: "yes", False: "no"}).fillna("none").astype(str)
    out["weekend_v"] = frame["weekend"].astype(str)
    return out


def boosted_inputs(frame: Any) -> np.ndarray:
    cols = []
    for name in BOOSTED_FEATURES:
        if name == "pentest_client":
            cols.append((frame["ua_family"].to_numpy() == "pentest-os").astype(float))
        else:
            cols.append(frame[name].to_numpy(dtype=float))
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


@dataclass
class LinearBaseline:
    vocab: dict[str, list[str]] = field(default_factory=dict)
    intercept: float = 0.0
    coef: list[float] = field(default_factory=list)

    def _design(self, frame: Any) -> np.ndarray:
        raw = linear_inputs(frame)
        blocks = []
        for col, _ in LINEAR_FIELDS:
            values = raw[col].to_numpy()
            vocab = self.vocab[col]
            index = {v: i for i, v in enumerate(vocab)}
            other = index["other"]
            idx = np.array([index.get(v, other) for v in values], dtype=np.int64)
            block = np.zeros((len(values), len(vocab)))
            block[np.arange(len(values)), idx] = 1.0
            blocks.append(block[:, 1:])  # the first level is the reference (dropped: no collinearity)
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

    def fit(self, frame: Any, y: np.ndarray) -> "LinearBaseline":
        from sklearn.linear_model import LinearRegression

        raw = linear_inputs(frame)
        self.vocab = {}
        for col, k in LINEAR_FIELDS:
            top = raw[col].value_counts().index[:k].tolist()
            self.vocab[col] = ["other"] + [v for v in top if v != "other"]
        X = self._design(frame)
        reg = LinearRegression(fit_intercept=True).fit(X, y)
        self.intercept = float(reg.intercept_)
        self.coef = [float(c) for c in reg.coef_]
        return self

    def predict(self, frame: Any) -> np.ndarray:
        X = self._design(frame)
        return np.clip(self.intercept + X @ np.asarray(self.coef), 0.0, 100.0)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "linear_onehot_ols", "fields": [c for c, _ in LINEAR_FIELDS], "vocab": self.vocab,
                "intercept": self.intercept, "coef": self.coef}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "LinearBaseline":
        if doc.get("kind") != "linear_onehot_ols":
            raise ValueError("linear model: unknown kind")
        vocab = doc["vocab"]
        width = sum(len(vocab[c]) - 1 for c, _ in LINEAR_FIELDS)
        if len(doc["coef"]) != width:
            raise ValueError(f"linear model: {len(doc['coef'])} coefficients for {width} one-hot columns")
        return cls(vocab=vocab, intercept=float(doc["intercept"]), coef=[float(c) for c in doc["coef"]])


@dataclass
class BoostedModel:
    booster: Any = None
    params: dict[str, Any] = field(default_factory=dict)

    def fit(self, frame: Any, y: np.ndarray, *, seed: int = 7) -> "BoostedModel":
        import lightgbm as lgb

        X = boosted_inputs(frame)
        n = len(y)
        n_val = max(int(n * 0.2), 1) if n >= 10 else 0
        Xt, yt, Xv, yv = X[: n - n_val], y[: n - n_val], X[n - n_val:], y[n - n_val:]
        best = None
        for leaves in (7, 15, 31):
            params = {
                "objective": "regression", "learning_rate": 0.05, "num_leaves": leaves, "min_data_in_leaf": 20,
                "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
                "monotone_constraints": list(BOOSTED_FEATURES.values()), "monotone_constraints_method": "advanced",
                "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1,
            }  # fmt: skip
            dtrain = lgb.Dataset(Xt, yt, feature_name=list(BOOSTED_FEATURES), categorical_feature=list(CATEGORICAL),
                                 free_raw_data=False)
            if n_val:
                dval = lgb.Dataset(Xv, yv, reference=dtrain)
                booster = lgb.train(params, dtrain, num_boost_round=600, valid_sets=[dval],
                                    callbacks=[lgb.early_stopping(30, verbose=False)])
                rmse = float(np.sqrt(np.mean((booster.predict(Xv, num_iteration=booster.best_iteration) - yv) ** 2)))
                rounds = booster.best_iteration or 600
            else:
                rmse, rounds = 0.0, 100
            if best is None or rmse < best[0]:
                best = (rmse, leaves, rounds, params)
        _, leaves, rounds, params = best
        self.booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(BOOSTED_FEATURES),
                                                     categorical_feature=list(CATEGORICAL)), num_boost_round=rounds)
        self.params = {"num_leaves": leaves, "num_boost_round": rounds, "learning_rate": 0.05,
                       "validation_rmse": round(best[0], 4), "validation_rows": n_val}
        return self

    def predict(self, frame: Any) -> np.ndarray:
        return np.clip(self.booster.predict(boosted_inputs(frame)), 0.0, 100.0)

    def contributions(self, frame: Any) -> np.ndarray:
        """SHAP values per feature (last column: the expected value)."""
        return self.booster.predict(boosted_inputs(frame), pred_contrib=True)

    def to_text(self) -> str:
        return self.booster.model_to_string()

    @classmethod
    def from_text(cls, text: str, params: dict[str, Any]) -> "BoostedModel":
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=text)
        except Exception as exc:  # LightGBM raises its own error type for a damaged model
            raise ValueError(f"boosted model: not a LightGBM text model ({str(exc)[:200]})") from None
        if booster.feature_name() != list(BOOSTED_FEATURES):
            raise ValueError("boosted model: its features are not this version's features")
        return cls(booster=booster, params=params)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², RMSE and MAE (R² is NaN-free: 0 when the target has no variance)."""
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if len(y) == 0:
        return {"r2": float("nan"), "rmse": float("nan"), "mae": float("nan"), "rows": 0}
    resid = y - pred
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "r2": round(1.0 - ss_res / ss_tot, 4) if ss_tot > 0 else 0.0,
        "rmse": round(math.sqrt(ss_res / len(y)), 4),
        "mae": round(float(np.mean(np.abs(resid))), 4),
        "rows": int(len(y)),
    }


def time_split(frame: Any, fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the train and test parts: the first ``fraction`` by event time trains."""
    order = np.argsort(frame["_ms"].to_numpy(), kind="stable")
    cut = int(round(len(order) * fraction))
    return order[:cut], order[cut:]


def residuals_by_group(frame: Any, y: np.ndarray, preds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Mean residual and RMSE per value of each feature group, for each model."""
    import pandas as pd

    groups = pd.DataFrame({
        "kind": frame["kind"].fillna("none").to_numpy(),
        "ua_family": frame["ua_family"].to_numpy(),
        "sensitive_any": np.where(frame["sensitive"].to_numpy() > 0, "sensitive", "not sensitive"),
        "new_op": np.where(frame["new_op"].to_numpy() > 0, "new operation", "known operation"),
        "principal_type": frame["principal_type"].fillna("none").to_numpy(),
    })
    rows = []
    for g in RESIDUAL_GROUPS:
        for value, idx in groups.groupby(g).indices.items():
            entry = {"group": g, "value": str(value), "rows": int(len(idx))}
            for name, p in preds.items():
                r = y[idx] - p[idx]
                entry[f"{name}_mean_residual"] = round(float(np.mean(r)), 3)
                entry[f"{name}_rmse"] = round(float(np.sqrt(np.mean(r**2))), 3)
            rows.append(entry)
    return rows


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
