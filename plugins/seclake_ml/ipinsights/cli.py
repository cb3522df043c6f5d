"""The ``ipinsights`` command group: ``train``, ``score``, ``calibration-sets``, ``calibrate``.

Attach it to a parent parser with :func:`register` and dispatch with :func:`run`; or run this
module on its own: ``python -m seclake_ml.ipinsights.cli <command> ...``.

* ``train --train FILE [--validation FILE] --out DIR [hyperparameters ...]``: train and save a model,
  with the entity profile of the training pairs (``profile.parquet``) beside it.
* ``score --model DIR --input FILE --output FILE``: score pairs (headerless CSV ``entity,ip`` or
  Parquet pairs); the output format follows its suffix: ``.parquet``, ``.jsonl`` or CSV with a header.
* ``calibration-sets --train FILE --later FILE --normal-out FILE --abnormal-out FILE``: build the
  known-normal and injected-abnormal sets (Parquet).
* ``calibrate --model DIR --normal FILE --abnormal FILE --target-fpr X --report DIR``: choose a
  threshold and write the report (PNG, JSON, HTML) and ``threshold.json``. With a profile (the
  model folder's ``profile.parquet``, ``--profile FILE``, or ``--train FILE`` to build it from the
  training pairs) it calibrates the score combined with the entities' history and writes
  ``combiner.json`` when the combination beats the model; ``--model-only`` calibrates
  ``-dot_product`` alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["register", "run", "main"]

log = logging.getLogger(__name__)

# CLI flag -> hyperparameter name (values are passed as strings and validated by the dataclass).
_HP_FLAGS = {
    "--num-entity-vectors": "num_entity_vectors",
    "--vector-dim": "vector_dim",
    "--epochs": "epochs",
    "--learning-rate": "learning_rate",
    "--mini-batch-size": "mini_batch_size",
    "--num-ip-encoder-layers": "num_ip_encoder_layers",
    "--random-negative-sampling-rate": "random_negative_sampling_rate",
    "--shuffled-negative-sampling-rate": "shuffled_negative_sampling_rate",
    "--weight-decay": "weight_decay",
    "--batch-metrics-publish-interval": "batch_metrics_publish_interval",
}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``ipinsights`` group (sub-commands in ``args.command``) to a parent's sub-parsers."""
    from seclake_ml.ipinsights.hyperparams import HYPERPARAMETER_RANGES, IPInsightsHyperparameters

    defaults = IPInsightsHyperparameters()
    group = subparsers.add_parser("ipinsights", help="IP Insights: train, score, calibrate (local, PyTorch/NumPy)")
    sub = group.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model on (entity, ip) pairs and save it")
    tr.add_argument("--train", required=True, help="training pairs: Parquet file/folder or headerless CSV entity,ip")
    tr.add_argument("--validation", help="validation pairs (same formats): logs validation:discriminator_auc per epoch")
    tr.add_argument("--out", required=True, help="model folder to write (model.npz, model.json)")
    for flag, name in _HP_FLAGS.items():
        kind, low, high = HYPERPARAMETER_RANGES[name]
        rng = f"{low:g}..{'inf' if high == float('inf') else f'{high:g}'}"
        tr.add_argument(flag, dest=name, metavar="N" if kind is int else "X", help=f"{name} ({rng}, default {getattr(defaults, name)})")
    tr.add_argument("--ip-prefix-lengths", help="IPv4 prefix lengths of the IP encoder, comma-separated (default 8,12,16,20,24,32)")
    tr.add_argument("--ip-hash-buckets", type=int, help="rows per hashed prefix table (default 65536)")
    tr.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling, negatives and hashing (default 0)")
    tr.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    tr.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own setting)")
    tr.add_argument("--interval-start", help="start of the data interval the pairs cover (ISO, recorded in model.json)")
    tr.add_argument("--interval-end", help="end of the data interval (ISO, recorded in model.json)")
    tr.add_argument("--best-epoch", action="store_true", help="with --validation, keep the weights of the epoch with "
                    "the best validation:discriminator_auc and stop 2 epochs after it (default: the last epoch's)")
    tr.add_argument("--no-profile", action="store_true", help="do not write the entity profile (profile.parquet) "
                    "into the model folder")
    tr.add_argument("--json", action="store_true", help="print the result as JSON")

    sc = sub.add_parser("score", help="score pairs with a saved model")
    sc.add_argument("--model", required=True, help="model folder")
    sc.add_argument("--input", required=True, help="pairs: headerless CSV entity,ip or Parquet with entity, ip")
    sc.add_argument("--output", required=True, help="output: .parquet, .jsonl, or anything else for CSV with a header")
    sc.add_argument("--force", action="store_true", help="replace an existing output file")
    sc.add_argument("--json", action="store_true", help="print the summary as JSON")

    cs = sub.add_parser("calibration-sets", help="build known-normal and injected-abnormal pairs for calibration")
    cs.add_argument("--train", required=True, help="the training pairs")
    cs.add_argument("--later", required=True, help="pairs from after the training interval")
    cs.add_argument("--normal-out", required=True, help="Parquet file for the known-normal pairs")
    cs.add_argument("--abnormal-out", required=True, help="Parquet file for the abnormal pairs (with a 'kind' column)")
    cs.add_argument("--force", action="store_true", help="replace existing output files")
    cs.add_argument("--n-normal", type=int, default=100_000, help="normal pairs to sample (default 100000)")
    cs.add_argument("--n-per-kind", type=int, help="abnormal pairs per kind (default: normal count / number of kinds)")
    cs.add_argument("--kinds", default="random_public,unused_private,other_entity", help="abnormal kinds, comma-separated")
    cs.add_argument("--seed", type=int, default=0)

    ca = sub.add_parser("calibrate", help="choose a threshold on known-normal vs abnormal pairs and write a report")
    ca.add_argument("--model", required=True, help="model folder")
    ca.add_argument("--normal", required=True, help="known-normal pairs (CSV or Parquet)")
    ca.add_argument("--abnormal", required=True, help="abnormal pairs (CSV or Parquet; optional 'kind' column)")
    ca.add_argument("--target-fpr", type=float, help="false-positive rate to aim for, e.g. 0.01 (default: best F1)")
    ca.add_argument("--report", required=True, help="folder for the report and threshold.json")
    history = ca.add_mutually_exclusive_group()
    history.add_argument("--profile", help="the model's profile.parquet: calibrate the score combined with the entities' "
                         "history (writes combiner.json) instead of -dot_product")
    history.add_argument("--train", help="the model's training pairs (CSV or Parquet): the same as --profile, with the "
                         "history built from these pairs")
    history.add_argument("--model-only", action="store_true", help="calibrate -dot_product alone even when the "
                         "model folder holds a profile.parquet (by default it is used as with --profile)")
    ca.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return group


