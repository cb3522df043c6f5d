"""CloudTrail risk benchmark: features + apply over ≥ 1M events, fit time, peak memory, linear vs boosted.

A synthetic event table (no lake, so the figures are the engine's own; reading a lake is measured by
``bench/extract.py``): ``--principals`` principals in ``--accounts`` accounts, each with its own usual
operations (a Zipf draw from a pool of ``--ops`` operations over ``--services`` services), one or two
home /24 networks (16 addresses each: egress NATs, instances) and a client type; ``--history-days`` days of history and one scored day of
``--events`` events. The scored day holds the same behaviour plus 0.2 % events with a new operation,
network or client, so the outlier code paths run.

Printed side by side, all measured in this run:

* features + unsupervised apply (``build_features`` + ``RiskModel.apply``): seconds and events/s;
* the same with the boosted model (supervised apply, SHAP contributions included);
* linear baseline predict alone and boosted predict alone (events/s, and their ratio);
* fit time of both models on ``--labelled`` labelled events (synthetic labels from the features);
* peak RSS of the process (``ru_maxrss``).

Usage: ``PYTHONPATH=plugins python bench/risk.py [--events 1000000] [--history-days 14]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def synth(rng: np.random.Generator, n_hist_per_day: int, n_day: int, days: int, principals: int, accounts: int,
          n_ops: int, n_services: int, start_ms: int) -> "object":
    import pandas as pd

    services = np.array([f"svc{i}.amazonaws.com" for i in range(n_services)], dtype=object)
    op_service = rng.integers(0, n_services, n_ops)
    op_names = np.array([f"Operation{i}" for i in range(n_ops)], dtype=object)
    uas = np.array(["aws-cli/2.15 os/linux", "Boto3/1.34 md/Botocore#1.34", "aws-sdk-go/1.50",
                    "console.ec2.amazonaws.com", "APN/1.0 HashiCorp/1.0 Terraform/1.7.5", "aws-sdk-java/2.25"], dtype=object)
    p_acct = rng.integers(0, accounts, principals)
    p_ua = rng.integers(0, len(uas), principals)
    p_net = rng.integers(0, 2**24, (principals, 2))
    p_ops = np.stack([rng.permutation(n_ops)[:12] for _ in range(principals)])
    zipf = 1.0 / np.arange(1, 13)
    zipf /= zipf.sum()

    def block(n: int, t0: int, t1: int) -> "pd.DataFrame":
        p = rng.integers(0, principals, n)
        opi = p_ops[p, rng.choice(12, n, p=zipf)]
        net = p_net[p, rng.integers(0, 2, n)]
        host = rng.integers(1, 17, n)  # egress NATs and instances: a few addresses per network
        ip = [f"{(x >> 16) % 223 + 1}.{(x >> 8) & 255}.{x & 255}.{h}" for x, h in zip(net, host)]
        err = np.where(rng.random(n) < 0.02, "AccessDenied", None)
        return pd.DataFrame({
            "uid": [f"e{t0}-{i}" for i in range(n)],
            "time": pd.to_datetime(np.sort(rng.integers(t0, t1, n)), unit="ms", utc=True),
            "kind": "api", "account": [f"{100000000000 + a}" for a in p_acct[p]], "region": "us-east-1",
            "principal": [f"arn:aws:iam::{100000000000 + p_acct[q]}:user/u{q}" for q in p],
            "principal_type": "IAMUser", "source_ip": ip, "user_agent": uas[p_ua[p]],
            "service": services[op_service[opi]], "operation": op_names[opi], "error_code": err,
            "status": np.where(err == None, "Success", "Failure"), "mfa": None,  # noqa: E711
        })

    day = 86_400_000
    frames = [block(n_hist_per_day, start_ms - (d + 1) * day, start_ms - d * day) for d in range(days)]
    scored = block(n_day, start_ms, start_ms + day)
    odd = rng.random(n_day) < 0.002
    scored.loc[odd, "operation"] = "CreateAccessKey"
    scored.loc[odd, "service"] = "iam.amazonaws.com"
    return pd.concat(frames[::-1] + [scored], ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events of the scored day")
    ap.add_argument("--history-per-day", type=int, default=100_000)
    ap.add_argument("--history-days", type=int, default=14)
    ap.add_argument("--principals", type=int, default=20_000)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--ops", type=int, default=400)
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--labelled", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from seclake_ml.risk.engine import RiskModel, RiskSettings, add_unsupervised
    from seclake_ml.risk.features import build_features
    from seclake_ml.risk.models import BoostedModel, LinearBaseline

    rng = np.random.default_rng(args.seed)
    start_ms = 1_704_067_200_000  # 2024-01-01
    t = time.perf_counter()
    events = synth(rng, args.history_per_day, args.events, args.history_days, args.principals, args.accounts,
                   args.ops, args.services, start_ms)
    print(f"synthetic table: {len(events):,} events ({args.events:,} scored, {len(events) - args.events:,} history) "
          f"built in {time.perf_counter() - t:.1f}s")
    settings = RiskSettings(lookback_days=args.history_days)

    t = time.perf_counter()
    ff = build_features(events, start_ms, lookback_days=args.history_days)
    t_feat = time.perf_counter() - t
    frame = ff.frame
    t = time.perf_counter()
    out_unsup = RiskModel.unsupervised(settings).apply(frame.copy())
    t_apply = time.perf_counter() - t
    n = len(frame)
    print(f"features            {t_feat:6.2f}s  {n / t_feat:>10,.0f} events/s")
    print(f"unsupervised apply  {t_apply:6.2f}s  {n / t_apply:>10,.0f} events/s")
    print(f"features + apply    {t_feat + t_apply:6.2f}s  {n / (t_feat + t_apply):>10,.0f} events/s "
          f"(outliers {int(out_unsup['is_outlier'].sum()):,})")

    # labels: a noisy function of the features, for fit timing and a supervised apply
    add_unsupervised(frame, args.history_days)
    idx = rng.choice(n, min(args.labelled, n), replace=False)
    lab = frame.iloc[np.sort(idx)].reset_index(drop=True)
    y = np.clip(lab["unsupervised"].to_numpy() * 0.8 + 15 * lab["sensitive"].to_numpy() + rng.normal(0, 8, len(lab)), 0, 100)
    t = time.perf_counter()
    lin = LinearBaseline().fit(lab, y)
    t_fit_lin = time.perf_counter() - t
    t = time.perf_counter()
    gbm = BoostedModel().fit(lab, y)
    t_fit_gbm = time.perf_counter() - t
    print(f"fit on {len(lab):,} labelled: linear {t_fit_lin:.2f}s, boosted {t_fit_gbm:.2f}s "
          f"({gbm.params['num_leaves']} leaves, {gbm.params['num_boost_round']} trees); ratio {t_fit_gbm / t_fit_lin:.1f}x")
    t = time.perf_counter()
    lin.predict(frame)
    t_lin = time.perf_counter() - t
    t = time.perf_counter()
    gbm.predict(frame)
    t_gbm = time.perf_counter() - t
    print(f"predict alone       linear {n / t_lin:>10,.0f} events/s   boosted {n / t_gbm:>10,.0f} events/s   "
          f"ratio {t_gbm / t_lin:.1f}x the linear time")
    model = RiskModel(version="bench", settings=settings, linear=lin, boosted=gbm, manifest={"supervised": True})
    t = time.perf_counter()
    model.apply(frame.copy())
    t_sup = time.perf_counter() - t
    print(f"supervised apply    {t_sup:6.2f}s  {n / t_sup:>10,.0f} events/s (with SHAP contributions)")
    print(f"features + supervised apply {n / (t_feat + t_sup):,.0f} events/s; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
