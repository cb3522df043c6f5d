"""Run threshold calibration for the training DAG (local and aws), and re-score sets for the gate.

The engine (:mod:`seclake_ml.ipinsights.calibration`) builds the sets and picks the threshold; this
module reads the interval's training and held-out pairs, keeps the sets it scored on disk (so the
quality gate can score the active model on exactly the same pairs), renders the report and returns a
small JSON summary. Locally it needs no Airflow; on aws its S3 access goes through the Amazon
provider's ``S3Hook`` (imported when used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from seclake_ml.handoff import Wait
from seclake_ml.uris import split_s3_uri

if TYPE_CHECKING:
    from seclake_ml.handoff import PreparedData, TrainedModel

log = logging.getLogger(__name__)

MAX_NORMAL = 100_000
COMBINER_JSON = "combiner.json"


def _read_pairs(path: str) -> Any:
    import pandas as pd

    return pd.read_parquet(path, columns=["entity", "ip", "event_time"])


def _history(profile: Any, train_df: Any) -> Any:
    """The entity history the combiner is fitted with: the scoring profile when there is one (so
    calibration sees exactly what scoring will), else the training pairs themselves."""
    import numpy as np

    from seclake_ml.ipinsights.history import HistoryIndex
    from seclake_ml.scoring.profile import load_history

    if profile is not None:
        return load_history(profile)
    return HistoryIndex.from_pairs(np.asarray(train_df["entity"], dtype=object), np.asarray(train_df["ip"], dtype=object))


def _save_combiner(res: Any, out: Path) -> None:
    import json

    if res.combiner is not None:
        (out / COMBINER_JSON).write_text(json.dumps(res.combiner, indent=2) + "\n")


def _summary(res: Any, out: Path, report_html: str | None, mode: str, target_fpr: float) -> dict[str, Any]:
    import json

    from seclake_ml.scoring.drift import score_reference

    thr = res.threshold
    return {
        "auc": float(res.auc),
        "components": {k: float(v["roc_auc"]) for k, v in (res.components or {}).items()},
        "combiner": res.combiner,
        "combiner_declined": res.combiner_declined,
        "auc_by_kind": {k: float(v) for k, v in res.auc_by_kind.items()},
        "threshold": float(thr.value),
        "threshold_rule": json.loads(json.dumps(thr.to_dict(), default=float)),
        # the known-normal scores' deciles: the reference scoring measures each batch's drift against
        "score_reference": score_reference(res.normal_scores),
        "threshold_mode": mode,
        "target_fpr": target_fpr if mode == "target_fpr" else None,
        "precision": float(thr.precision or 0.0),
        "recall": float(thr.recall or 0.0),
        "fpr": float(thr.fpr or 0.0),
        "counts": res.counts,
        "normal_set": str(out / "normal.parquet"),
        "abnormal_set": str(out / "abnormal.parquet"),
        "report_dir": str(out),
        "report_html": report_html or "",
    }


def _render(res: Any, out: Path, title: str, context: dict[str, Any] | None = None) -> str:
    """Write metrics JSON, the PNGs and the self-contained HTML page; returns the HTML path."""
    from seclake_ml.ipinsights import report

    paths = report.write_report(res, out, title=title, context=context)
    return str(paths["html"])


def with_labelled(normal: Any, abnormal: Any, train_df: Any, benign: Any, malicious: Any) -> tuple[Any, Any, dict[str, int]]:
    """The calibration sets with analysts' labelled findings added: ``benign`` pairs as known-normal,
    ``malicious`` pairs as abnormal (kind ``labelled_malicious``). Only pairs of entities seen in
    training join (the others have no vector to score)."""
    import pandas as pd

    known = set(train_df["entity"].unique())
    counts = {"labelled_benign_used": 0, "labelled_malicious_used": 0}
    if benign is not None and len(benign):
        add = benign[benign["entity"].isin(known)][["entity", "ip"]]
        normal = pd.concat([normal, add.assign(**{c: None for c in normal.columns if c not in ("entity", "ip")})],
                           ignore_index=True)
        counts["labelled_benign_used"] = int(len(add))
    if malicious is not None and len(malicious):
        add = malicious[malicious["entity"].isin(known)][["entity", "ip"]].assign(kind="labelled_malicious")
        abnormal = pd.concat([abnormal, add], ignore_index=True)
        counts["labelled_malicious_used"] = int(len(add))
    return normal, abnormal, counts


def calibrate_local(*, model_dir: str, train: str, holdout: str, out_dir: str, mode: str = "target_fpr",
                    target_fpr: float = 0.01, seed: int = 0, labelled_benign: str | None = None,
                    labelled_malicious: str | None = None) -> dict[str, Any]:
    """Calibrate the model in ``model_dir`` on sets built from ``train``/``holdout`` pairs files, with
    analysts' labelled findings (Parquet files of ``entity, ip``) added to the sets when given."""
    from seclake_ml.ipinsights.calibration import build_calibration_sets, calibrate_combined
    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.scoring.profile import PROFILE_FILE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_df, hold_df = _read_pairs(train), _read_pairs(holdout)
    normal, abnormal = build_calibration_sets(train_df, hold_df, n_normal=MAX_NORMAL, seed=seed)
    import pandas as pd

    normal, abnormal, used = with_labelled(
        normal, abnormal, train_df,
        pd.read_parquet(labelled_benign) if labelled_benign and Path(labelled_benign).is_file() else None,
        pd.read_parquet(labelled_malicious) if labelled_malicious and Path(labelled_malicious).is_file() else None)
    normal.to_parquet(out / "normal.parquet", index=False)
    abnormal.to_parquet(out / "abnormal.parquet", index=False)
    scorer = IPInsightsScorer.load(model_dir)
    profile = Path(model_dir) / PROFILE_FILE
    history = _history(profile if profile.is_file() else None, train_df)
    res = calibrate_combined(scorer, normal, abnormal, history, target_fpr=target_fpr if mode == "target_fpr" else None,
                             seed=seed)
    res.threshold.save(out / "threshold.json")
    _save_combiner(res, out)
    html = _render(res, out, title=f"IP Insights calibration: {Path(model_dir).name}",
                   context={"model_dir": str(model_dir), "train": train, "holdout": holdout, "seed": seed,
                            "history": str(profile) if profile.is_file() else "training pairs",
                            "labelled findings used (benign as normal, malicious as abnormal)": used})
    log.info("calibration sets: %d normal, %d abnormal; counts %s; labelled findings %s", len(normal), len(abnormal),
             res.counts, used)
    return _summary(res, out, html, mode, target_fpr) | {"labelled": used}


