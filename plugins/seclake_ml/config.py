"""One validated configuration for the whole package.

The configuration is a JSON object. It is read, in this order of precedence, from:

1. an explicit mapping passed by the caller (tests, CLI),
2. the Airflow Variable ``seclake_ml_config`` (operators pass its value in; this module never imports
   Airflow), or the environment variable ``SECLAKE_ML_CONFIG`` holding the same JSON,
3. individual environment variables ``SECLAKE_ML_<FIELD>`` (upper case) that override single fields.

Every field is validated when the configuration loads; an invalid value raises :class:`ConfigError`
whose message names the field (its dotted path, e.g. ``extra.scoring.max_objects``), the value received
and the allowed values. JSON values are taken as typed: ``"false"`` is not a boolean and ``"5"`` is not
a number. Environment variables are text by nature: there ``true``/``false`` and decimal numbers are
parsed, nothing else.

Settings beyond the top-level fields live in declared sections of ``extra``:

``extra.scoring``          :class:`ScoringSettings` (scoring DAGs and the Lambda handler)
``extra.sagemaker``        :class:`SageMakerSettings` (aws training, transform, rollout, registry)
``extra.hyperparameters``  IP Insights hyperparameters over the seed's defaults (numbers, validated
                           by :class:`~seclake_ml.ipinsights.hyperparams.IPInsightsHyperparameters`)

Unknown sections and unknown or misspelt keys are errors that list the allowed ones.
:func:`config_fields` lists every setting with its type, default, allowed values and description.
No other module of the package reads environment variables for settings.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

BACKENDS = ("local", "aws")
SOURCE_VERSIONS = (1, 2)
ENV_JSON = "SECLAKE_ML_CONFIG"
ENV_PREFIX = "SECLAKE_ML_"
VARIABLE_KEY = "seclake_ml_config"

# Every identifier pattern is applied with ``fullmatch`` (``$`` would let a trailing newline through).
_ACCOUNT_RE = re.compile(r"\d{12}|external(_[A-Za-z0-9]{1,32})?")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_GLUE_DB_RE = re.compile(r"[a-z0-9_]{1,255}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_WORKGROUP_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_S3_URI_RE = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/=-]*)?")
_MEMORY_RE = re.compile(r"[1-9][0-9]{0,6}(\.[0-9]{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
# SQS queue URLs: the regional endpoint, a VPC endpoint, or a local emulator (http://127.0.0.1:port/...).
_SQS_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?")
_SNS_ARN_RE = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]{1,32}:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
_ROLE_ARN_RE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_SSM_PATH_RE = re.compile(r"(/[A-Za-z0-9_.-]+)+")
_INSTANCE_RE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
_IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}(:[0-9]{1,5})?/[a-z0-9._/-]{1,255}(:[A-Za-z0-9._-]{1,128}|@sha256:[0-9a-f]{64})?")
_ALARM_RE = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_LOCATION_RE = re.compile(r"[^\x00-\x1f\x7f]{1,4096}")


class ConfigError(ValueError):
    """A configuration field is missing or invalid; the message names the field."""


def _err(name: str, value: Any, allowed: str) -> ConfigError:
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return ConfigError(f"config field '{name}': got {shown}; allowed: {allowed}")


# ----------------------------------------------------------------------------- declared settings
@dataclass(frozen=True)
class Setting:
    """Declaration of one setting: its type, default, allowed values and meaning.

    :param kind: ``bool``, ``int``, ``number`` (int or float), ``text``, ``text_list`` or ``choice_map``.
    :param default: value when the setting is absent (or ``null``).
    :param doc: one line on what the setting does.
    :param low: inclusive lower bound (numbers).
    :param high: inclusive upper bound (numbers).
    :param pattern: full-match pattern (text, and each item of a text list).
    :param shape: the allowed values in words, used in error messages.
    :param optional: ``null`` (``None``) is allowed and means "not set".
    :param max_items: most items of a text list.
    :param choices: the allowed values of each entry of a ``choice_map`` (a JSON object whose keys
        are registered source names, see :mod:`seclake_ml.sources`).
    """

    kind: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    pattern: re.Pattern[str] | None = None
    shape: str = ""
    optional: bool = False
    max_items: int = 100
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words (for errors and the configuration reference)."""
        if self.kind == "choice_map":
            text = (f"a JSON object of source name ({self.shape}) to one of "
                    f"{' | '.join(self.choices)}")
        elif self.kind == "bool":
            text = "true | false (JSON booleans, not strings)"
        elif self.kind in ("int", "number"):
            what = "an integer" if self.kind == "int" else "a number"
            high = "" if self.high is None else _num(self.high)
            text = f"{what} {_num(self.low)}..{high} (a JSON number, not a string)"
        elif self.kind == "text_list":
            text = f"a list of at most {self.max_items} strings" + (f", each {self.shape}" if self.shape else "")
        else:
            text = self.shape or "a string"
        return text + (" or null" if self.optional else "")

    def check(self, path: str, value: Any) -> Any:
        """``value`` validated (and normalised: lists become tuples); :class:`ConfigError` naming ``path``."""
        if value is None:
            if self.optional or self.default is None:
                return None
            return dict(self.default) if isinstance(self.default, dict) else self.default
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise _err(path, value, self.allowed())
            return value
        if self.kind in ("int", "number"):
            ok_types = (int,) if self.kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, ok_types):
                raise _err(path, value, self.allowed())
            if isinstance(value, float) and not math.isfinite(value):
                raise _err(path, value, self.allowed())
            if self.low is not None and value < self.low or self.high is not None and value > self.high:
                raise _err(path, value, self.allowed())
            return value
        if self.kind == "text_list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) > self.max_items:
                raise _err(path, value, self.allowed())
            for item in value:
                if not isinstance(item, str) or self.pattern is not None and not self.pattern.fullmatch(item):
                    raise _err(path, item, self.allowed())
            return tuple(value)
        if self.kind == "choice_map":
            return self._check_choice_map(path, value)
        if not isinstance(value, str) or self.pattern is not None and not self.pattern.fullmatch(value):
            raise _err(path, value, self.allowed())
        return value

    def _check_choice_map(self, path: str, value: Any) -> dict[str, str]:
        from seclake_ml.sources import SOURCES

        if not isinstance(value, Mapping):
            raise _err(path, value, self.allowed())
        unknown = sorted(str(k) for k in value if k not in SOURCES)
        if unknown:
            raise ConfigError(f"unknown config field(s) {[f'{path}.{k}' for k in unknown]}; "
                              f"allowed in {path}: {sorted(SOURCES)}")
        for key, item in value.items():
            if item not in self.choices:
                raise _err(f"{path}.{key}", item, " | ".join(self.choices))
        return {str(k): str(v) for k, v in sorted(value.items())}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _declared(spec: Setting) -> Any:
    if isinstance(spec.default, dict):  # a mutable default: each instance gets its own copy
        return field(default_factory=lambda: dict(spec.default), metadata={"setting": spec})
    return field(default=spec.default, metadata={"setting": spec})


