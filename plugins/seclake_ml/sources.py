"""OCSF source registry: where each Security Lake source lives and how it becomes ``(entity, ip)`` pairs.

Each :class:`SourceSpec` knows, per source version (1 = OCSF 1.0.0-rc.2, 2 = OCSF 1.1.0), its Glue table
suffix, its S3 prefix, the OCSF ``class_uid`` of the rows it contributes, and its *pair views*.

A :class:`PairView` is written as SQL expressions in which every column reference is a placeholder
``{a.b.c}``. The query layer resolves each placeholder against the schema it actually finds: a column
that is absent (schema drift, an older writer) becomes a typed ``NULL`` instead of failing the query.
The expressions use only SQL that DuckDB and Athena (Trino) share: ``CASE``, ``coalesce``, ``||``,
struct field access and comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\}")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PairView:
    """How one source's rows become ``(entity, ip)`` pairs.

    :param name: view name, unique within its source.
    :param description: one line for humans.
    :param entity: per source version, SQL expression for the entity (with ``{column.path}`` placeholders).
    :param ip: per source version, SQL expression for the IP.
    :param where: per source version, extra row filter (``TRUE`` when none).
    :param unnest: optional ``(list column, alias)``: the view reads one row per list element; the
        element's fields are referenced as ``{alias.field}``.
    :param context: optional ``(name, {version: DuckDB expression})``: a categorical value kept beside
        the pair when new objects are scored (the S3 bucket a principal touched) and written into the
        finding; it is not part of the model's input. When a column it references is absent, it is NULL.
    """

    name: str
    description: str
    entity: dict[int, str]
    ip: dict[int, str]
    where: dict[int, str] = field(default_factory=lambda: {1: "TRUE", 2: "TRUE"})
    unnest: tuple[str, str] | None = None
    context: tuple[str, dict[int, str]] | None = None

    def columns(self, version: int) -> list[str]:
        """Column paths referenced by this view for ``version`` (in first-seen order)."""
        seen: dict[str, None] = {}
        exprs = [self.entity[version], self.ip[version], self.where[version]]
        if self.context:
            exprs.append(self.context[1][version])
        for expr in exprs:
            for m in _PLACEHOLDER_RE.finditer(expr):
                seen.setdefault(m.group(1), None)
        return list(seen)


@dataclass(frozen=True)
class SourceSpec:
    """One Security Lake source.

    :param name: our name for it (``vpc_flow``, ``route53``, ``cloudtrail_signin``, ``cloudtrail_api``,
        ``s3_data``, ``lambda_execution``).
    :param lake_source: the S3 folder name under ``aws/`` (``VPC_FLOW``, ``ROUTE53``, ``CLOUD_TRAIL_MGMT``,
        ``S3_DATA``, ``LAMBDA_EXECUTION``).
    :param table_source: the Glue table's source part (``vpc_flow``, ``route53``, ``cloud_trail_mgmt``,
        ``s3_data``, ``lambda_execution``).
    :param class_uid: per source version, the OCSF class of the rows this source contributes.
    :param class_filter: per source version, extra filter selecting those rows in a shared table.
    :param views: the pair views, the first one being the default.
    """

    name: str
    lake_source: str
    table_source: str
    class_uid: dict[int, int]
    views: tuple[PairView, ...]
    class_filter: dict[int, str] = field(default_factory=lambda: {1: "TRUE", 2: "TRUE"})

    def table_name(self, version: int, region: str) -> str:
        return f"amazon_security_lake_table_{region.replace('-', '_')}_{self.table_source}_{version}_0"

    def s3_prefix(self, version: int) -> str:
        return f"aws/{self.lake_source}/{version}.0"

    def view(self, name: str) -> PairView:
        for v in self.views:
            if v.name == name:
                return v
        allowed = ", ".join(v.name for v in self.views)
        raise ValueError(f"unknown view {name!r} for source {self.name!r}; allowed: {allowed}")

    @property
    def default_view(self) -> PairView:
        return self.views[0]

    @staticmethod
    def time_column(version: int) -> str:
        """The event-time column: ``time`` (epoch ms) in version 1, ``time_dt`` (timestamp) in version 2."""
        return "time" if version == 1 else "time_dt"


def _both(expr: str) -> dict[int, str]:
    return {1: expr, 2: expr}


# ----------------------------------------------------------------------------- VPC flow
_VPC_PEER_ENTITY = (
    "CASE WHEN {connection_info.direction_id} = 1 THEN {dst_endpoint.instance_uid} "
    "WHEN {connection_info.direction_id} = 2 THEN {src_endpoint.instance_uid} "
    "ELSE coalesce({src_endpoint.instance_uid}, {dst_endpoint.instance_uid}) END"
)
_VPC_PEER_IP = (
    "CASE WHEN {connection_info.direction_id} = 1 THEN {src_endpoint.ip} "
    "WHEN {connection_info.direction_id} = 2 THEN {dst_endpoint.ip} "
    "WHEN {src_endpoint.instance_uid} IS NOT NULL THEN {dst_endpoint.ip} "
    "ELSE {src_endpoint.ip} END"
)
_VPC_OWN_ENTITY = _VPC_PEER_ENTITY
_VPC_OWN_IP = (
    "CASE WHEN {connection_info.direction_id} = 1 THEN {dst_endpoint.ip} "
    "WHEN {connection_info.direction_id} = 2 THEN {src_endpoint.ip} "
    "WHEN {src_endpoint.instance_uid} IS NOT NULL THEN {src_endpoint.ip} "
    "ELSE {dst_endpoint.ip} END"
)

VPC_FLOW = SourceSpec(
    name="vpc_flow",
    lake_source="VPC_FLOW",
    table_source="vpc_flow",
    class_uid={1: 4001, 2: 4001},
    views=(
        PairView(
            name="instance_peer",
            description="instance ↔ the remote IP it talks to (direction-aware: inbound flows carry the "
            "instance on dst_endpoint, so the peer is the source)",
            entity=_both(_VPC_PEER_ENTITY),
            ip=_both(_VPC_PEER_IP),
        ),
        PairView(
            name="instance_src_ip",
            description="instance ↔ its own source IP, as the workshop notebook queried it "
            "(src_endpoint.instance_uid, src_endpoint.ip)",
            entity=_both("{src_endpoint.instance_uid}"),
            ip=_both("{src_endpoint.ip}"),
        ),
        PairView(
            name="instance_own_ip",
            description="instance ↔ its own address on whichever side of the flow it sits (direction-aware)",
            entity=_both(_VPC_OWN_ENTITY),
            ip=_both(_VPC_OWN_IP),
        ),
    ),
)

# ----------------------------------------------------------------------------- Route 53
ROUTE53 = SourceSpec(
    name="route53",
    lake_source="ROUTE53",
    table_source="route53",
    class_uid={1: 4003, 2: 4003},
    views=(
        PairView(
            name="instance_resolved_ip",
            description="querying instance (else its source IP) ↔ each IPv4 address in the A answers",
            entity=_both("coalesce({src_endpoint.instance_uid}, {src_endpoint.ip})"),
            ip=_both("{ans.rdata}"),
            where=_both("{ans.type} = 'A'"),
            unnest=("answers", "ans"),
        ),
        PairView(
            name="instance_src_ip",
            description="instance ↔ its own source IP of the DNS query, as the workshop notebook queried it",
            entity=_both("{src_endpoint.instance_uid}"),
            ip=_both("{src_endpoint.ip}"),
        ),
    ),
)


# ----------------------------------------------------------------------------- CloudTrail
def _principal(version: int) -> str:
    """Principal ARN with fallbacks.

    v1 keeps the ARN in ``actor.user.uuid``, v2 in ``actor.user.uid``. When it is null (failed
    console sign-ins, some federated calls) an IAM user or root ARN is rebuilt from the account and the
    user name; otherwise the principal id is used, so the row still has a stable entity.
    """
    if version == 1:
        arn, acct, pid = "{actor.user.uuid}", "{actor.user.account_uid}", "{actor.user.uid}"
    else:
        arn, acct, pid = "{actor.user.uid}", "{actor.user.account.uid}", "{actor.user.uid_alt}"
    return (
        f"coalesce({arn}, "
        f"CASE WHEN {{actor.user.type}} = 'IAMUser' AND {acct} IS NOT NULL AND {{actor.user.name}} IS NOT NULL "
        f"THEN 'arn:aws:iam::' || {acct} || ':user/' || {{actor.user.name}} "
        f"WHEN {{actor.user.type}} = 'Root' AND {acct} IS NOT NULL THEN 'arn:aws:iam::' || {acct} || ':root' "
        f"END, {pid})"
    )


_PRINCIPAL = {1: _principal(1), 2: _principal(2)}

CLOUDTRAIL_SIGNIN = SourceSpec(
    name="cloudtrail_signin",
    lake_source="CLOUD_TRAIL_MGMT",
    table_source="cloud_trail_mgmt",
    class_uid={1: 3002, 2: 3002},
    class_filter=_both("{class_uid} = 3002 AND {api.operation} = 'ConsoleLogin'"),
    views=(
        PairView(
            name="principal_ip",
            description="principal ARN ↔ source IP of the console sign-in",
            entity=_PRINCIPAL,
            ip=_both("{src_endpoint.ip}"),
        ),
    ),
)

# API Activity: class 3005 in OCSF 1.0.0-rc.2 (version 1), 6003 in OCSF 1.1.0 (version 2)
_API_ACTIVITY = {1: 3005, 2: 6003}


def _api_activity_source(name: str, lake_source: str, table_source: str, description: str,
                         context: tuple[str, dict[int, str]] | None = None) -> SourceSpec:
    """A source of CloudTrail API Activity rows with the ``principal_ip`` view (principal ARN ↔ source IP)."""
    return SourceSpec(
        name=name,
        lake_source=lake_source,
        table_source=table_source,
        class_uid=dict(_API_ACTIVITY),
        class_filter={v: f"{{class_uid}} = {uid}" for v, uid in _API_ACTIVITY.items()},
        views=(
            PairView(name="principal_ip", description=description, entity=_PRINCIPAL,
                     ip=_both("{src_endpoint.ip}"), context=context),
        ),
    )


def _first_resource(resource_type: str) -> dict[int, str]:
    """DuckDB expression: the uid of the row's first resource of ``resource_type`` (NULL when none)."""
    return _both(f"list_filter({{resources}}, lambda r: r.type = '{resource_type}')[1].uid")