def auc_on_sets(scorer: Any, normal_path: str, abnormal_path: str, *, combiner: Any = None,
                history: Any = None) -> float:
    """ROC AUC of ``scorer`` on stored calibration sets: of ``-dot_product``, or, for a model deployed
    with a ``combiner`` (and the ``history`` it scores with), of its combined score, so a candidate
    and the active model are compared on the scores they are deployed with."""
    import pandas as pd

    from seclake_ml.ipinsights.calibration import calibrate, combined_auc

    normal, abnormal = pd.read_parquet(normal_path), pd.read_parquet(abnormal_path)
    if combiner is not None and history is not None:
        return float(combined_auc(scorer, normal, abnormal, combiner, history))
    res = calibrate(scorer, normal, abnormal, target_fpr=None)
    return float(res.auc)


def local_active_auc(active: Mapping[str, Any], normal_set: str, abnormal_set: str) -> float | None:
    """AUC of the local active model on the candidate's calibration sets (``None`` if it cannot be scored)."""
    from seclake_ml.ipinsights.scorer import IPInsightsScorer

    model_dir = active.get("model_dir")
    if not model_dir or not Path(model_dir).is_dir():
        log.warning("active model folder %s is missing; comparing against the floor only", model_dir)
        return None
    try:
        combiner = active.get("combiner")
        profile = Path(model_dir) / "profile.parquet"
        history = _history(profile, None) if combiner is not None and profile.is_file() else None
        return auc_on_sets(IPInsightsScorer.load(model_dir), normal_set, abnormal_set, combiner=combiner,
                           history=history)
    except ValueError as exc:  # e.g. the active model knows none of the candidate's entities
        log.warning("active model %s could not be scored on the candidate's sets: %s", active.get("version"), exc)
        return None


# ------------------------------------------------------------------------------------------- aws
# Bounds of what the aws calibration reads from the training channels. The sets themselves hold at
# most MAX_NORMAL known-normal pairs and about as many injected ones, so these only bound memory.
MAX_TRAIN_ROWS = 2_000_000
MAX_HOLDOUT_ROWS = 1_000_000
CSV_CHUNK_ROWS = 250_000
SET_FILES = ("abnormal.csv", "normal.csv")  # Batch Transform input; its output comes back in key order