_LOCATION = "a local folder or s3://bucket/prefix (no control characters)"


@dataclass(frozen=True)
class ScoringSettings:
    """``extra.scoring``: settings of the scoring DAGs and the Lambda handler."""

    findings_location: str | None = _declared(Setting(
        "text", None, "root of the findings tree (default: the local lake root, or s3://<lake_bucket> on aws)",
        pattern=_LOCATION_RE, shape=_LOCATION, optional=True))
    queue_url: str | None = _declared(Setting(
        "text", None, "aws: the Security Lake subscriber SQS queue URL", pattern=_SQS_URL_RE,
        shape="an SQS queue URL https://<endpoint>/<12-digit account>/<queue name>", optional=True))
    sns_topic_arn: str | None = _declared(Setting(
        "text", None, "aws: SNS topic for severe findings (locally: the log and <work>/scoring/alerts/severe.jsonl)",
        pattern=_SNS_ARN_RE, shape="an SNS topic ARN", optional=True))
    publish_min_severity: int = _declared(Setting(
        "int", 4, "OCSF severity_id from which a finding is published (4 = High)", low=1, high=6))
    severity_scale: float = _declared(Setting(
        "number", 1.0, "anomaly-score distance past the threshold that counts as one severity band",
        low=1e-6, high=1e6))
    chunk_rows: int = _declared(Setting(
        "int", 250_000, "rows per read of an object (whole row groups) and most distinct pairs per scorer call",
        low=1, high=10_000_000))
    read_ahead: int = _declared(Setting(
        "int", 2, "objects read at the same time, each in a background thread, while earlier ones are scored "
        "and written; at most (read_ahead + 1) * 2 chunks are held, against 1 with 0 (read in the scoring "
        "thread)", low=0, high=16))
    max_objects: int = _declared(Setting(
        "int", 200, "most objects per batch (lake listings and queue messages alike)", low=1, high=100_000))
    settle_seconds: float = _declared(Setting(
        "number", 0, "local: ignore objects modified less than this many seconds ago", low=0, high=86_400))
    max_object_attempts: int = _declared(Setting(
        "int", 5, "failed attempts after which an object is quarantined", low=1, high=100))
    max_model_attempts: int = _declared(Setting(
        "int", 3, "failed loads of a batch's pinned model after which the batch is re-pinned to the active model",
        low=1, high=100))
    adopt_existing: bool = _declared(Setting(
        "bool", True, "local: on an empty ledger, record the lake's objects as history instead of scoring them"))
    endpoint_name: str | None = _declared(Setting(
        "text", None, "aws: the endpoint whose active record is read (default: the rollout's)",
        pattern=_ENDPOINT_RE, shape="a SageMaker endpoint name (1-63 letters, digits, '-')", optional=True))
    duckdb_memory: str = _declared(Setting(
        "text", "1GB", "DuckDB memory limit of the scoring engine", pattern=_MEMORY_RE,
        shape="a size such as 512MB or 2GB"))
    tmp_max_age_seconds: int = _declared(Setting(
        "int", 3600, "temporary files of interrupted findings writes older than this are removed", low=60,
        high=30 * 86_400))
    unknown_entities: dict[str, str] = _declared(Setting(
        "choice_map", {}, "per source, what happens to pairs of entities the model never saw: 'peers' "
        "(default) flags them when their IP is outside their peer group's known networks, 'ignore' keeps the "
        "earlier handling (local: counted only; aws: the endpoint's score)",
        shape="vpc_flow, route53, cloudtrail_signin, cloudtrail_api, ...", choices=("peers", "ignore")))
    drift_psi_max: float = _declared(Setting(
        "number", 0.25, "drift bound: population stability index of a batch's scores against the calibration "
        "set's known-normal scores (0.1 = moderate shift, 0.25 = large)", low=0.01, high=100))
    drift_unknown_rate_max: float = _declared(Setting(
        "number", 0.2, "drift bound: share of a batch's distinct pairs whose entity the model never saw", low=0.0, high=1.0))
    drift_findings_per_thousand_max: float = _declared(Setting(
        "number", 50.0, "drift bound: findings (not suppressed) per 1,000 distinct scored pairs; 50 = one "
        "pair in twenty flagged, a flood rather than an incident", low=0.0, high=1000.0))
    drift_min_pairs: int = _declared(Setting(
        "int", 1000, "batches with fewer distinct scored pairs are measured but never judged", low=1, high=100_000_000))
    retrain_min_hours: float = _declared(Setting(
        "number", 24.0, "drift-triggered retraining happens at most once in this many hours", low=0.0,
        high=24 * 366))


