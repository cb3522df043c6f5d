"""The ``(entity, ip)`` pairs contract: the extraction result, the drop reasons, view rendering.

Extraction itself is :func:`seclake_ml.extraction.extract_pairs`, over two query layers that both
build on this module: DuckDB over the local Security Lake tree (:mod:`seclake_ml.lake.duck`) and
Athena over the Glue tables, ``UNLOAD`` to S3 (:mod:`seclake_ml.lake.athena`).

Both classify every candidate row in SQL and keep only well-formed IPv4 pairs. Rows are dropped, and
counted, for one of these reasons (checked in this order):

``null``     entity or IP missing or empty
``dash``     entity or IP is ``-`` (the flow-log placeholder for "no data")
``hostile``  entity longer than 512 or IP longer than 64 characters, or control characters in either
``ipv6``     the IP contains ``:`` (IP Insights takes IPv4 only)
``not_ip``   anything else that is not dotted-decimal IPv4 without leading zeros

A valid IPv4 address that is not a peer on any network is then classified explicitly, each kind with
its own reason: ``unspecified`` (``0.0.0.0/8``), ``broadcast`` (``255.255.255.255``), ``loopback``
(``127.0.0.0/8``), ``link_local`` (``169.254.0.0/16``, e.g. the instance metadata service) and
``multicast`` (``224.0.0.0/4``). Control characters are C0 and C1 controls, bidi embeddings,
overrides and isolates, zero-width characters and line/paragraph separators.

The pairs contract: Parquet with ``entity`` (string), ``ip`` (string), ``event_time`` (UTC timestamp),
``source`` (string) plus context columns ``account`` and ``region``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from seclake_ml import sqlsafe
from seclake_ml.sources import get_source, placeholders, substitute

log = logging.getLogger(__name__)

#: Special IPv4 ranges that are no peer, each its own drop reason (classified in the staging SQL of both backends).
SPECIAL_ADDRESS_REASONS = ("unspecified", "broadcast", "loopback", "link_local", "multicast")
#: The one drop-reason vocabulary of extraction and scoring.
DROP_REASONS = ("null", "dash", "hostile", "ipv6", "not_ip", *SPECIAL_ADDRESS_REASONS)
MAX_ENTITY_LEN = 512
MAX_IP_LEN = 64
# Dotted-decimal IPv4, each octet 0-255 without leading zeros (so 010.1.1.1 is not an address).
IPV4_RE = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
# C0/C1 controls, bidi marks/embeddings/overrides/isolates, zero-width characters, BOM, line and
# paragraph separators (RE2 and Java both read \x{...}).
CONTROL_CHARS_RE = (r"[\x00-\x1f\x7f-\x9f\x{061c}\x{200b}-\x{200f}\x{2028}-\x{202e}"
                    r"\x{2060}-\x{2069}\x{feff}]")
PAIR_COLUMNS = ("entity", "ip", "event_time", "source", "account", "region")
#: Longest data interval one extraction or scoring hand-off accepts (ten years, in days).
@dataclass
class ExtractionResult:
    """What one extraction did; small and JSON-safe (it is returned through XCom)."""

    source: str
    view: str
    source_version: int
    backend: str
    start: str
    end: str
    rows_read: int = 0
    pairs_written: int = 0
    duplicates_removed: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    files_scanned: int = 0
    quarantined: list[dict[str, str]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        drops = ", ".join(f"{k}={v}" for k, v in self.dropped.items() if v) or "none"
        return (
            f"{self.source}/{self.view} v{self.source_version} [{self.start} .. {self.end}) via {self.backend}: "
            f"rows read {self.rows_read}, pairs written {self.pairs_written}, dropped {sum(self.dropped.values())} "
            f"({drops}), duplicates removed {self.duplicates_removed}, files {self.files_scanned}, "
            f"quarantined {len(self.quarantined)}, {self.seconds:.2f}s -> {self.output}"
        )


def render_view_sql(
    source: str, view: str, version: int, resolve: Any
) -> dict[str, str]:
    """Render a view's expressions for ``version``, resolving each ``{column.path}`` with ``resolve(path)``.

    ``resolve`` returns the SQL to use for a path (the path itself, or ``NULL`` when absent).
    Returns ``entity``, ``ip``, ``view_filter``, ``class_filter`` and the raw time column expression.
    """
    spec = get_source(source)
    pv = spec.view(view)
    time_col = spec.time_column(version)
    exprs = {
        "entity": pv.entity[version],
        "ip": pv.ip[version],
        "view_filter": pv.where[version],
        "class_filter": spec.class_filter[version],
        "time": "{" + time_col + "}",
    }
    paths: dict[str, str] = {}
    for expr in exprs.values():
        for p in placeholders(expr):
            if p not in paths:
                paths[p] = resolve(p)
    return {k: substitute(v, paths) for k, v in exprs.items()}


#: Each query engine's regular-expression functions: (search anywhere, match the whole value).
_REGEX_FUNCTIONS = {"duckdb": ("regexp_matches", "regexp_full_match"), "athena": ("regexp_like", "regexp_like")}


def check_params() -> dict[str, sqlsafe.Sql]:
    """The limits and patterns of the drop reasons, as template parameters."""
    return {
        "max_entity_len": sqlsafe.int_literal(MAX_ENTITY_LEN),
        "max_ip_len": sqlsafe.int_literal(MAX_IP_LEN),
        "control_chars_re": sqlsafe.trusted(f"'{CONTROL_CHARS_RE}'"),
        "ipv4_re": sqlsafe.trusted(f"'{IPV4_RE}'"),
    }


def reason_sql(dialect: str) -> str:
    """The drop-reason ``CASE`` over columns ``entity`` and ``ip`` (``'ok'`` when the pair is kept), in
    ``dialect`` (``duckdb`` or ``athena``): one classification for both backends."""
    if dialect not in _REGEX_FUNCTIONS:
        raise ValueError(f"dialect: got {dialect!r}; allowed: {', '.join(_REGEX_FUNCTIONS)}")
    search, full = _REGEX_FUNCTIONS[dialect]
    return sqlsafe.render("common/pairs_reason.sql", regexp_search=sqlsafe.trusted(search),
                          regexp_full=sqlsafe.trusted(full), **check_params())