class PrecomputedScorer:
    """Stands in for the engine's scorer in :func:`~seclake_ml.ipinsights.calibration.calibrate`.

    It answers ``score(entities, ips)`` with dot products computed elsewhere (a Batch Transform job),
    for exactly the pair arrays it was given; every entity counts as known and every IP as valid,
    since the built-in algorithm hashes any entity and the sets hold only IPv4 addresses.

    :param sets: ``(entities, ips, dot_products)`` per scored set, arrays of equal length.
    """

    def __init__(self, sets: list[tuple[Any, Any, Any]]) -> None:
        import numpy as np

        self._sets = []
        for entities, ips, dots in sets:
            e, i, d = (np.asarray(entities, dtype=object), np.asarray(ips, dtype=object),
                       np.asarray(dots, dtype=np.float64))
            if not len(e) == len(i) == len(d):
                raise ValueError(f"precomputed scores: {len(e)} entities, {len(i)} IPs, {len(d)} dot products")
            self._sets.append((e, i, d))

    def score(self, entities: Any, ips: Any) -> Any:
        import numpy as np

        from seclake_ml.ipinsights.scorer import ScoredPairs

        e, i = np.asarray(entities, dtype=object), np.asarray(ips, dtype=object)
        for se, si, sd in self._sets:
            if len(se) == len(e) and np.array_equal(se, e) and np.array_equal(si, i):
                ones = np.ones(len(sd), dtype=bool)
                return ScoredPairs(sd, ones, ones.copy())
        raise ValueError(f"no precomputed dot products for these {len(e)} pairs")


def _s3(cfg: Any, aws_conn_id: str | None) -> tuple[Any, Any]:
    """An :class:`S3Hook` in the configured region and its boto3 session (for awswrangler)."""
    from seclake_ml.aws.clients import s3_hook

    hook = s3_hook(cfg, aws_conn_id)
    return hook, hook.get_session(region_name=cfg.region)


def read_channel_sample(uri: str, *, session: Any, max_rows: int, total_rows: int | None = None, seed: int = 0,
                        chunk_rows: int = CSV_CHUNK_ROWS) -> Any:
    """``entity``/``ip`` pairs of the headerless CSV objects under ``uri``, at most ``max_rows``.

    Read in chunks of ``chunk_rows`` rows. When ``total_rows`` (the channel's row count from the
    prepare step) exceeds ``max_rows``, every chunk keeps a seeded random share of its rows, so
    the sample spans all objects instead of the first ones only.
    """
    import awswrangler as wr
    import numpy as np
    import pandas as pd

    share = 1.0 if not total_rows or total_rows <= max_rows else max_rows / float(total_rows)
    rng = np.random.default_rng(seed)
    parts: list[Any] = []
    kept = 0
    chunks = wr.s3.read_csv(path=uri, path_suffix=".csv", header=None, names=["entity", "ip"], dtype=str,
                            keep_default_na=False, na_filter=False, chunksize=chunk_rows, boto3_session=session)
    for df in chunks:
        if share < 1.0:
            df = df[rng.random(len(df)) < share]
        if kept + len(df) > max_rows:
            log.warning("%s: more than %d rows; calibration reads the first %d", uri, max_rows, max_rows)
            df = df.iloc[: max_rows - kept]
        parts.append(df)
        kept += len(df)
        if kept >= max_rows:
            break
    if not parts:
        return pd.DataFrame({"entity": pd.Series(dtype=object), "ip": pd.Series(dtype=object)})
    return pd.concat(parts, ignore_index=True)


def _read_s3_bytes(hook: Any, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri, "uri", require_key=True)
    return hook.get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()


def _csv_bytes(frame: Any) -> bytes:
    return frame[["entity", "ip"]].to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")


def _write_transform_input(hook: Any, prefix: str, normal: Any, abnormal: Any) -> tuple[str, str]:
    """Write ``abnormal.csv`` and ``normal.csv`` under ``<prefix>input/`` (anything else there is removed).

    :return: the input prefix and a digest of the two files' content.
    """
    import hashlib

    input_uri = f"{prefix}input/"
    bucket, key = split_s3_uri(input_uri, "input_uri", require_key=True)
    bodies = {"abnormal.csv": _csv_bytes(abnormal), "normal.csv": _csv_bytes(normal)}
    stale = [k for k in hook.list_keys(bucket_name=bucket, prefix=key) or [] if k[len(key):] not in bodies]
    if stale:
        hook.delete_objects(bucket=bucket, keys=stale)
    digest = hashlib.sha256()
    for name in SET_FILES:
        hook.load_bytes(bodies[name], key=f"{key}{name}", bucket_name=bucket, replace=True)
        digest.update(name.encode() + b"\0" + bodies[name])
    return input_uri, digest.hexdigest()[:12]