@dataclass(frozen=True)
class SageMakerSettings:
    """``extra.sagemaker``: settings of the aws training, Batch Transform, rollout and registry."""

    resource_prefix: str = _declared(Setting(
        "text", "seclake-ml", "prefix of every SageMaker resource name (IAM grants <prefix>-* only)",
        pattern=_PREFIX_RE, shape="1-16 lower-case letters, digits and single '-', starting with a letter"))
    role_arn: str | None = _declared(Setting(
        "text", None, "SageMaker execution role ARN", pattern=_ROLE_ARN_RE, shape="an IAM role ARN", optional=True))
    image_uri: str | None = _declared(Setting(
        "text", None, "IP Insights image overriding the built-in table (e.g. a private mirror)",
        pattern=_IMAGE_RE, shape="a container image URI <registry>/<repository>[:tag]", optional=True))
    ssm_path: str = _declared(Setting(
        "text", "/seclake-ml/ipinsights", "SSM parameter path of the model registry", pattern=_SSM_PATH_RE,
        shape="/segment[/segment...] of letters, digits, '_', '.', '-'"))
    training_instance_type: str = _declared(Setting(
        "text", "ml.m5.large", "training job instance type", pattern=_INSTANCE_RE, shape="ml.<family>.<size>"))
    transform_instance_type: str = _declared(Setting(
        "text", "ml.m5.large", "Batch Transform instance type", pattern=_INSTANCE_RE, shape="ml.<family>.<size>"))
    endpoint_instance_type: str = _declared(Setting(
        "text", "ml.m5.large", "endpoint instance type", pattern=_INSTANCE_RE, shape="ml.<family>.<size>"))
    alarms: tuple[str, ...] = _declared(Setting(
        "text_list", (), "CloudWatch alarm names that roll an endpoint update back", pattern=_ALARM_RE,
        shape="an alarm name (1-255 characters)", max_items=10))