# ---------------------------------------------------------------------------------------------- commands
def _train(args: argparse.Namespace) -> int:
    from seclake_ml.ipinsights.encoding import DEFAULT_IP_HASH_BUCKETS, DEFAULT_PREFIX_LENGTHS
    from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters
    from seclake_ml.ipinsights.trainer import IPInsights

    given = {name: getattr(args, name) for name in _HP_FLAGS.values() if getattr(args, name, None) is not None}
    hp = IPInsightsHyperparameters.from_dict(given)
    prefixes = DEFAULT_PREFIX_LENGTHS
    if args.ip_prefix_lengths:
        try:
            prefixes = tuple(int(p) for p in args.ip_prefix_lengths.split(","))
        except ValueError:
            raise ValueError(f"--ip-prefix-lengths: expected comma-separated integers, got {args.ip_prefix_lengths!r}") from None
    if args.best_epoch and not args.validation:
        raise ValueError("--best-epoch needs --validation: the epoch kept is the one with the best validation AUC")
    for path in filter(None, (args.train, args.validation)):
        if not Path(path).exists():
            raise FileNotFoundError(f"pairs input {path} does not exist")
    from seclake_ml.backends import local_lake_root_of_config
    from seclake_ml.outputs import check_output_dir

    check_output_dir(args.out, lake_root=local_lake_root_of_config(), what="--out")
    interval = None
    if args.interval_start or args.interval_end:
        interval = {"start": args.interval_start, "end": args.interval_end}
    est = IPInsights(hp, ip_prefix_lengths=prefixes, ip_hash_buckets=args.ip_hash_buckets or DEFAULT_IP_HASH_BUCKETS,
                     seed=args.seed, device=args.device, num_threads=args.threads, best_epoch=args.best_epoch)
    t0 = time.perf_counter()
    est.fit(args.train, validation=args.validation)
    seconds = time.perf_counter() - t0
    if interval is None and est.train_summary_.get("event_time_min"):
        interval = {"observed_min": est.train_summary_["event_time_min"], "observed_max": est.train_summary_["event_time_max"]}
    out = est.save(args.out, training_interval=interval)
    profile = None
    if not args.no_profile:
        try:
            profile = _write_profile(args.train, Path(out))
        except (OSError, ValueError) as exc:  # the model is saved; calibrate falls back to --train or the model alone
            print(f"warning: the entity profile was not written ({exc}); calibrate with --train to use the "
                  "combined score", file=sys.stderr)
    last = est.history_[-1]
    summary = {
        "model": str(out),
        "pairs": est.train_summary_["pairs"],
        "rows_read": est.train_summary_["rows_read"],
        "dropped": est.train_summary_["dropped"],
        "entities": int(est.known_entity_hashes_.size),
        "epochs": len(est.history_),
        "epoch_kept": None if est.best_epoch_ is None else est.best_epoch_ + 1,  # the weights saved (final_*: the last run)
        "final_loss": last.loss,
        "final_accuracy": last.accuracy,
        "samples_per_second": last.samples_per_second,
        "validation_discriminator_auc": last.validation_discriminator_auc,
        "seconds": round(seconds, 2),
        "device": est.device_,
        "profile": profile,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"model         {out}")
        print(f"pairs         {summary['pairs']} of {summary['rows_read']} rows (dropped {summary['dropped']})")
        print(f"entities      {summary['entities']}")
        for h in est.history_:
            auc = "" if h.validation_discriminator_auc is None else f", validation:discriminator_auc {h.validation_discriminator_auc:.5f}"
            print(f"epoch {h.epoch + 1:<7d} loss {h.loss:.5f}, accuracy {h.accuracy:.4f}, {h.samples_per_second:,.0f} samples/s{auc}")
        if est.best_epoch_ is not None:
            print(f"kept          epoch {est.best_epoch_ + 1} of {len(est.history_)} run (best validation:discriminator_auc)")
        print(f"seconds       {seconds:.1f} on {est.device_}")
        if profile:
            print(f"profile       {profile['path']} ({profile['entities']} entities, {profile['pairs']} distinct pairs; "
                  "calibrate uses it for the combined score)")
    return 0


