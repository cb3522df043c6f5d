"""Command line: ``python -m seclake_ml <group> <command> …``.

Groups: ``lake generate`` (sample Security Lake), ``pairs extract`` (pairs for a data interval),
``ipinsights train|score|calibration-sets|calibrate`` (the local IP Insights engine),
``lake drop-batch`` (a new day landing in the sample lake), ``scoring adopt|show`` (local scoring).
Errors in the input are reported on one line with exit status 2; no traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence


def _add_pairs(sub: argparse._SubParsersAction) -> None:
    pairs = sub.add_parser("pairs", help="(entity, ip) pair extraction")
    psub = pairs.add_subparsers(dest="command", required=True)
    ex = psub.add_parser("extract", help="extract pairs of one source/view for a data interval")
    ex.add_argument("--root", help="local Security Lake root (local backend)")
    ex.add_argument("--source", required=True, help="vpc_flow | route53 | cloudtrail_signin | cloudtrail_api")
    ex.add_argument("--view", help="pair view of the source (default: the source's first view)")
    ex.add_argument("--start", required=True, help="inclusive start, ISO date/time (UTC)")
    ex.add_argument("--end", required=True, help="exclusive end, ISO date/time (UTC)")
    ex.add_argument("--out", required=True, help="output Parquet file (local) or s3://bucket/prefix/ (aws); "
                    "never inside the lake root")
    ex.add_argument("--force", action="store_true", help="replace an existing output file")
    ex.add_argument("--source-version", type=int, choices=(1, 2), help="Security Lake source version")
    ex.add_argument("--backend", choices=("local", "aws"), help="query backend (default from configuration)")
    ex.add_argument("--accounts", help="comma-separated account ids to keep")
    ex.add_argument("--regions", help="comma-separated regions to keep")
    ex.add_argument("--dedupe", action="store_true", help="keep the first occurrence of each (entity, ip)")
    ex.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_lake(sub: argparse._SubParsersAction) -> None:
    lake = sub.add_parser("lake", help="local Security Lake tools")
    lsub = lake.add_subparsers(dest="command", required=True)
    gen = lsub.add_parser("generate", help="generate a sample Security Lake tree with injected anomalies")
    try:
        from seclake_lakegen.generate import add_generate_arguments
    except ModuleNotFoundError as exc:
        if exc.name != "seclake_lakegen":
            raise
        # Without the generator any arguments are accepted here; the command then fails on one line.
        gen.parse_known_args = lambda args=None, namespace=None: (namespace or argparse.Namespace(), [])
    else:
        add_generate_arguments(gen)
    drop = lsub.add_parser("drop-batch", help="add one new generated day to a sample lake (a new log batch)")
    drop.add_argument("--root", required=True, help="the sample lake")
    drop.add_argument("--day", required=True, help="UTC day to add, YYYY-MM-DD, or 'next' (the day after the newest)")
    drop.add_argument("--seed", type=int, default=42, help="the lake's seed (same world)")
    drop.add_argument("--source-version", type=int, choices=(1, 2), default=1)
    drop.add_argument("--flows-per-day", type=int)
    drop.add_argument("--dns-per-day", type=int)
    drop.add_argument("--api-calls-per-day", type=int)
    drop.add_argument("--anomalies-per-kind", type=int)
    _add_inject_attacks(lsub)


def _add_inject_attacks(lsub: argparse._SubParsersAction) -> None:
    inj = lsub.add_parser("inject-attacks", help="write attack CloudTrail sequences into one day of a sample lake "
                          "(ground truth under ground_truth/attacks/)")
    inj.add_argument("--root", required=True, help="the sample lake")
    inj.add_argument("--day", required=True, help="UTC day already in the lake, YYYY-MM-DD")
    inj.add_argument("--seed", type=int, default=42, help="random seed (victims, times, addresses)")
    inj.add_argument("--scenarios", help="comma-separated scenario names (default all)")
    inj.add_argument("--known-ip-share", type=float, default=0.5,
                     help="share of scenarios run from an address the victim used before (default 0.5)")
    inj.add_argument("--source-version", type=int, choices=(1, 2), help="default: the version holding the day")


def _add_scoring(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser("scoring", help="scoring of new log batches (local backend)")
    ssub = sc.add_subparsers(dest="command", required=True)
    ssub.add_parser("adopt", help="record the objects now in the local lake as history (not scored)")
    show = ssub.add_parser("show", help="print the latest scored batch and its strongest findings")
    show.add_argument("--top", type=int, default=10, help="findings to print (default 10)")
    show.add_argument("--truth", help="ground-truth anomalies.parquet of the sample lake, to count hits")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seclake_ml", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="group", required=True)
    _add_lake(sub)
    _add_pairs(sub)
    _add_scoring(sub)
    from seclake_ml.ipinsights.cli import register
    from seclake_ml.risk.cli import register as register_risk

    register(sub)
    register_risk(sub)
    return parser


def _pairs_extract(args: argparse.Namespace) -> int:
    from seclake_ml.config import load_config
    from seclake_ml.display import Escaper
    from seclake_ml.extraction import extract_pairs
    from seclake_ml.sources import get_source

    spec = get_source(args.source)
    view = args.view or spec.default_view.name
    overrides = {
        "backend": args.backend,
        "lake_root": args.root,
        "source_version": args.source_version,
        "accounts": args.accounts,
        "regions": args.regions,
        "sources": [f"{spec.name}:{view}"],
    }
    if args.dedupe:
        overrides["dedupe"] = True
    cfg = load_config(overrides)
    shown = Escaper()
    if not args.out.startswith("s3://"):
        from seclake_ml.backends import backend_of
        from seclake_ml.outputs import check_output_file

        lake_root = backend_of(cfg).local_lake_root
        check_output_file(args.out, force=args.force, lake_root=lake_root, what="--out")
        check_output_file(args.out + ".quarantine.json", force=True, lake_root=lake_root, what="--out")
    res = extract_pairs(cfg, spec.name, view, args.start, args.end, args.out)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    print(f"source        {res.source} (view {res.view}, source version {res.source_version}, {res.backend})")
    print(f"interval      [{res.start} .. {res.end})")
    print(f"files         {res.files_scanned} read, {len(res.quarantined)} quarantined")
    print(f"rows read     {res.rows_read}")
    print(f"pairs written {res.pairs_written}" + (f" ({res.duplicates_removed} duplicates removed)" if res.duplicates_removed else ""))
    print("dropped       " + ", ".join(f"{k} {v}" for k, v in res.dropped.items()))
    for q in res.quarantined:
        print(f"quarantined   {shown(q['path'])}: {shown(q['reason'])}")
    if shown.escaped:
        print(f"escaped       {shown.escaped} control or bidi characters in the lines above")
    if res.missing_columns:
        print(f"absent cols   {', '.join(res.missing_columns)} (read as NULL)")
    print(f"output        {shown(res.output)}")
    print(f"seconds       {res.seconds:.2f}")
    return 0


def _lakegen():
    """The sample-lake generator module; a one-line ValueError where the development package is absent."""
    try:
        from seclake_lakegen import generate
    except ModuleNotFoundError as exc:
        if exc.name != "seclake_lakegen":
            raise
        raise ValueError("the sample-lake generator (package seclake_lakegen, a development tool) is not "
                         "installed here: run this from a development checkout with plugins/ on PYTHONPATH") from None
    return generate


def _lake_generate(args: argparse.Namespace) -> int:
    run_generate = _lakegen().run_generate

    summary = run_generate(args)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _lake_drop_batch(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    gen = _lakegen()
    drop_batch, newest_day = gen.drop_batch, gen.newest_day
    scale = {k: getattr(args, k) for k in ("flows_per_day", "dns_per_day", "api_calls_per_day", "anomalies_per_kind")
             if getattr(args, k) is not None}
    day = newest_day(args.root) + timedelta(days=1) if args.day == "next" else date.fromisoformat(args.day)
    summary = drop_batch(args.root, day, args.seed, args.source_version, **scale)
    print(json.dumps({k: v for k, v in summary.items() if k != "objects"} | {"objects": len(summary["objects"])},
                     indent=2, default=str))
    return 0


def _lake_inject_attacks(args: argparse.Namespace) -> int:
    from datetime import date

    _lakegen()  # one-line error where the development package is absent
    from seclake_lakegen.gen_attacks import inject_attacks

    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        raise ValueError(f"--day: got {args.day!r}; allowed: YYYY-MM-DD") from None
    summary = inject_attacks(args.root, day, args.seed, scenarios=args.scenarios,
                             from_known_ip_share=args.known_ip_share, source_version=args.source_version)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _scoring_adopt(args: argparse.Namespace) -> int:
    from seclake_ml.config import load_config
    from seclake_ml.scoring.report import adopt_existing

    cfg = load_config()
    n = adopt_existing(cfg)
    print(f"recorded {n} objects under {cfg.lake_root} as history; new objects are scored from now on")
    return 0


def _scoring_show(args: argparse.Namespace) -> int:
    from seclake_ml.config import load_config
    from seclake_ml.scoring.report import format_batch, latest_batch
    from seclake_ml.locations import work_root

    cfg = load_config()
    batch = latest_batch(work_root(cfg))
    if batch is None:
        print(f"no scored batch under {work_root(cfg)}/scoring/batches")
        return 1
    print("\n".join(format_batch(batch, top=args.top, truth=args.truth)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {("pairs", "extract"): _pairs_extract, ("lake", "generate"): _lake_generate,
                ("lake", "drop-batch"): _lake_drop_batch, ("lake", "inject-attacks"): _lake_inject_attacks,
                ("scoring", "adopt"): _scoring_adopt,
                ("scoring", "show"): _scoring_show}
    try:
        if args.group == "ipinsights":
            from seclake_ml.ipinsights.cli import run

            return run(args)
        if args.group == "risk":
            from seclake_ml.risk.cli import run as run_risk

            return run_risk(args)
        return handlers[(args.group, args.command)](args)
    except (ValueError, OSError) as exc:
        from seclake_ml.display import error_line

        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