def _start_scoring(cfg: Any, hook: Any, prefix: str, normal: Any, abnormal: Any, *, aws_conn_id: str | None,
                   deferrable: bool, **transform_args: Any) -> dict[str, Any] | Wait:
    """Write both sets as one transform input and start (or find) the Batch Transform job scoring them.

    Returns the finished job's summary, or, with ``deferrable`` while it runs, the wait on it.
    """
    from seclake_ml.aws.transform import run_transform

    input_uri, digest = _write_transform_input(hook, prefix, normal, abnormal)
    # The content digest in the output prefix gives new sets a new job name: a finished job is only
    # reused (by its deterministic name) when it scored exactly these files.
    output_uri = f"{prefix}scores/{digest}/"
    return run_transform(cfg, input_uri=input_uri, output_uri=output_uri, deferrable=deferrable,
                         aws_conn_id=aws_conn_id, **transform_args)


def _read_scores(cfg: Any, job: Mapping[str, Any], normal: Any, abnormal: Any, *,
                 aws_conn_id: str | None) -> PrecomputedScorer:
    """The scorer stand-in answering with the dot products the finished job wrote."""
    from seclake_ml.aws.transform import TransformOutputError, read_transform_output

    dots = read_transform_output(cfg, input_uri=job["input_uri"], output_uri=job["output_uri"], aws_conn_id=aws_conn_id)
    n_abnormal = len(abnormal)
    if len(dots) != n_abnormal + len(normal):
        raise TransformOutputError(f"{len(dots)} dot products for {n_abnormal} + {len(normal)} pairs")
    return PrecomputedScorer([
        (abnormal["entity"], abnormal["ip"], dots[:n_abnormal]),  # abnormal.csv sorts first
        (normal["entity"], normal["ip"], dots[n_abnormal:]),
    ])


def _score_sets(cfg: Any, hook: Any, prefix: str, normal: Any, abnormal: Any, *,
                aws_conn_id: str | None, **transform_args: Any) -> tuple[Any, dict[str, Any]]:
    """Score both sets with one Batch Transform job, waiting here (the quality gate's comparison of the
    active model); return the scorer stand-in and the job summary."""
    job = _start_scoring(cfg, hook, prefix, normal, abnormal, aws_conn_id=aws_conn_id, deferrable=False,
                         **transform_args)
    return _read_scores(cfg, job, normal, abnormal, aws_conn_id=aws_conn_id), dict(job)


