"""Safe SQL rendering: packaged templates (``seclake_ml/sql/``), validated identifiers, trusted fragments.

Templates use ``${name}`` placeholders. :func:`render` only accepts :class:`Sql` fragments, and a
fragment can only be made by the constructors here, each of which validates its input:

* :func:`ident` / :func:`qualified` — identifiers matching a strict pattern,
* :func:`string_literal` — a value matching a caller-given strict pattern (no quotes possible),
* :func:`int_literal`, :func:`timestamp_literal`, :func:`day_literal` — typed values,
* :func:`trusted` — SQL written in this package's own source (registry expressions, fixed clauses).

Values that come from users or data are bound as query parameters where the engine supports it
(DuckDB); Athena receives literals rendered by the typed constructors above.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from functools import lru_cache
from importlib import resources
from string import Template

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class UnsafeSqlError(ValueError):
    """An identifier or value did not pass validation and was not put into SQL."""


class Sql(str):
    """A fragment of SQL that passed validation (or was written in this package)."""

    __slots__ = ()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def ident(name: str) -> Sql:
    """An identifier such as a table or column name; must match ``[A-Za-z_][A-Za-z0-9_]{0,127}``."""
    if not isinstance(name, str) or not IDENT_RE.fullmatch(name):
        raise UnsafeSqlError(f"invalid SQL identifier {_show(name)}: expected [A-Za-z_][A-Za-z0-9_]{{0,127}}")
    return Sql(name)


def qualified(*parts: str) -> Sql:
    """A dotted name, each part validated, rendered double-quoted (``"db"."table"``)."""
    if not parts:
        raise UnsafeSqlError("empty qualified name")
    return Sql(".".join(f'"{ident(p)}"' for p in parts))


def column_path(path: str) -> Sql:
    """A struct path such as ``src_endpoint.ip``; every part validated."""
    if not isinstance(path, str):
        raise UnsafeSqlError(f"invalid column path {_show(path)}")
    return Sql(".".join(ident(p) for p in path.split(".")))


def string_literal(value: str, pattern: re.Pattern[str] | str) -> Sql:
    """A quoted string literal for ``value``, which must fully match ``pattern`` and hold no quote."""
    pat = re.compile(pattern) if isinstance(pattern, str) else pattern
    if not isinstance(value, str) or "'" in value or "\\" in value or not pat.fullmatch(value):
        raise UnsafeSqlError(f"value {_show(value)} does not match {pat.pattern!r}")
    return Sql(f"'{value}'")


def int_literal(value: int) -> Sql:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsafeSqlError(f"expected an int, got {_show(value)}")
    return Sql(str(int(value)))


def timestamp_literal(value: datetime) -> Sql:
    """``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.fff'`` in UTC (naive values are taken as UTC)."""
    if not isinstance(value, datetime):
        raise UnsafeSqlError(f"expected a datetime, got {_show(value)}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return Sql(f"TIMESTAMP '{value.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}'")


def day_literal(value: date) -> Sql:
    """``'YYYYMMDD'``, the Security Lake v1 ``eventday`` partition format."""
    if not isinstance(value, date):
        raise UnsafeSqlError(f"expected a date, got {_show(value)}")
    return Sql(f"'{value.strftime('%Y%m%d')}'")


def s3_uri_literal(uri: str) -> Sql:
    """A quoted ``s3://bucket/prefix/`` literal with a conservative character set."""
    return string_literal(uri, r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.=/-]*)?")


def trusted(text: str) -> Sql:
    """SQL written in this package's own source (never data or user input)."""
    return Sql(text)


# ------------------------------------------------------------------------------ templates
TEMPLATE_PACKAGE = "seclake_ml"
TEMPLATE_FOLDER = "sql"


def template_names() -> list[str]:
    """Every template this package ships, as ``<engine>/<name>.sql`` (package data under ``seclake_ml/sql``)."""
    root = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER)
    return sorted(f"{engine.name}/{item.name}" for engine in root.iterdir() if engine.is_dir()
                  for item in engine.iterdir() if item.name.endswith(".sql"))


class _SqlTemplate(Template):
    """Only ``${name}`` is a placeholder; ``$name`` stays as is (DuckDB's bound parameters)."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!)) |
      (?P<named>(?!)) |
      \{(?P<braced>[a-z_][a-z0-9_]*)\} |
      (?P<invalid>(?!))
    )
    """


@lru_cache(maxsize=64)
def _load(name: str) -> Template:
    """The template ``name`` read from the package data (works from a folder or a zip import)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+/[a-z0-9_]+\.sql", name):
        raise UnsafeSqlError(f"invalid template name {_show(name)}")
    engine, file = name.split("/")
    item = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER, engine, file)
    if not item.is_file():
        raise FileNotFoundError(f"SQL template {name!r} is not part of package {TEMPLATE_PACKAGE} "
                                f"(shipped: {', '.join(template_names())})")
    return _SqlTemplate(item.read_text(encoding="utf-8"))


def render(name: str, **params: Sql) -> str:
    """Render template ``name`` (e.g. ``duckdb/pairs_stage.sql``); every parameter must be :class:`Sql`."""
    for key, value in params.items():
        if not isinstance(value, Sql):
            raise UnsafeSqlError(f"template parameter {key!r} is not a validated SQL fragment")
    tpl = _load(name)
    try:
        return tpl.substitute(params)
    except KeyError as exc:
        raise UnsafeSqlError(f"template {name} needs parameter {exc.args[0]!r}") from None