def _write_profile(train: str, model_dir: Path) -> dict:
    """The entity profile of the training pairs in ``model_dir/profile.parquet`` (what the training DAG
    keeps beside its models): the history the combined score and the findings' explanations use.

    The pairs are read as training reads them (CSV or Parquet, a file or a folder, IPs trimmed of
    surrounding whitespace), so the profile holds the history the model was trained on.
    """
    import tempfile

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seclake_ml.ipinsights.data import iter_pair_batches
    from seclake_ml.scoring.profile import PROFILE_FILE, build_profile

    out = model_dir / PROFILE_FILE
    with tempfile.TemporaryDirectory(prefix="seclake-profile-") as tmp:
        staged = Path(tmp) / "pairs.parquet"
        writer = None
        try:
            for batch in iter_pair_batches(train, ("entity", "ip", "event_time")):
                table = pa.Table.from_batches([batch])
                table = table.set_column(table.schema.get_field_index("entity"), "entity", table["entity"].cast(pa.string()))
                ip = pc.utf8_trim_whitespace(table["ip"].cast(pa.string()))
                table = table.set_column(table.schema.get_field_index("ip"), "ip", ip)
                if writer is None:
                    writer = pq.ParquetWriter(staged, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        return build_profile([str(staged)] if writer is not None else [], str(out))


def _score(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa

    from seclake_ml.ipinsights.data import iter_pair_batches
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    from seclake_ml.backends import local_lake_root_of_config
    from seclake_ml.outputs import check_output_file, write_atomically

    out = check_output_file(args.output, force=args.force, lake_root=local_lake_root_of_config(), what="--output")
    if not Path(args.input).exists():
        raise FileNotFoundError(f"pairs input {args.input} does not exist")
    scorer = IPInsightsScorer.load(args.model)
    suffix = out.suffix.lower()
    fmt = "parquet" if suffix in (".parquet", ".pq") else "jsonl" if suffix in (".jsonl", ".jsonlines") else "csv"
    columns = ("entity", "ip", "event_time", "source", "account", "region")
    t0 = time.perf_counter()
    totals = {"pairs": 0, "invalid_ip": 0, "unknown_entity": 0}
    writer = None
    malformed = [0]
    with write_atomically(out) as tmp:
        with open(tmp, "wb") as fh:
            for batch in iter_pair_batches(args.input, columns, malformed=malformed):
                ents = np.asarray(batch.column("entity").to_pylist(), dtype=object)
                ips = np.asarray([None if v is None else v.strip() for v in batch.column("ip").to_pylist()], dtype=object)
                res = scorer.score(ents, ips)
                totals["pairs"] += len(ents)
                totals["invalid_ip"] += int((~res.valid_ip).sum())
                totals["unknown_entity"] += int((~res.known_entity).sum())
                dp = res.dot_product.astype(np.float64)
                dp_arr = pa.array(dp, mask=~res.valid_ip)
                anomaly = pa.array(-dp, mask=~res.valid_ip)
                table = pa.Table.from_batches([batch]).append_column("dot_product", dp_arr).append_column("anomaly_score", anomaly)
                table = table.append_column("known_entity", pa.array(res.known_entity)).append_column("valid_ip", pa.array(res.valid_ip))
                if fmt == "parquet":
                    import pyarrow.parquet as pq

                    if writer is None:
                        writer = pq.ParquetWriter(fh, table.schema)
                    writer.write_table(table)
                elif fmt == "jsonl":
                    fh.write("".join(json.dumps(r, default=str) + "\n" for r in table.to_pylist()).encode())
                else:
                    from pyarrow import csv as pacsv

                    buf = pa.BufferOutputStream()
                    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=totals["pairs"] == len(ents)))
                    fh.write(buf.getvalue().to_pybytes())
            if writer is not None:
                writer.close()
    seconds = time.perf_counter() - t0
    summary = {**totals, "malformed_lines_skipped": malformed[0], "output": str(out), "format": fmt, "seconds": round(seconds, 3)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"scored        {totals['pairs']} pairs ({totals['invalid_ip']} invalid IPs -> null, {totals['unknown_entity']} unknown entities)")
        if malformed[0]:
            print(f"skipped       {malformed[0]} malformed CSV lines")
        print(f"output        {out} ({fmt})")
        print(f"seconds       {seconds:.2f}")
    return 0