_GEO_PROVIDER_RE = re.compile(r"auto|maxmind|fallback|none")


@dataclass(frozen=True)
class RiskConfig:
    """``extra.risk``: settings of the CloudTrail risk detector (:mod:`seclake_ml.risk`)."""

    lookback_days: int = _declared(Setting(
        "int", 14, "days of history each event's principal and account are compared with", low=1, high=366))
    min_labels: int = _declared(Setting(
        "int", 200, "labelled events a fit needs before the supervised model replaces the unsupervised score",
        low=20, high=10_000_000))
    sensitive_operations: str | None = _declared(Setting(
        "text", None, "a JSON file replacing the packaged sensitive-operation catalogue", pattern=_LOCATION_RE,
        shape="a local file path", optional=True))
    geoip_provider: str = _declared(Setting(
        "text", "auto", "GeoIP source: auto (MaxMind files when configured, else the bundled data), maxmind, "
        "fallback, none", pattern=_GEO_PROVIDER_RE, shape="auto | maxmind | fallback | none"))
    geoip_country_db: str | None = _declared(Setting(
        "text", None, "MaxMind-format country (or City, or ipinfo lite) .mmdb file", pattern=_LOCATION_RE,
        shape="a local file path", optional=True))
    geoip_asn_db: str | None = _declared(Setting(
        "text", None, "MaxMind-format ASN .mmdb file", pattern=_LOCATION_RE, shape="a local file path", optional=True))
    data_event_sources: tuple[str, ...] = _declared(Setting(
        "text_list", ("S3_DATA", "LAMBDA_EXECUTION"), "CloudTrail data-event sources of the lake also risk-scored "
        "(local backend: read where the lake has them; aws: management events only for now)",
        pattern=re.compile(r"S3_DATA|LAMBDA_EXECUTION"), shape="S3_DATA | LAMBDA_EXECUTION", max_items=2))
    combination: str = _declared(Setting(
        "text", "floor", "with a supervised model: 'floor' = the larger of its score and the unsupervised score, "
        "'supervised' = its score alone", pattern=re.compile(r"floor|supervised"), shape="floor | supervised"))
    top_findings: int = _declared(Setting(
        "int", 10, "riskiest events printed per scored window (CLI) and logged per scored batch", low=1, high=10_000))
    finding_min_risk: float = _declared(Setting(
        "number", 60, "risk (0-100) from which a scored CloudTrail event becomes a finding", low=0, high=100))


