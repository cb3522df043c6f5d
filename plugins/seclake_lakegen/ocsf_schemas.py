"""Arrow schemas of the Security Lake tables this package reads and the sample generator writes.

Source version 1 (OCSF 1.0.0-rc.2) schemas are written to be *equal* to the Parquet files AWS's own
Security Lake pipeline produces: same column names and order, same types, same nullability, nested
structs, ``list<array: …>`` lists and the ``unmapped`` ``map<string, string>``. That writer derives its
Parquet schema from Avro records, so every struct is required (``not null``) and only leaves may be
null. Two CloudTrail classes share the ``cloud_trail_mgmt`` table but have different row shapes
(Authentication 3002 carries ``dst_endpoint``, ``user`` and ``mfa``; API Activity 3005 carries
``resources``), so each class has its own schema and is written to its own files.

Source version 2 (OCSF 1.1.0) has no published AWS sample for these sources; its schemas follow the
OCSF 1.1.0 renames (``time_dt``, ``start_time_dt``/``end_time_dt``, ``cloud.account.uid``,
``actor.user.uid`` = ARN with ``uid_alt`` = principal id, ``is_mfa``, ``action``/``action_id``,
``observables``, ``type_uid`` as int64, API Activity as class 6003) and the nullability conventions
of AWS's OCSF 1.1.0 EKS audit sample: structs are nullable, required OCSF scalars are not.

Nothing here reads files at run time; the schemas are code.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "MAP_STRING_STRING",
    "TIMESTAMP_MS_UTC",
    "schema_for",
    "VPC_FLOW_V1",
    "ROUTE53_V1",
    "CLOUDTRAIL_AUTH_V1",
    "CLOUDTRAIL_API_V1",
    "VPC_FLOW_V2",
    "ROUTE53_V2",
    "CLOUDTRAIL_AUTH_V2",
    "CLOUDTRAIL_API_V2",
    "OCSF_VERSION",
    "CLASS_INFO",
]

OCSF_VERSION = {1: "1.0.0-rc.2", 2: "1.1.0"}

TIMESTAMP_MS_UTC = pa.timestamp("ms", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


def _req(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


def _list(item: pa.DataType) -> pa.ListType:
    """A list whose elements are required and named ``array`` (as the Avro-based writer names them)."""
    return pa.list_(pa.field("array", item, nullable=False))


S = pa.string()
I32 = pa.int32()
I64 = pa.int64()
B = pa.bool_()

#: ``map<string, string>`` with required keys and values (the ``unmapped`` column).
MAP_STRING_STRING = pa.map_(pa.field("key", S, nullable=False), pa.field("value", S, nullable=False))

#: OCSF 1.1.0 observable, as in the AWS OCSF 1.1.0 sample.
OBSERVABLE = pa.struct([_f("name", S), _f("value", S), _f("type", S), _f("type_id", I32)])
OBSERVABLES = _list(OBSERVABLE)

# =========================================================================== source version 1
# ---------------------------------------------------------------- shared pieces (network sources)
_NET_METADATA_V1 = pa.struct(
    [
        _req(
            "product",
            pa.struct(
                [
                    _req("version", S),
                    _req("name", S),
                    _req("feature", pa.struct([_req("name", S)])),
                    _req("vendor_name", S),
                ]
            ),
        ),
        _f("profiles", _list(S)),
        _req("version", S),
    ]
)

_UNMAPPED = _f("unmapped", MAP_STRING_STRING)


def _common_tail_v1() -> list[pa.Field]:
    return [
        _req("severity_id", I32),
        _req("severity", S),
        _req("class_name", S),
        _req("class_uid", I32),
        _req("category_name", S),
        _req("category_uid", I32),
    ]


# ---------------------------------------------------------------- VPC flow, class 4001
_VPC_ENDPOINT_V1 = pa.struct(
    [
        _f("port", I32),
        _f("svc_name", S),
        _f("ip", S),
        _f("intermediate_ips", _list(S)),
        _f("interface_uid", S),
        _f("vpc_uid", S),
        _f("instance_uid", S),
        _f("subnet_uid", S),
    ]
)

_VPC_CONNECTION = pa.struct(
    [
        _f("protocol_num", I32),
        _f("tcp_flags", I32),
        _f("protocol_ver", S),
        _f("boundary_id", I32),
        _f("boundary", S),
        _f("direction_id", I32),
        _f("direction", S),
    ]
)

_TRAFFIC = pa.struct([_f("packets", I64), _f("bytes", I64)])

VPC_FLOW_V1 = pa.schema(
    [
        _req("metadata", _NET_METADATA_V1),
        _req(
            "cloud",
            pa.struct([_f("account_uid", S), _f("region", S), _f("zone", S), _req("provider", S)]),
        ),
        _req("src_endpoint", _VPC_ENDPOINT_V1),
        _req("dst_endpoint", _VPC_ENDPOINT_V1),
        _req("connection_info", _VPC_CONNECTION),
        _req("traffic", _TRAFFIC),
        _req("time", I64),
        _f("start_time", I64),
        _f("end_time", I64),
        _f("status_code", S),
        *_common_tail_v1(),
        _req("activity_name", S),
        _req("activity_id", I32),
        _req("disposition", S),
        _req("disposition_id", I32),
        _req("type_uid", I32),
        _req("type_name", S),
        _UNMAPPED,
    ]
)

# ---------------------------------------------------------------- Route 53, class 4003
_DNS_ANSWER = pa.struct([_f("type", S), _f("rdata", S), _f("class", S)])

ROUTE53_V1 = pa.schema(
    [
        _req("metadata", _NET_METADATA_V1),
        _req("cloud", pa.struct([_f("account_uid", S), _f("region", S), _req("provider", S)])),
        _req(
            "src_endpoint",
            pa.struct([_f("vpc_uid", S), _f("ip", S), _f("port", I32), _f("instance_uid", S)]),
        ),
        _req("time", I64),
        _req("query", pa.struct([_f("hostname", S), _f("type", S), _f("class", S)])),
        _f("answers", _list(_DNS_ANSWER)),
        _req(
            "connection_info",
            pa.struct([_f("protocol_name", S), _req("direction", S), _req("direction_id", I32)]),
        ),
        _req("dst_endpoint", pa.struct([_f("instance_uid", S), _f("interface_uid", S)])),
        *_common_tail_v1(),
        _f("rcode_id", I32),
        _f("rcode", S),
        _req("activity_id", I32),
        _req("activity_name", S),
        _req("type_name", S),
        _req("type_uid", I32),
        _req("disposition", S),
        _req("disposition_id", I32),
        _UNMAPPED,
    ]
)

# ---------------------------------------------------------------- CloudTrail, classes 3002 / 3005
_CT_METADATA_V1 = pa.struct(
    [
        _req(
            "product",
            pa.struct(
                [
                    _req("version", S),
                    _req("name", S),
                    _req("vendor_name", S),
                    _req("feature", pa.struct([_req("name", S)])),
                ]
            ),
        ),
        _f("uid", S),
        _f("profiles", _list(S)),
        _req("version", S),
    ]
)

_CT_API_V1 = pa.struct(
    [
        _req("response", pa.struct([_f("error", S), _f("message", S)])),
        _f("operation", S),
        _f("version", S),
        _req("service", pa.struct([_f("name", S)])),
        _req("request", pa.struct([_f("uid", S)])),
    ]
)

_CT_ACTOR_V1 = pa.struct(
    [
        _req(
            "user",
            pa.struct(
                [
                    _f("type", S),
                    _f("name", S),
                    _f("uid", S),
                    _f("uuid", S),
                    _f("account_uid", S),
                    _f("credential_uid", S),
                ]
            ),
        ),
        _req("session", pa.struct([_f("created_time", I64), _f("mfa", B), _f("issuer", S)])),
        _f("invoked_by", S),
        _req("idp", pa.struct([_f("name", S)])),
    ]
)

_CT_HEAD_V1 = [
    _req("metadata", _CT_METADATA_V1),
    _req("time", I64),
    _req("cloud", pa.struct([_f("region", S), _req("provider", S)])),
    _req("api", _CT_API_V1),
]

_CT_ENDPOINTS_V1 = [
    _req("actor", _CT_ACTOR_V1),
    _req("http_request", pa.struct([_f("user_agent", S)])),
    _req("src_endpoint", pa.struct([_f("uid", S), _f("ip", S), _f("domain", S)])),
]

_CT_CLASS_V1 = [
    _req("class_name", S),
    _req("class_uid", I32),
    _req("category_name", S),
    _req("category_uid", I32),
    _req("severity_id", I32),
    _req("severity", S),
]

CLOUDTRAIL_AUTH_V1 = pa.schema(
    [
        *_CT_HEAD_V1,
        _req("dst_endpoint", pa.struct([_f("svc_name", S)])),
        *_CT_ENDPOINTS_V1,
        *_CT_CLASS_V1,
        _req("user", pa.struct([_f("uid", S), _f("uuid", S), _f("name", S)])),
        _req("activity_name", S),
        _req("activity_id", I32),
        _req("type_uid", I32),
        _req("type_name", S),
        _f("status", S),
        _f("status_id", I32),
        _f("mfa", B),
        _UNMAPPED,
    ]
)

CLOUDTRAIL_API_V1 = pa.schema(
    [
        *_CT_HEAD_V1,
        _f("resources", _list(pa.struct([_f("uid", S), _f("account_uid", S), _f("type", S)]))),
        *_CT_ENDPOINTS_V1,
        *_CT_CLASS_V1,
        _f("status", S),
        _f("status_id", I32),
        _req("activity_name", S),
        _req("activity_id", I32),
        _req("type_uid", I32),
        _req("type_name", S),
        _UNMAPPED,
    ]
)

# =========================================================================== source version 2
# Structs nullable, required OCSF scalars not null (as in AWS's OCSF 1.1.0 sample).
_NET_METADATA_V2 = pa.struct(
    [
        _f(
            "product",
            pa.struct(
                [
                    _req("version", S),
                    _req("name", S),
                    _f("feature", pa.struct([_f("name", S)])),
                    _req("vendor_name", S),
                ]
            ),
        ),
        _f("profiles", _list(S)),
        _req("version", S),
    ]
)

_ACCOUNT_V2 = pa.struct([_f("uid", S)])

_VPC_ENDPOINT_V2 = _VPC_ENDPOINT_V1  # same fields; the struct itself is nullable in v2

VPC_FLOW_V2 = pa.schema(
    [
        _f("metadata", _NET_METADATA_V2),
        _f(
            "cloud",
            pa.struct([_f("account", _ACCOUNT_V2), _f("region", S), _f("zone", S), _req("provider", S)]),
        ),
        _f("src_endpoint", _VPC_ENDPOINT_V2),
        _f("dst_endpoint", _VPC_ENDPOINT_V2),
        _f("connection_info", _VPC_CONNECTION),
        _f("traffic", _TRAFFIC),
        _req("time", I64),
        _f("time_dt", TIMESTAMP_MS_UTC),
        _f("start_time_dt", TIMESTAMP_MS_UTC),
        _f("end_time_dt", TIMESTAMP_MS_UTC),
        _f("status_code", S),
        _req("severity_id", I32),
        _req("severity", S),
        _req("class_name", S),
        _req("class_uid", I32),
        _req("category_name", S),
        _req("category_uid", I32),
        _req("activity_name", S),
        _req("activity_id", I32),
        _f("action", S),
        _f("action_id", I32),
        _f("disposition", S),
        _f("disposition_id", I32),
        _req("type_uid", I64),
        _req("type_name", S),
        _UNMAPPED,
        _f("observables", OBSERVABLES),
    ]
)

ROUTE53_V2 = pa.schema(
    [
        _f("metadata", _NET_METADATA_V2),
        _f("cloud", pa.struct([_f("account", _ACCOUNT_V2), _f("region", S), _req("provider", S)])),
        _f(
            "src_endpoint",
            pa.struct([_f("vpc_uid", S), _f("ip", S), _f("port", I32), _f("instance_uid", S)]),
        ),
        _req("time", I64),
        _f("time_dt", TIMESTAMP_MS_UTC),
        _f("query", pa.struct([_f("hostname", S), _f("type", S), _f("class", S)])),
        _f("answers", _list(_DNS_ANSWER)),
        _f(
            "connection_info",
            pa.struct([_f("protocol_name", S), _f("direction", S), _f("direction_id", I32)]),
        ),
        _f("dst_endpoint", pa.struct([_f("instance_uid", S), _f("interface_uid", S)])),
        _f("firewall_rule", pa.struct([_f("uid", S)])),
        _req("severity_id", I32),
        _req("severity", S),
        _req("class_name", S),
        _req("class_uid", I32),
        _req("category_name", S),
        _req("category_uid", I32),
        _f("rcode_id", I32),
        _f("rcode", S),
        _req("activity_id", I32),
        _req("activity_name", S),
        _f("action", S),
        _f("action_id", I32),
        _req("type_name", S),
        _req("type_uid", I64),
        _f("disposition", S),
        _f("disposition_id", I32),
        _UNMAPPED,
        _f("observables", OBSERVABLES),
    ]
)

_CT_METADATA_V2 = pa.struct(
    [
        _f(
            "product",
            pa.struct(
                [
                    _req("version", S),
                    _req("name", S),
                    _req("vendor_name", S),
                    _f("feature", pa.struct([_f("name", S)])),
                ]
            ),
        ),
        _f("uid", S),
        _f("event_code", S),
        _f("profiles", _list(S)),
        _req("version", S),
    ]
)

_CT_API_V2 = pa.struct(
    [
        _f("response", pa.struct([_f("error", S), _f("message", S), _f("data", S)])),
        _f("operation", S),
        _f("version", S),
        _f("service", pa.struct([_f("name", S)])),
        _f("request", pa.struct([_f("uid", S), _f("data", S)])),
    ]
)

_CT_ACTOR_V2 = pa.struct(
    [
        _f(
            "user",
            pa.struct(
                [
                    _f("type", S),
                    _f("name", S),
                    _f("uid", S),
                    _f("uid_alt", S),
                    _f("account", _ACCOUNT_V2),
                    _f("credential_uid", S),
                ]
            ),
        ),
        _f(
            "session",
            pa.struct([_f("created_time_dt", TIMESTAMP_MS_UTC), _f("is_mfa", B), _f("issuer", S)]),
        ),
        _f("invoked_by", S),
        _f("idp", pa.struct([_f("name", S)])),
    ]
)

_CT_HEAD_V2 = [
    _f("metadata", _CT_METADATA_V2),
    _req("time", I64),
    _f("time_dt", TIMESTAMP_MS_UTC),
    _f("cloud", pa.struct([_f("region", S), _req("provider", S)])),
    _f("api", _CT_API_V2),
]

_CT_ENDPOINTS_V2 = [
    _f("actor", _CT_ACTOR_V2),
    _f("http_request", pa.struct([_f("user_agent", S)])),
    _f("src_endpoint", pa.struct([_f("uid", S), _f("ip", S), _f("domain", S)])),
]

_CT_CLASS_V2 = [
    _req("class_name", S),
    _req("class_uid", I32),
    _req("category_name", S),
    _req("category_uid", I32),
    _req("severity_id", I32),
    _req("severity", S),
]

CLOUDTRAIL_AUTH_V2 = pa.schema(
    [
        *_CT_HEAD_V2,
        _f("dst_endpoint", pa.struct([_f("svc_name", S)])),
        *_CT_ENDPOINTS_V2,
        *_CT_CLASS_V2,
        _f("user", pa.struct([_f("uid", S), _f("uid_alt", S), _f("name", S)])),
        _req("activity_name", S),
        _req("activity_id", I32),
        _req("type_uid", I64),
        _req("type_name", S),
        _f("status", S),
        _f("status_id", I32),
        _f("is_mfa", B),
        _UNMAPPED,
        _f("observables", OBSERVABLES),
    ]
)

CLOUDTRAIL_API_V2 = pa.schema(
    [
        *_CT_HEAD_V2,
        _f(
            "resources",
            _list(
                pa.struct(
                    [_f("uid", S), _f("owner", pa.struct([_f("account", _ACCOUNT_V2)])), _f("type", S)]
                )
            ),
        ),
        *_CT_ENDPOINTS_V2,
        *_CT_CLASS_V2,
        _f("status", S),
        _f("status_id", I32),
        _req("activity_name", S),
        _req("activity_id", I32),
        _req("type_uid", I64),
        _req("type_name", S),
        _UNMAPPED,
        _f("observables", OBSERVABLES),
    ]
)

# =========================================================================== lookup
#: ``(kind, version) -> schema``; kind is ``vpc_flow``, ``route53``, ``cloudtrail_auth`` or ``cloudtrail_api``.
_SCHEMAS: dict[tuple[str, int], pa.Schema] = {
    ("vpc_flow", 1): VPC_FLOW_V1,
    ("route53", 1): ROUTE53_V1,
    ("cloudtrail_auth", 1): CLOUDTRAIL_AUTH_V1,
    ("cloudtrail_api", 1): CLOUDTRAIL_API_V1,
    ("vpc_flow", 2): VPC_FLOW_V2,
    ("route53", 2): ROUTE53_V2,
    ("cloudtrail_auth", 2): CLOUDTRAIL_AUTH_V2,
    ("cloudtrail_api", 2): CLOUDTRAIL_API_V2,
}

#: ``(kind, version) -> (class_uid, class_name, category_uid, category_name)``.
CLASS_INFO: dict[tuple[str, int], tuple[int, str, int, str]] = {
    ("vpc_flow", 1): (4001, "Network Activity", 4, "Network Activity"),
    ("vpc_flow", 2): (4001, "Network Activity", 4, "Network Activity"),
    ("route53", 1): (4003, "DNS Activity", 4, "Network Activity"),
    ("route53", 2): (4003, "DNS Activity", 4, "Network Activity"),
    ("cloudtrail_auth", 1): (3002, "Authentication", 3, "Audit Activity"),
    ("cloudtrail_auth", 2): (3002, "Authentication", 3, "Identity & Access Management"),
    ("cloudtrail_api", 1): (3005, "API Activity", 3, "Audit Activity"),
    ("cloudtrail_api", 2): (6003, "API Activity", 6, "Application Activity"),
}


def schema_for(kind: str, version: int) -> pa.Schema:
    """The Arrow schema of ``kind`` rows for Security Lake source ``version`` (1 or 2)."""
    try:
        return _SCHEMAS[(kind, int(version))]
    except (KeyError, TypeError, ValueError):
        kinds = sorted({k for k, _ in _SCHEMAS})
        raise ValueError(f"no schema for kind={kind!r} version={version!r}; kinds: {kinds}, versions: 1, 2") from None
