"""One validated configuration for the whole package.

The configuration is a JSON object. It is read, in this order of precedence, from:

1. an explicit mapping passed by the caller (tests, CLI),
2. the Airflow Variable ``seclake_ml_config`` (operators pass its value in; this module never imports
   Airflow), or the environment variable ``SECLAKE_ML_CONFIG`` holding the same JSON,
3. individual environment variables ``SECLAKE_ML_<FIELD>`` (upper case) that override single fields.

Every field is validated; an invalid value raises :class:`ConfigError` whose message names the field,
the value received and the allowed values.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

BACKENDS = ("local", "aws")
SOURCE_VERSIONS = (1, 2)
ENV_JSON = "SECLAKE_ML_CONFIG"
ENV_PREFIX = "SECLAKE_ML_"
VARIABLE_KEY = "seclake_ml_config"

_ACCOUNT_RE = re.compile(r"^(\d{12}|external(_[A-Za-z0-9]{1,32})?)$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_GLUE_DB_RE = re.compile(r"^[a-z0-9_]{1,255}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_WORKGROUP_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/=-]*)?$")


class ConfigError(ValueError):
    """A configuration field is missing or invalid; the message names the field."""


def _err(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config field '{name}': got {value!r}; allowed: {allowed}")


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
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived
    @property
    def glue_db(self) -> str:
        return self.glue_database or f"amazon_security_lake_glue_db_{self.region.replace('-', '_')}"

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
        if not _REGION_RE.match(self.region or ""):
            raise _err("region", self.region, "an AWS region name such as us-east-1")
        if self.glue_database and not _GLUE_DB_RE.match(self.glue_database):
            raise _err("glue_database", self.glue_database, "lower-case letters, digits and '_' (1-255)")
        if self.lake_bucket and not _BUCKET_RE.match(self.lake_bucket):
            raise _err("lake_bucket", self.lake_bucket, "an S3 bucket name (3-63 of a-z 0-9 . -)")
        if not _WORKGROUP_RE.match(self.athena_workgroup or ""):
            raise _err("athena_workgroup", self.athena_workgroup, "letters, digits, '.', '_', '-' (1-128)")
        for acct in self.accounts:
            if not isinstance(acct, str) or not _ACCOUNT_RE.match(acct):
                raise _err("accounts", acct, "12-digit account ids, 'external' or 'external_<id>'")
        for reg in self.regions:
            if not isinstance(reg, str) or not _REGION_RE.match(reg):
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
        if self.work_location.startswith("s3://") and not _S3_URI_RE.match(self.work_location):
            raise _err("work_location", self.work_location, "s3://bucket/prefix with a valid bucket name")
        if self.backend == "local" and not self.lake_root:
            raise _err("lake_root", self.lake_root, "a local folder (required when backend is local)")
        if self.backend == "aws" and not self.work_is_s3:
            raise _err("work_location", self.work_location, "an s3://bucket/prefix URI when backend is aws")

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


_TUPLE_FIELDS = {"sources", "accounts", "regions"}


def _coerce(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _err(name, value, "a list of strings (or a comma-separated string)")
        return tuple(value)
    if name == "source_version":
        if isinstance(value, bool):
            raise _err(name, value, "1 | 2")
        try:
            return int(str(value).strip())
        except ValueError:
            raise _err(name, value, "1 | 2") from None
    if name == "dedupe":
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off", ""):
            return False
        raise _err(name, value, "true | false")
    if name == "extra":
        if not isinstance(value, Mapping):
            raise _err(name, value, "a JSON object")
        return dict(value)
    if not isinstance(value, str):
        raise _err(name, value, "a string")
    return value.strip()


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
    for name in known:
        key = ENV_PREFIX + name.upper()
        if key in env and key != ENV_JSON:
            raw[name] = env[key]
    if overrides:
        raw.update({k: v for k, v in overrides.items() if v is not None})
    return SeclakeConfig.from_mapping(raw)


def resolve_local(path: str, base: str | os.PathLike[str] | None = None) -> Path:
    """Resolve a relative local path against ``base`` (default: the current directory)."""
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    return p.resolve()