SECTIONS: dict[str, type] = {"scoring": ScoringSettings, "sagemaker": SageMakerSettings, "risk": RiskConfig}
HYPERPARAMETERS_SECTION = "hyperparameters"


def _section(cls: type, raw: Any, path: str) -> Any:
    """An instance of section ``cls`` from its JSON object, every key declared and checked."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _err(path, raw, "a JSON object")
    declared = {f.name: f.metadata["setting"] for f in fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in declared)
    if unknown:
        raise ConfigError(f"unknown config field(s) {[f'{path}.{k}' for k in unknown]}; "
                          f"allowed in {path}: {sorted(declared)}")
    return cls(**{name: spec.check(f"{path}.{name}", raw.get(name)) for name, spec in declared.items()})


def _hyperparameters(raw: Any, path: str) -> dict[str, int | float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _err(path, raw, "a JSON object of hyperparameter names to numbers")
    from seclake_ml.ipinsights.hyperparams import HYPERPARAMETER_RANGES, IPInsightsHyperparameters

    unknown = sorted(str(k) for k in raw if k not in HYPERPARAMETER_RANGES)
    if unknown:
        raise ConfigError(f"unknown config field(s) {[f'{path}.{k}' for k in unknown]}; "
                          f"allowed in {path}: {sorted(HYPERPARAMETER_RANGES)}")
    out: dict[str, int | float] = {}
    for name, value in raw.items():
        kind, low, high = HYPERPARAMETER_RANGES[name]
        spec = Setting("int" if kind is int else "number", None, "", low=low,
                       high=None if high == math.inf else high)
        out[name] = spec.check(f"{path}.{name}", value)
    try:
        IPInsightsHyperparameters.from_dict(out)
    except ValueError as exc:
        raise ConfigError(f"config field '{path}': {exc}") from None
    return out


@dataclass(frozen=True)
class SeclakeConfig:
    """Validated settings shared by the DAGs, operators and CLI.

    :param backend: ``local`` (DuckDB over a local Security Lake tree) or ``aws`` (Athena over Glue).
    :param lake_root: local backend: folder holding ``aws/<SOURCE>/<version>/region=…/accountId=…/eventDay=…``.
    :param glue_database: aws backend: Security Lake Glue database; derived from ``region`` when empty.
    :param region: AWS region of the lake (also names the Glue tables).
    :param lake_bucket: aws backend: Security Lake bucket (used for IAM scoping and findings).
    :param athena_workgroup: Athena workgroup for queries.
    :param source_version: Security Lake source version, 1 (OCSF 1.0.0-rc.2) or 2 (OCSF 1.1.0).
    :param sources: enabled ``source:view`` pairs, e.g. ``vpc_flow:instance_peer``; a bare source name
        enables that source's default view.
    :param accounts: only these account ids (empty = all).
    :param regions: only these regions (empty = all).
    :param work_location: where outputs go: a local folder or an ``s3://bucket/prefix`` URI.
    :param dedupe: drop repeated ``(entity, ip)`` pairs within one extraction, keeping the first time seen.
    :param duckdb_memory: DuckDB memory limit of local extraction and training-data preparation.
    :param extra: the declared sections ``scoring``, ``sagemaker`` and ``hyperparameters`` (see the
        module docstring); read them typed through :attr:`scoring`, :attr:`sagemaker` and
        :attr:`hyperparameters`.
    """

    backend: str = "local"
    lake_root: str = "var/lake"
    glue_database: str = ""
    region: str = "us-east-1"
    lake_bucket: str = ""
    athena_workgroup: str = "primary"
    source_version: int = 1
    sources: tuple[str, ...] = ("vpc_flow:instance_peer", "cloudtrail_signin:principal_ip")
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    work_location: str = "var/work"
    dedupe: bool = False
    duckdb_memory: str = "4GB"
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived
    @property
    def glue_db(self) -> str:
        return self.glue_database or f"amazon_security_lake_glue_db_{self.region.replace('-', '_')}"

    @property
    def scoring(self) -> ScoringSettings:
        """The validated ``extra.scoring`` section (defaults filled in)."""
        return self.__dict__["_scoring"]

    @property
    def risk(self) -> RiskConfig:
        """The validated ``extra.risk`` section (defaults filled in)."""
        return self.__dict__["_risk"]

    @property
    def sagemaker(self) -> SageMakerSettings:
        """The validated ``extra.sagemaker`` section (defaults filled in)."""
        return self.__dict__["_sagemaker"]

    @property
    def hyperparameters(self) -> dict[str, int | float]:
        """The validated ``extra.hyperparameters`` (only the names given)."""
        return dict(self.__dict__["_hyperparameters"])

    @property
    def work_is_s3(self) -> bool:
        return self.work_location.startswith("s3://")

    def source_views(self) -> list[tuple[str, str]]:
        """Enabled ``(source, view)`` pairs, resolved against the registry (bare names take the default view)."""
        from seclake_ml.sources import resolve_source_view

        return [resolve_source_view(item) for item in self.sources]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        d["accounts"] = list(self.accounts)
        d["regions"] = list(self.regions)
        d["extra"] = dict(self.extra)
        return d

    # ------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise _err("backend", self.backend, " | ".join(BACKENDS))
        if self.source_version not in SOURCE_VERSIONS:
            raise _err("source_version", self.source_version, "1 (OCSF 1.0.0-rc.2) | 2 (OCSF 1.1.0)")
        if not _REGION_RE.fullmatch(self.region or ""):
            raise _err("region", self.region, "an AWS region name such as us-east-1")
        if self.glue_database and not _GLUE_DB_RE.fullmatch(self.glue_database):
            raise _err("glue_database", self.glue_database, "lower-case letters, digits and '_' (1-255)")
        if self.lake_bucket and not _BUCKET_RE.fullmatch(self.lake_bucket):
            raise _err("lake_bucket", self.lake_bucket, "an S3 bucket name (3-63 of a-z 0-9 . -)")
        if not _WORKGROUP_RE.fullmatch(self.athena_workgroup or ""):
            raise _err("athena_workgroup", self.athena_workgroup, "letters, digits, '.', '_', '-' (1-128)")
        for acct in self.accounts:
            if not isinstance(acct, str) or not _ACCOUNT_RE.fullmatch(acct):
                raise _err("accounts", acct, "12-digit account ids, 'external' or 'external_<id>'")
        for reg in self.regions:
            if not isinstance(reg, str) or not _REGION_RE.fullmatch(reg):
                raise _err("regions", reg, "AWS region names such as us-east-1")
        if not self.sources:
            raise _err("sources", list(self.sources), "at least one enabled source[:view]")
        from seclake_ml.sources import resolve_source_view

        for item in self.sources:
            try:
                resolve_source_view(item)
            except ValueError as exc:
                raise ConfigError(f"config field 'sources': {exc}") from None
        if not self.work_location:
            raise _err("work_location", self.work_location, "a local folder or s3://bucket/prefix")
        if self.work_location.startswith("s3://") and not _S3_URI_RE.fullmatch(self.work_location):
            raise _err("work_location", self.work_location, "s3://bucket/prefix with a valid bucket name")
        if self.backend == "local" and not self.lake_root:
            raise _err("lake_root", self.lake_root, "a local folder (required when backend is local)")
        if self.backend == "aws" and not self.work_is_s3:
            raise _err("work_location", self.work_location, "an s3://bucket/prefix URI when backend is aws")
        if not isinstance(self.dedupe, bool):
            raise _err("dedupe", self.dedupe, "true | false")
        if not isinstance(self.duckdb_memory, str) or not _MEMORY_RE.fullmatch(self.duckdb_memory):
            raise _err("duckdb_memory", self.duckdb_memory, "a size such as 512MB or 4GB")
        self._check_extra()

    def _check_extra(self) -> None:
        extra = self.extra if self.extra is not None else {}
        if not isinstance(extra, Mapping):
            raise _err("extra", extra, "a JSON object")
        allowed = sorted([*SECTIONS, HYPERPARAMETERS_SECTION])
        unknown = sorted(str(k) for k in extra if k not in allowed)
        if unknown:
            raise ConfigError(f"unknown config field(s) {[f'extra.{k}' for k in unknown]}; "
                              f"allowed in extra: {allowed}")
        # Frozen: the typed sections are set once, here, next to the fields they come from.
        for name, cls in SECTIONS.items():
            object.__setattr__(self, f"_{name}", _section(cls, extra.get(name), f"extra.{name}"))
        object.__setattr__(self, "_hyperparameters",
                           _hyperparameters(extra.get(HYPERPARAMETERS_SECTION), f"extra.{HYPERPARAMETERS_SECTION}"))

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "SeclakeConfig":
        """Build from a mapping, rejecting unknown keys and coercing JSON-ish types with clear errors."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"configuration must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed fields: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in raw.items():
            kwargs[name] = _coerce(name, value)
        return cls(**kwargs)

    @classmethod
    def from_text_mapping(cls, raw: Mapping[str, str]) -> "SeclakeConfig":
        """Build from top-level fields given as text (environment variables): ``true``/``false`` and
        decimal numbers are parsed as for ``SECLAKE_ML_<FIELD>``; everything else as :meth:`from_mapping`."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"configuration must be a mapping, got {type(raw).__name__}")
        return cls.from_mapping({k: _from_text(k, v) if isinstance(v, str) else v for k, v in raw.items()})


_TUPLE_FIELDS = {"sources", "accounts", "regions"}


def _coerce(name: str, value: Any) -> Any:
    """A JSON value checked for the field's type (no strings for booleans or numbers)."""
    if name in _TUPLE_FIELDS:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _err(name, value, "a list of strings (or a comma-separated string)")
        return tuple(value)
    if name == "source_version":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _err(name, value, "1 | 2 (a JSON number)")
        return value
    if name == "dedupe":
        if not isinstance(value, bool):
            raise _err(name, value, "true | false (a JSON boolean)")
        return value
    if name == "extra":
        if not isinstance(value, Mapping):
            raise _err(name, value, "a JSON object")
        return dict(value)
    if not isinstance(value, str):
        raise _err(name, value, "a string")
    return value  # as given: "us-east-1\n" is refused by the field's pattern, not silently trimmed


