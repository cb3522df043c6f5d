"""Where do injected attack sequences rank among a day's CloudTrail events? (risk detector quality)

Copies a sample lake (generated with the package generator when ``--lake`` is absent), injects the
attack scenarios of ``seclake_lakegen.gen_attacks`` into one day (half of them from an address the
victim already uses), scores that day with the risk engine (the unsupervised score, and the active
supervised model of ``--work`` when there is one, alone and floored by the unsupervised score), and prints per scenario how many of its events
rank in the top 1 % (and top 5 %) of the day's events, with the median rank percentile. An attack
event's rank is the share of the day's normal events that score at least as high (ties count
against it), so the injected events never crowd each other out of the top 1 %.

Usage: ``PYTHONPATH=plugins python bench/risk_attacks.py --lake var/lake --day 2024-01-08 [--work var/work]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="var/lake", help="sample lake to copy (not modified)")
    ap.add_argument("--day", default="2024-01-08", help="UTC day to inject into and score")
    ap.add_argument("--work", help="work location with an active risk model (optional)")
    ap.add_argument("--seeds", default="1,2,3", help="injection seeds, one scored day each")
    ap.add_argument("--known-ip-share", type=float, default=0.5)
    args = ap.parse_args()

    import pandas as pd
    import pyarrow.parquet as pq

    from seclake_lakegen.gen_attacks import inject_attacks
    from seclake_ml.config import load_config
    from seclake_ml.risk import service
    from seclake_ml.risk.engine import RiskModel

    day = datetime.fromisoformat(args.day).replace(tzinfo=timezone.utc)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix="risk-attacks-") as tmp:
            lake = Path(tmp) / "lake"
            shutil.copytree(args.lake, lake, ignore=shutil.ignore_patterns("ext", "batches"))
            inject_attacks(lake, day.date(), seed, from_known_ip_share=args.known_ip_share)
            truth = pq.read_table(lake / "ground_truth" / "attacks" / f"{day:%Y%m%d}.parquet").to_pandas()
            cfg = load_config({"lake_root": str(lake), "work_location": args.work or str(Path(tmp) / "work")})
            models = {"unsupervised": RiskModel.unsupervised(service.settings_of(cfg))}
            if args.work:
                active = service.active_model(cfg)
                if active.supervised:
                    import dataclasses

                    alone = dataclasses.replace(active, settings=dataclasses.replace(active.settings, combination="supervised"))
                    floor = dataclasses.replace(active, settings=dataclasses.replace(active.settings, combination="floor"))
                    models[f"supervised alone {active.version}"] = alone
                    models[f"supervised, unsupervised floor {active.version}"] = floor
            for name, model in models.items():
                table, summary = service.score(cfg, day, day + timedelta(days=1), model=model)
                n = len(table)
                # rank against the day's normal events only: other attack events never push one down
                is_attack = table["uid"].isin(set(truth["uid"])).to_numpy()
                normal = np.sort(table["risk_score"].to_numpy()[~is_attack])
                above = len(normal) - np.searchsorted(normal, table["risk_score"].to_numpy(), side="left")
                pct = pd.Series(above / max(len(normal), 1), index=table["uid"].to_numpy())
                t = truth.assign(pct=truth["uid"].map(pct))
                for scen, g in t.groupby("scenario"):
                    rows.append({"seed": seed, "model": name, "scenario": scen, "known_ip": bool(g["from_known_ip"].iloc[0]),
                                 "events": len(g), "top1": float((g["pct"] <= 0.01).mean()),
                                 "top5": float((g["pct"] <= 0.05).mean()), "median_pct": float(g["pct"].median()),
                                 "any_top1": bool((g["pct"] <= 0.01).any()), "day_events": n})
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    for name, g in df.groupby("model"):
        print(f"\n== {name}: {g['day_events'].iloc[0]:,}+ events per scored day, seeds {args.seeds}")
        by = g.groupby(["scenario", "known_ip"]).agg(events=("events", "sum"), top1=("top1", "mean"), top5=("top5", "mean"),
                                                      median_pct=("median_pct", "median")).reset_index()
        print(by.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        w = (g["top1"] * g["events"]).sum() / g["events"].sum()
        print(f"attack events in the top 1 %: {w:.1%} (known-IP scenarios {((g.top1 * g.events)[g.known_ip].sum() / g.events[g.known_ip].sum()):.1%}); "
              f"scenarios with at least one event in the top 1 %: {g['any_top1'].mean():.1%}")


if __name__ == "__main__":
    main()
