"""The ``risk`` command group: ``train``, ``score``, ``report`` and ``labels add|import|export|list``.

Attach it to a parent parser with :func:`register` and dispatch with :func:`run`.

* ``train --root LAKE --start T --end T``: fit on the labelled events of the window (labels from the
  label store under the work location), write the report, gate and activate.
* ``score --root LAKE --start T --end T --out FILE``: one row per CloudTrail event of the window with
  ``risk_score``, ``is_outlier``, ``probable_cause`` and contributions (``.parquet``, ``.jsonl``, ``.csv``).
* ``report``: the active model, its metrics and where its report is.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="local Security Lake root (default from configuration)")
    p.add_argument("--work", help="work location: label store, model store (default from configuration)")
    p.add_argument("--start", required=True, help="inclusive start, ISO date/time (UTC)")
    p.add_argument("--end", required=True, help="exclusive end, ISO date/time (UTC)")
    p.add_argument("--source-version", type=int, choices=(1, 2), help="Security Lake source version")
    p.add_argument("--lookback-days", type=int, help="days of history per event (default extra.risk.lookback_days)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``risk`` group (sub-commands in ``args.command``) to a parent's sub-parsers."""
    group = subparsers.add_parser("risk", help="CloudTrail risk scoring: train, score, report, labels")
    sub = group.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="fit the risk models on a window's labelled events, gate and activate")
    _window_args(tr)
    tr.add_argument("--no-activate", action="store_true", help="fit and report only")
    sc = sub.add_parser("score", help="risk-score every CloudTrail event of a window")
    _window_args(sc)
    sc.add_argument("--out", required=True, help="output file: .parquet, .jsonl or .csv")
    sc.add_argument("--force", action="store_true", help="replace an existing output file")
    sc.add_argument("--unsupervised", action="store_true", help="ignore the active model: the unsupervised score")
    sc.add_argument("--top", type=int, help="riskiest events to print (default extra.risk.top_findings)")
    rp = sub.add_parser("report", help="the active risk model and its fit report")
    rp.add_argument("--work", help="work location (default from configuration)")
    from seclake_ml.risk import labels_cli

    labels_cli.register(sub)
    return group


def _config(args: argparse.Namespace) -> object:
    from seclake_ml.config import load_config

    overrides = {"lake_root": getattr(args, "root", None), "work_location": getattr(args, "work", None),
                 "source_version": getattr(args, "source_version", None)}
    cfg = load_config(overrides)
    from seclake_ml.backends import backend_of

    if overrides["source_version"] is None and backend_of(cfg).local_lake_root is not None:
        # a lake holding one source version of CloudTrail is read in that version without --source-version
        from pathlib import Path

        base = Path(cfg.lake_root).expanduser() / "aws" / "CLOUD_TRAIL_MGMT"
        present = [v for v in (1, 2) if (base / f"{v}.0").is_dir()]
        if len(present) == 1 and present[0] != cfg.source_version:
            import sys

            print(f"note: {base} holds only source version {present[0]}; reading it", file=sys.stderr)
            overrides["source_version"] = present[0]
            cfg = load_config(overrides)
    if getattr(args, "lookback_days", None) is not None:
        extra = dict(cfg.extra)
        extra["risk"] = dict(extra.get("risk") or {}, lookback_days=args.lookback_days)
        cfg = load_config({**overrides, "extra": extra})
    return cfg