def calibrate_aws(cfg: Any, *, model: TrainedModel, data: PreparedData, out_dir: str, mode: str,
                  target_fpr: float, seed: int, aws_conn_id: str | None = "aws_default",
                  deferrable: bool = False) -> dict[str, Any] | Wait:
    """aws backend: build the sets from the S3 channels, score them with Batch Transform, calibrate.

    Under ``<out_dir>/``: ``input/{abnormal,normal}.csv`` (the transform input), ``scores/<digest>/``
    (its output), ``normal.parquet`` and ``abnormal.parquet`` (the sets, for the quality gate) and
    ``report/`` (HTML, PNGs, metrics and threshold JSON). Returns the keys of
    :func:`calibrate_local`, with S3 URIs, plus the transform job and the model it ran.

    :param model: the trained candidate (``model_uri`` is its ``model.tar.gz``).
    :param data: the prepared data (the training and validation channel prefixes and row counts).
    :param aws_conn_id: Airflow AWS connection.
    :param deferrable: while the transform job runs, return the :class:`~seclake_ml.handoff.Wait` on it;
        :func:`calibrate_aws_complete` finishes from the stored sets once the trigger fires.
    """
    import awswrangler as wr

    from seclake_ml.aws import aws_setting
    from seclake_ml.aws import names as naming
    from seclake_ml.aws.image_uris import resolve_image_uri
    from seclake_ml.ipinsights.calibration import build_calibration_sets

    conn_id = aws_conn_id
    prefix = out_dir.rstrip("/") + "/"
    if not data.holdout_uri:
        raise ValueError(f"no held-out channel for {data.window.label}: no pair at or after "
                         f"the split time {data.split_time}, so there is nothing to calibrate on")
    hook, session = _s3(cfg, conn_id)
    train = read_channel_sample(data.train_uri, session=session, max_rows=MAX_TRAIN_ROWS,
                                total_rows=data.train_rows, seed=seed)
    holdout = read_channel_sample(data.holdout_uri, session=session, max_rows=MAX_HOLDOUT_ROWS,
                                  total_rows=data.holdout_rows, seed=seed + 1)
    normal, abnormal = build_calibration_sets(train, holdout, n_normal=MAX_NORMAL, seed=seed)
    labelled = data.details.get("labelled") or {}

    def read_labelled(name: str) -> Any:
        uri = labelled.get(name)
        if not uri:
            return None
        try:
            return wr.s3.read_parquet(path=uri, boto3_session=session)
        except wr.exceptions.NoFilesFound:
            return None

    normal, abnormal, used = with_labelled(normal, abnormal, train, read_labelled("benign"), read_labelled("malicious"))
    log.info("labelled findings in the calibration sets: %s", used)
    normal_set, abnormal_set = f"{prefix}normal.parquet", f"{prefix}abnormal.parquet"
    wr.s3.to_parquet(normal, path=normal_set, index=False, boto3_session=session)
    wr.s3.to_parquet(abnormal, path=abnormal_set, index=False, boto3_session=session)

    # The Model is named as the rollout names it, so a candidate that passes the gate is served by
    # the very Model that was calibrated.
    model_name = naming.model_name(aws_setting(cfg, "resource_prefix"), model_data_url=model.model_uri,
                                   image_uri=resolve_image_uri(cfg))
    job = _start_scoring(cfg, hook, prefix, normal, abnormal, aws_conn_id=conn_id, deferrable=deferrable,
                         model_data_url=model.model_uri, model_name=model_name,
                         start=data.window.start_iso, end=data.window.end_iso)
    if isinstance(job, Wait):
        return job  # the sets are in S3: calibrate_aws_complete carries on from them
    return _finish_aws(cfg, model=model, data=data, prefix=prefix, mode=mode, target_fpr=target_fpr, seed=seed,
                       job=job, normal=normal, abnormal=abnormal, train=train, hook=hook, aws_conn_id=conn_id)


def calibrate_aws_complete(cfg: Any, *, model: TrainedModel, data: PreparedData, out_dir: str, mode: str,
                           target_fpr: float, seed: int, event: Any,
                           aws_conn_id: str | None = "aws_default") -> dict[str, Any]:
    """Finish :func:`calibrate_aws` after its Batch Transform job was waited for in the triggerer:
    read the stored sets and the job's scores, choose the threshold, write the report.

    :param event: the :class:`~seclake_ml.aws.triggers.SageMakerJobTrigger` event of the job.
    """
    import awswrangler as wr

    from seclake_ml.aws.transform import transform_complete

    job = transform_complete(event, cfg=cfg, aws_conn_id=aws_conn_id)
    prefix = out_dir.rstrip("/") + "/"
    hook, session = _s3(cfg, aws_conn_id)
    normal = wr.s3.read_parquet(path=f"{prefix}normal.parquet", boto3_session=session)
    abnormal = wr.s3.read_parquet(path=f"{prefix}abnormal.parquet", boto3_session=session)
    train = None
    if not (data.profile_uri or model.profile_uri):  # the history then comes from the same training sample
        train = read_channel_sample(data.train_uri, session=session, max_rows=MAX_TRAIN_ROWS,
                                    total_rows=data.train_rows, seed=seed)
    return _finish_aws(cfg, model=model, data=data, prefix=prefix, mode=mode, target_fpr=target_fpr, seed=seed,
                       job=job, normal=normal, abnormal=abnormal, train=train, hook=hook, aws_conn_id=aws_conn_id)