CLOUDTRAIL_API = _api_activity_source(
    "cloudtrail_api", "CLOUD_TRAIL_MGMT", "cloud_trail_mgmt",
    "principal ARN ↔ source IP of the API call (AWS service principals carry a domain, not an IP, and "
    "are dropped as null)",
)

# ----------------------------------------------------------------------------- CloudTrail data events
# S3 object-level and Lambda invoke calls are API Activity rows in tables of their own (s3_data_*,
# lambda_execution_*). The resource list names the bucket or function, kept as the finding's context.
S3_DATA = _api_activity_source(
    "s3_data", "S3_DATA", "s3_data",
    "principal ARN ↔ source IP of the S3 object-level call (bucket listing, reads, writes); the bucket "
    "is kept as the finding's context",
    context=("bucket", _first_resource("AWS::S3::Bucket")),
)

LAMBDA_EXECUTION = _api_activity_source(
    "lambda_execution", "LAMBDA_EXECUTION", "lambda_execution",
    "principal ARN ↔ source IP of the Lambda Invoke call (invokes by AWS services carry a domain, not an "
    "IP, and are dropped as null); the function is kept as context",
    context=("function", _first_resource("AWS::Lambda::Function")),
)

SOURCES: dict[str, SourceSpec] = {
    s.name: s for s in (VPC_FLOW, ROUTE53, CLOUDTRAIL_SIGNIN, CLOUDTRAIL_API, S3_DATA, LAMBDA_EXECUTION)
}


def get_source(name: str) -> SourceSpec:
    """The registered source ``name``; a :class:`ValueError` names the allowed sources otherwise."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name not in SOURCES:
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}…"
        raise ValueError(f"unknown source {shown!r}; allowed: {', '.join(SOURCES)}")
    return SOURCES[name]


def resolve_source_view(item: str) -> tuple[str, str]:
    """Parse ``source`` or ``source:view`` into a validated ``(source, view)`` pair."""
    if not isinstance(item, str):
        raise ValueError(f"source entry must be a string, got {type(item).__name__}")
    source_name, _, view_name = item.partition(":")
    spec = get_source(source_name.strip())
    view = spec.view(view_name.strip()) if view_name else spec.default_view
    return spec.name, view.name


def placeholders(expr: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER_RE.finditer(expr)]


def substitute(expr: str, mapping: dict[str, str]) -> str:
    """Replace every ``{path}`` placeholder in ``expr`` using ``mapping`` (which must cover all of them)."""
    return _PLACEHOLDER_RE.sub(lambda m: mapping[m.group(1)], expr)