def _interval(args: argparse.Namespace) -> tuple:
    from seclake_ml.interval import DataInterval

    window = DataInterval.parse(args.start, args.end)
    return window.start, window.end


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``risk`` command; input errors raise ValueError/OSError (printed by the caller)."""
    if args.command == "labels":
        from seclake_ml.risk import labels_cli

        return labels_cli.run(args)
    if args.command == "train":
        return _train(args)
    if args.command == "score":
        return _score(args)
    if args.command == "report":
        return _report(args)
    raise ValueError(f"unknown risk command {args.command!r}")


def _train(args: argparse.Namespace) -> int:
    from seclake_ml.risk import service

    cfg = _config(args)
    start, end = _interval(args)
    out = service.train(cfg, start, end, activate_if_passed=not args.no_activate)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print("\n".join(format_training(out)))
    return 0


def format_training(out: dict) -> list[str]:
    """The training summary as printed lines."""
    lines = [f"risk model    {out['version']} ({'supervised' if out['supervised'] else 'unsupervised'})",
             f"events        {out['events']:,}; labels {out['labels_used']:,} matched of {out['labels_available']:,} in the store"]
    m = out["metrics"]
    if out["supervised"]:
        lines.append(f"split         {m['train_rows']:,} train / {m['test_rows']:,} test (in time, 70/30)")
        for name, label in (("linear", "linear baseline"), ("boosted", "boosted trees ")):
            x = m[name]
            lines.append(f"{label}  R² {x['r2']:.3f}  RMSE {x['rmse']:.2f}  MAE {x['mae']:.2f}")
        if "chart" in out["report"]:
            lines.append(f"chart         {out['report']['chart']}")
    lines.append(f"report        {out['report']['html']}")
    g = out["gate"]
    lines.append(f"gate          {'passed' if g['passed'] else 'held'}: {g['reason']}")
    lines.append(f"active        {'yes, now ' + out['version'] if out['activated'] else 'unchanged'}")
    return lines


def _score(args: argparse.Namespace) -> int:
    from seclake_ml.outputs import check_output_file
    from seclake_ml.risk import service
    from seclake_ml.risk.engine import RiskModel

    cfg = _config(args)
    start, end = _interval(args)
    from seclake_ml.backends import backend_of

    check_output_file(args.out, force=args.force, lake_root=backend_of(cfg).local_lake_root, what="--out")
    model = RiskModel.unsupervised(service.settings_of(cfg)) if args.unsupervised else None
    table, summary = service.score(cfg, start, end, model=model)
    service.write_table(table, args.out)
    summary["output"] = args.out
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print("\n".join(format_scores(table, summary, top=cfg.risk.top_findings if args.top is None else args.top)))
    return 0


def format_scores(table, summary: dict, top: int = 10) -> list[str]:
    from seclake_ml.display import Escaper
    from seclake_ml.risk.batch import contributions_text

    shown = Escaper()
    missing = ", ".join(f"{k} {v}" for k, v in summary["missing_fields"].items() if v) or "none"
    lines = [f"model         {summary['model']}",
             f"events        {summary['events']:,} scored ({summary['history_events']:,} history events), "
             f"{summary['outliers']:,} categorical outliers; missing fields: {missing}"]
    if summary.get("quarantined"):
        lines.append(f"quarantined   {len(summary['quarantined'])} objects")
    if summary.get("output"):
        lines.append(f"output        {shown(summary['output'])}")
    lines.append(f"riskiest {min(top, len(table))}:")
    text = lambda v: v if isinstance(v, str) and v else "-"  # noqa: E731 - a missing value is NaN/None, not ""
    for row in table.head(top).itertuples(index=False):
        cause = row.probable_cause or contributions_text(row.contributions)
        lines.append(f"  {row.risk_score:5.1f}  {shown(str(row.time)[:19])}  {shown(text(row.principal), 90)}  "
                     f"{shown(text(row.operation))} from {shown(text(row.source_ip))} [{shown(row.result)}]")
        lines.append(f"         why: {shown(cause, 300)}")
    return lines


def _report(args: argparse.Namespace) -> int:
    from seclake_ml.risk import service
    from seclake_ml.risk.store import describe, read_active

    cfg = _config(args)
    root = service.model_store(cfg, aws_conn_id=None)
    active = read_active(root)
    if not active:
        print(f"no active risk model under {describe(root)}: events are scored by the unsupervised combination")
        return 1
    folder = f"{describe(root)}/versions/{active['version']}"
    print(f"active        {active['version']} (activated {active['activated_at']}: {active['reason']})")
    for name, m in (active.get("metrics") or {}).items():
        if isinstance(m, dict) and "r2" in m:
            print(f"{name:13s} R² {m['r2']:.3f}  RMSE {m['rmse']:.2f}  MAE {m['mae']:.2f}  (test rows {m['rows']:,})")
    print(f"report        {folder}/report/report.html")
    return 0
