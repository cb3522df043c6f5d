"""The sensitive-operation catalogue: which CloudTrail operations a security team reviews, and how much.

The catalogue is data (``data/sensitive_operations.json`` in the package, or a JSON file of the same
shape named by ``extra.risk.sensitive_operations``): per ``eventSource`` the operations with a weight
(0-3) and the tactic they usually serve, and per service (or ``*``) name prefixes such as ``Delete``.
Lookups go exact operation, then the service's prefixes, then the ``*`` prefixes; unknown operations
weigh 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

MAX_WEIGHT = 3


@dataclass(frozen=True)
class Catalog:
    operations: dict[str, dict[str, tuple[int, str]]]
    prefixes: dict[str, tuple[tuple[str, int, str], ...]]
    source: str

    def lookup(self, service: str | None, operation: str | None) -> tuple[int, str]:
        """``(weight, category)`` of one operation; ``(0, "")`` when it is not in the catalogue."""
        if not operation:
            return 0, ""
        svc = service or ""
        hit = self.operations.get(svc, {}).get(operation)
        if hit:
            return hit
        for scope in (svc, "*"):
            for prefix, weight, category in self.prefixes.get(scope, ()):
                if operation.startswith(prefix):
                    return weight, category
        return 0, ""

    def lookup_many(self, services: Sequence[Any], operations: Sequence[Any]) -> tuple[list[int], list[str]]:
        """Weights and categories for parallel sequences (looked up once per distinct pair)."""
        cache: dict[tuple[Any, Any], tuple[int, str]] = {}
        weights, cats = [], []
        for s, o in zip(services, operations):
            key = (s, o)
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self.lookup(s if isinstance(s, str) else None, o if isinstance(o, str) else None)
            weights.append(hit[0])
            cats.append(hit[1])
        return weights, cats


def _parse(doc: Any, source: str) -> Catalog:
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise ValueError(f"sensitive-operation catalogue {source}: expected a JSON object with \"format\": 1")
    ops: dict[str, dict[str, tuple[int, str]]] = {}
    for svc, table in (doc.get("operations") or {}).items():
        if not isinstance(table, dict):
            raise ValueError(f"sensitive-operation catalogue {source}: operations.{svc} must be an object")
        for op, entry in table.items():
            ops.setdefault(svc, {})[op] = _entry(entry, f"{source}: operations.{svc}.{op}")
    prefixes: dict[str, tuple[tuple[str, int, str], ...]] = {}
    for svc, rows in (doc.get("prefixes") or {}).items():
        if not isinstance(rows, list):
            raise ValueError(f"sensitive-operation catalogue {source}: prefixes.{svc} must be a list")
        parsed = []
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and row[0]):
                raise ValueError(f"sensitive-operation catalogue {source}: prefixes.{svc}[{i}] must be [prefix, weight, category]")
            w, c = _entry(row[1:], f"{source}: prefixes.{svc}[{i}]")
            parsed.append((row[0], w, c))
        prefixes[svc] = tuple(parsed)
    return Catalog(ops, prefixes, source)


def _entry(entry: Any, where: str) -> tuple[int, str]:
    if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int and isinstance(entry[1], str)):
        raise ValueError(f"sensitive-operation catalogue {where}: expected [weight, category]")
    if not 0 <= entry[0] <= MAX_WEIGHT:
        raise ValueError(f"sensitive-operation catalogue {where}: weight {entry[0]} is outside 0..{MAX_WEIGHT}")
    return entry[0], entry[1]


@lru_cache(maxsize=8)
def load_catalog(path: str | None = None) -> Catalog:
    """The packaged catalogue, or the JSON file at ``path``."""
    if path:
        p = Path(path).expanduser()
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"sensitive-operation catalogue {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"sensitive-operation catalogue {path}: not valid JSON ({exc})") from None
        return _parse(doc, str(p))
    text = resources.files("seclake_ml.risk").joinpath("data/sensitive_operations.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "packaged sensitive_operations.json")