def _calibration_sets(args: argparse.Namespace) -> int:
    from seclake_ml.ipinsights.calibration import build_calibration_sets
    from seclake_ml.ipinsights.data import read_pairs_frame

    train = read_pairs_frame(args.train)
    later = read_pairs_frame(args.later)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    from seclake_ml.backends import local_lake_root_of_config
    from seclake_ml.outputs import check_output_file, write_atomically

    lake_root = local_lake_root_of_config()
    outs = [check_output_file(path, force=args.force, lake_root=lake_root, what=flag)
            for flag, path in (("--normal-out", args.normal_out), ("--abnormal-out", args.abnormal_out))]
    normal, abnormal = build_calibration_sets(train, later, args.n_normal, args.n_per_kind, kinds, args.seed)
    for frame, path in ((normal, outs[0]), (abnormal, outs[1])):
        with write_atomically(path) as tmp:
            frame.to_parquet(tmp, index=False)
    counts = abnormal["kind"].value_counts().to_dict()
    print(f"normal        {len(normal)} pairs -> {args.normal_out}")
    print(f"abnormal      {len(abnormal)} pairs {counts} -> {args.abnormal_out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from seclake_ml.ipinsights.calibration import calibrate
    from seclake_ml.ipinsights.data import read_pairs_frame
    from seclake_ml.ipinsights.report import write_report
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    if args.target_fpr is not None and not 0.0 <= args.target_fpr < 1.0:
        raise ValueError(f"--target-fpr: expected a number in [0, 1), got {args.target_fpr}")
    from seclake_ml.backends import local_lake_root_of_config
    from seclake_ml.outputs import check_output_dir

    check_output_dir(args.report, lake_root=local_lake_root_of_config(), what="--report")
    scorer = IPInsightsScorer.load(args.model)
    normal = read_pairs_frame(args.normal, ("entity", "ip"))
    abnormal = read_pairs_frame(args.abnormal, ("entity", "ip", "kind"))
    from seclake_ml.scoring.profile import PROFILE_FILE

    beside = Path(args.model) / PROFILE_FILE
    profile_path = args.profile or (str(beside) if not (args.train or args.model_only) and beside.is_file() else None)
    if profile_path or args.train:
        from seclake_ml.ipinsights.calibration import calibrate_combined

        if profile_path:
            from seclake_ml.scoring.profile import load_history

            history = load_history(profile_path)
        else:
            from seclake_ml.ipinsights.history import HistoryIndex

            train = read_pairs_frame(args.train, ("entity", "ip"))
            history = HistoryIndex.from_pairs(train["entity"].to_numpy(object), train["ip"].to_numpy(object))
        result = calibrate_combined(scorer, normal, abnormal, history, args.target_fpr)
    else:
        result = calibrate(scorer, normal, abnormal, args.target_fpr)
    context = {
        "model": str(Path(args.model).resolve()),
        "model_sha256": scorer.metadata.get("npz_sha256"),
        "training_interval": json.dumps(scorer.metadata.get("training_interval")),
        "normal": str(args.normal),
        "abnormal": str(args.abnormal),
    }
    combiner_path = Path(args.report) / "combiner.json"
    combiner_path.parent.mkdir(parents=True, exist_ok=True)
    if result.combiner is not None:
        combiner_path.write_text(json.dumps(result.combiner, indent=2) + "\n")
    else:  # an earlier run's file must not travel with this threshold
        combiner_path.unlink(missing_ok=True)
    paths = write_report(result, args.report, context=context)
    threshold_path = result.threshold.save(Path(args.report) / "threshold.json")
    t = result.threshold
    if args.json:
        print(json.dumps({**result.metrics(), "files": {k: str(v) for k, v in paths.items()}, "threshold_file": str(threshold_path)}, indent=2))
    else:
        print(f"ROC AUC       {result.auc:.5f} (" + ", ".join(f"{k} {v:.5f}" for k, v in result.auc_by_kind.items()) + ")")
        if result.components:
            print("components    " + ", ".join(f"{k} {v['roc_auc']:.5f}" for k, v in result.components.items())
                  + " (held-out half)")
        if result.combiner is not None:
            print(f"threshold     {t.value:.6g} on the combined log-odds ({t.method})")
        else:
            print(f"threshold     {t.value:.6g} on -dot_product ({t.method}); flag when dot_product < {t.dot_product_cutoff:.6g}")
            if result.combiner_declined:
                print(f"              ({result.combiner_declined})")
            elif args.model_only:
                print("              (model alone, as --model-only asks)")
            else:
                print("              (model alone: no profile.parquet in the model folder; --train PAIRS calibrates the "
                      "score combined with the entities' history, the one the DAGs deploy)")
        print(f"at threshold  precision {t.precision:.4f}, recall {t.recall:.4f}, FPR {t.fpr:.4f}, F1 {t.f1:.4f}")
        print(f"counts        {result.counts}")
        print(f"report        {paths['html']}")
        print(f"threshold     {threshold_path}")
    return 0


_COMMANDS = {"train": _train, "score": _score, "calibration-sets": _calibration_sets, "calibrate": _calibrate}


def run(args: argparse.Namespace) -> int:
    """Run the ``ipinsights`` sub-command in ``args.command``; returns the exit status.

    Input errors (``ValueError``, ``FileNotFoundError``) propagate to the caller, which reports them.
    """
    try:
        handler = _COMMANDS[args.command]
    except KeyError:
        raise ValueError(f"ipinsights: unknown command {args.command!r}; expected one of {sorted(_COMMANDS)}") from None
    return handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m seclake_ml.ipinsights.cli <command> ...``."""
    parser = argparse.ArgumentParser(prog="python -m seclake_ml.ipinsights.cli", description="IP Insights commands")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    top = parser.add_subparsers(dest="group", required=True)
    register(top)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("ipinsights", "-h", "--help", "-v", "--verbose"):
        argv = ["ipinsights", *argv]
    elif argv[0] in ("-v", "--verbose") and (len(argv) < 2 or argv[1] != "ipinsights"):
        argv = [argv[0], "ipinsights", *argv[1:]]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        from seclake_ml.display import error_line

        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