def _finish_aws(cfg: Any, *, model: TrainedModel, data: PreparedData, prefix: str, mode: str, target_fpr: float,
                seed: int, job: Mapping[str, Any], normal: Any, abnormal: Any, train: Any, hook: Any,
                aws_conn_id: str | None) -> dict[str, Any]:
    """Calibrate on the scored sets and write the report under ``<prefix>report/``."""
    import tempfile

    from seclake_ml.ipinsights import report
    from seclake_ml.ipinsights.calibration import calibrate_combined

    scorer = _read_scores(cfg, job, normal, abnormal, aws_conn_id=aws_conn_id)
    normal_set, abnormal_set = f"{prefix}normal.parquet", f"{prefix}abnormal.parquet"
    # The endpoint's dot_product is combined with the same profile features the scoring path reads
    # (profile_uri); without a profile, with the training sample's pairs.
    profile_uri = data.profile_uri or model.profile_uri
    history = _history(_read_s3_bytes(hook, profile_uri) if profile_uri else None, train)
    res = calibrate_combined(scorer, normal, abnormal, history,
                             target_fpr=target_fpr if mode == "target_fpr" else None, seed=seed)

    report_dir = f"{prefix}report/"
    bucket, key = split_s3_uri(report_dir, "report_dir")
    with tempfile.TemporaryDirectory(prefix="seclake-calibration-") as tmp:
        res.threshold.save(Path(tmp) / "threshold.json")
        _save_combiner(res, Path(tmp))
        report.write_report(res, tmp, title=f"IP Insights calibration: {model.version}", context={
            "model_data_url": model.model_uri, "training_job": model.details.get("job_name"),
            "train": data.train_uri, "holdout": data.holdout_uri, "transform_job": job.get("job_name"), "seed": seed,
            "history": profile_uri or "training channel sample",
        })
        for path in sorted(Path(tmp).iterdir()):
            hook.load_file(str(path), key=f"{key}{path.name}", bucket_name=bucket, replace=True)
    log.info("calibration sets: %d normal, %d abnormal; counts %s; report under %s", len(normal), len(abnormal),
             res.counts, report_dir)
    summary = _summary(res, Path(), f"{report_dir}report.html", mode, target_fpr)
    summary.update(normal_set=normal_set, abnormal_set=abnormal_set, report_dir=report_dir,
                   transform_job=job.get("job_name"), model_name=job.get("model_name"),
                   scores_uri=job["output_uri"])
    return summary


def active_auc_aws(cfg: Any, active: Mapping[str, Any], normal_set: str, abnormal_set: str, *,
                   aws_conn_id: str | None = "aws_default") -> float | None:
    """AUC of the active model (the SSM registry record) on the candidate's stored sets.

    The sets' Parquet copies are written out as transform input under
    ``<calibration folder>/gate/<digest of the active artifact>/`` and scored with a Batch Transform
    job of the active record's Model (re-created from its artifact and image if it was deleted).
    ``None``, with a warning, when the record has no artifact or the job or its output is unusable;
    AWS API errors (permissions, throttling) propagate, so the task fails and is retried.
    """
    import awswrangler as wr

    from seclake_ml.aws import names as naming
    from seclake_ml.aws.transform import TransformJobError, TransformOutputError
    from seclake_ml.ipinsights.calibration import calibrate, combined_auc

    version = active.get("version")
    url = active.get("model_data_url")
    if not url:
        log.warning("active model %s: the registry record has no model_data_url; comparing against the floor only",
                    version)
        return None
    try:
        hook, session = _s3(cfg, aws_conn_id)
        normal = wr.s3.read_parquet(path=normal_set, boto3_session=session)
        abnormal = wr.s3.read_parquet(path=abnormal_set, boto3_session=session)
        folder = normal_set.rsplit("/", 1)[0]
        prefix = f"{folder}/gate/{naming.content_digest(url, active.get('image_uri'))}/"
        scorer, job = _score_sets(cfg, hook, prefix, normal, abnormal, aws_conn_id=aws_conn_id,
                                  model_data_url=url, model_name=active.get("model_name"),
                                  image_uri=active.get("image_uri"))
        combiner, profile_uri = active.get("combiner"), active.get("profile_uri")
        if combiner is not None and profile_uri:
            auc = float(combined_auc(scorer, normal, abnormal, combiner, _history(_read_s3_bytes(hook, profile_uri), None)))
        else:
            auc = float(calibrate(scorer, normal, abnormal, target_fpr=None).auc)
    except (TransformJobError, TransformOutputError, ValueError) as exc:
        log.warning("active model %s could not be scored on the candidate's sets: %s", version, exc)
        return None
    log.info("active model %s: AUC %.4f on the candidate's sets (transform job %s)", version, auc,
             job.get("job_name"))
    return auc