def _from_text(name: str, text: str) -> Any:
    """An environment variable's text as the field's JSON type (``true``/``false``, decimal integers)."""
    value = text.strip()
    if name == "source_version":
        return int(value) if re.fullmatch(r"[0-9]{1,3}", value) else value
    if name == "dedupe":
        return {"true": True, "false": False}.get(value.lower(), value)
    return value


_TOP_DOCS: dict[str, tuple[str, str]] = {
    "backend": ("text", "local (DuckDB over a local lake folder) | aws (Athena, SageMaker)"),
    "lake_root": ("text", "local: folder holding aws/<SOURCE>/<version>/region=/accountId=/eventDay="),
    "glue_database": ("text", "aws: Security Lake Glue database (derived from region when empty)"),
    "region": ("text", "AWS region of the lake"),
    "lake_bucket": ("text", "aws: Security Lake bucket (IAM scoping, findings)"),
    "athena_workgroup": ("text", "Athena workgroup"),
    "source_version": ("int", "Security Lake source version: 1 (OCSF 1.0.0-rc.2) | 2 (OCSF 1.1.0)"),
    "sources": ("text_list", "enabled source[:view] pairs"),
    "accounts": ("text_list", "only these account ids (empty = all)"),
    "regions": ("text_list", "only these regions (empty = all)"),
    "work_location": ("text", "where outputs go: a local folder or s3://bucket/prefix"),
    "dedupe": ("bool", "drop repeated (entity, ip) pairs within one extraction"),
    "duckdb_memory": ("text", "DuckDB memory limit of local extraction and training-data preparation"),
}
_TOP_ALLOWED: dict[str, str] = {
    "backend": " | ".join(BACKENDS),
    "region": "an AWS region name such as us-east-1",
    "glue_database": "lower-case letters, digits and '_' (1-255)",
    "lake_bucket": "an S3 bucket name (3-63 of a-z 0-9 . -)",
    "athena_workgroup": "letters, digits, '.', '_', '-' (1-128)",
    "source_version": "1 | 2",
    "sources": "source or source:view names of the registry (seclake_ml.sources)",
    "accounts": "12-digit account ids, 'external' or 'external_<id>'",
    "regions": "AWS region names",
    "work_location": "a local folder, or s3://bucket/prefix (required when backend is aws)",
    "dedupe": "true | false",
    "duckdb_memory": "a size such as 512MB or 4GB",
}


def config_fields() -> Iterator[tuple[str, str, Any, str, str]]:
    """Every setting of the configuration, for a generated reference.

    Yields ``(dotted name, type, default, allowed values, description)`` in declaration order: the
    top-level fields, then each ``extra`` section's settings (``extra.scoring.max_objects``, ...).
    ``extra.hyperparameters.<name>`` entries carry no default (the engine's defaults apply).
    """
    for f in fields(SeclakeConfig):
        if f.name == "extra":
            continue
        kind, doc = _TOP_DOCS[f.name]
        default = f.default if f.default_factory is MISSING else f.default_factory()
        yield f.name, kind, default, _TOP_ALLOWED.get(f.name, "a string"), doc
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            spec: Setting = f.metadata["setting"]
            yield f"extra.{section}.{f.name}", spec.kind, spec.default, spec.allowed(), spec.doc
    from seclake_ml.ipinsights.hyperparams import HYPERPARAMETER_RANGES

    for name, (kind, low, high) in HYPERPARAMETER_RANGES.items():
        spec = Setting("int" if kind is int else "number", None, "", low=low, high=None if high == math.inf else high)
        yield (f"extra.{HYPERPARAMETERS_SECTION}.{name}", spec.kind, None, spec.allowed(),
               "IP Insights hyperparameter over the seed's default")


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    variable_json: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SeclakeConfig:
    """Load and validate the configuration.

    :param overrides: fields that win over everything else.
    :param variable_json: the Airflow Variable's JSON text, when the caller has read it.
    :param environ: environment to read (defaults to ``os.environ``).
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    text = variable_json if variable_json is not None else env.get(ENV_JSON)
    if text:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"configuration JSON is not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"configuration JSON must be an object, got {type(parsed).__name__}")
        raw.update(parsed)
    known = {f.name for f in fields(SeclakeConfig)} - {"extra"}
    for name in sorted(known):
        key = ENV_PREFIX + name.upper()
        if key in env and key != ENV_JSON:
            raw[name] = _from_text(name, env[key])
    if overrides:
        raw.update({k: v for k, v in overrides.items() if v is not None})
    return SeclakeConfig.from_mapping(raw)


RETRY_DELAY_ENV = "SECLAKE_ML_RETRY_DELAY_SECONDS"


def retry_delay_seconds(environ: Mapping[str, str] | None = None) -> int | None:
    """The DAGs' retry delay from ``SECLAKE_ML_RETRY_DELAY_SECONDS`` (0-86400), ``None`` when unset.

    Read while DAG files are parsed, so it is an environment variable rather than a field of the
    configuration (which tasks read when they run).

    :param environ: environment to read (defaults to ``os.environ``).
    """
    env = os.environ if environ is None else environ
    raw = env.get(RETRY_DELAY_ENV, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,5}", raw) or int(raw) > 86400:
        raise ValueError(f"{RETRY_DELAY_ENV}: got {raw[:40]!r}; expected a whole number of seconds (0-86400)")
    return int(raw)


def resolve_local(path: str, base: str | os.PathLike[str] | None = None) -> Path:
    """Resolve a relative local path against ``base`` (default: the current directory)."""
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    return p.resolve()
