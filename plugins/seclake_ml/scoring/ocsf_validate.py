"""Offline validation of OCSF Detection Finding records against the compiled OCSF schema JSON.

:func:`validate_finding` checks one record (as made by :mod:`seclake_ml.scoring.findings` or
:mod:`seclake_ml.risk.findings`) against the Detection Finding class (2004) of a compiled schema
(:func:`load_ocsf_schema`, e.g. ``reference/ocsf-1.1.0-schema.json``) and returns every error found,
each prefixed with the attribute path. Nothing is fetched over the network and no record is changed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from seclake_ml.scoring.findings import CLASS_UID, one_line


def load_ocsf_schema(path: str | Path) -> dict:
    """The compiled OCSF schema JSON (e.g. ``reference/ocsf-1.1.0-schema.json``)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


_INT_RANGES = {"integer_t": (-(2**31), 2**31 - 1), "long_t": (-(2**63), 2**63 - 1)}
_BASE_TYPES = {"string_t", "integer_t", "long_t", "float_t", "boolean_t", "json_t"}
_MAX_DEPTH = 48


class _Validator:
    """Recursive checker of one record against a compiled OCSF schema (see :func:`validate_finding`)."""

    def __init__(self, schema: dict, profiles: set[str]) -> None:
        self.types: dict = schema.get("types") or {}
        self.objects: dict = schema.get("objects") or {}
        self.profiles = profiles
        self.errors: list[str] = []
        self._regex: dict[str, re.Pattern[str]] = {}

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path or 'record'}: {msg}")

    # -- primitive types
    def _chain(self, type_name: str) -> tuple[str | None, int | None, list[str], list | None]:
        """Base type, smallest max_len, regexes and range along ``type_name``'s derivation chain."""
        max_len: int | None = None
        regexes: list[str] = []
        rng = None
        seen = set()
        t: str | None = type_name
        while t is not None and t not in _BASE_TYPES:
            if t in seen or t not in self.types:
                return None, None, [], None
            seen.add(t)
            info = self.types[t]
            if info.get("max_len") is not None:
                max_len = info["max_len"] if max_len is None else min(max_len, info["max_len"])
            if info.get("regex"):
                regexes.append(info["regex"])
            if info.get("range") and rng is None:
                rng = info["range"]
            t = info.get("type")
        if t is not None and t in self.types:
            base = self.types[t]
            if base.get("max_len") is not None:
                max_len = base["max_len"] if max_len is None else min(max_len, base["max_len"])
        return t, max_len, regexes, rng

    def check_primitive(self, value: Any, type_name: str, path: str) -> None:
        base, max_len, regexes, rng = self._chain(type_name)
        if base is None:
            self.err(path, f"unknown OCSF type {type_name!r}")
            return
        if base == "string_t":
            if not isinstance(value, str):
                self.err(path, f"expected {type_name} (string), got {type(value).__name__}")
                return
            if max_len is not None and len(value) > max_len:
                self.err(path, f"{type_name} longer than {max_len} characters ({len(value)})")
            for rx in regexes:
                pat = self._regex.get(rx)
                if pat is None:
                    pat = self._regex[rx] = re.compile(rx)
                if not pat.search(value):
                    self.err(path, f"{one_line(repr(value), 80)} is not a valid {type_name}")
                    break
        elif base in _INT_RANGES:
            if isinstance(value, bool) or not isinstance(value, int):
                self.err(path, f"expected {type_name} (integer), got {type(value).__name__}")
                return
            lo, hi = _INT_RANGES[base]
            if not lo <= value <= hi:
                self.err(path, f"{value} is out of range for {type_name}")
            if rng and not rng[0] <= value <= rng[1]:
                self.err(path, f"{value} is outside {type_name} range {rng[0]}..{rng[1]}")
        elif base == "float_t":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.err(path, f"expected {type_name} (number), got {type(value).__name__}")
            elif not math.isfinite(value):
                self.err(path, f"{type_name} must be finite, got {value}")
        elif base == "boolean_t":
            if not isinstance(value, bool):
                self.err(path, f"expected {type_name} (boolean), got {type(value).__name__}")
        elif base == "json_t":
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                self.err(path, f"not JSON-serialisable: {one_line(str(exc), 120)}")

    # -- objects
    def check_object(self, value: Any, obj: dict, path: str, depth: int) -> None:
        if not isinstance(value, dict):
            self.err(path, f"expected object {obj.get('name')!r}, got {type(value).__name__}")
            return
        if depth > _MAX_DEPTH:
            self.err(path, "nested too deeply")
            return
        attrs: dict = obj.get("attributes") or {}
        if not attrs:  # the generic 'object' type (e.g. unmapped): any JSON object
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                self.err(path, f"not JSON-serialisable: {one_line(str(exc), 120)}")
            return
        for key, v in value.items():
            sub = f"{path}.{key}" if path else str(key)
            attr = attrs.get(key)
            if attr is None:
                self.err(one_line(sub, 120), f"unknown attribute of {obj.get('name')!r}")
                continue
            profile = attr.get("profile")
            if profile and profile not in self.profiles:
                self.err(sub, f"attribute of profile {profile!r}, which metadata.profiles does not declare")
            if v is None:
                self.err(sub, "null value (omit the attribute instead)")
                continue
            self.check_attribute(v, attr, sub, depth)
        for key, attr in attrs.items():
            profile = attr.get("profile")
            if attr.get("requirement") == "required" and (not profile or profile in self.profiles):
                if value.get(key) is None:
                    sub = f"{path}.{key}" if path else key
                    self.err(sub, "required attribute missing")
        self.check_constraints(value, obj, path)
        self.check_siblings(value, attrs, path)

    def check_constraints(self, value: dict, obj: dict, path: str) -> None:
        cons = obj.get("constraints") or {}
        present = [k for k in cons.get("at_least_one") or [] if value.get(k) is not None]
        if cons.get("at_least_one") and not present:
            self.err(path, f"needs at least one of {', '.join(cons['at_least_one'])}")
        just = cons.get("just_one") or []
        if just and sum(value.get(k) is not None for k in just) != 1:
            self.err(path, f"needs exactly one of {', '.join(just)}")

    def check_siblings(self, value: dict, attrs: dict, path: str) -> None:
        for key, attr in attrs.items():
            sib, enum = attr.get("sibling"), attr.get("enum")
            if not sib or not enum or key not in value or sib not in value:
                continue
            item = enum.get(str(value[key])) if not isinstance(value[key], bool) else None
            if item is None or str(value[key]) == "99":
                continue
            if value[sib] != item.get("caption"):
                sub = f"{path}.{sib}" if path else sib
                shown = one_line(repr(value[sib]), 60)
                self.err(sub, f"{shown} does not match {key}={value[key]} ({item.get('caption')!r})")

    def check_attribute(self, value: Any, attr: dict, path: str, depth: int) -> None:
        if attr.get("is_array"):
            if not isinstance(value, list):
                self.err(path, f"expected an array of {attr.get('type')}, got {type(value).__name__}")
                return
            for i, item in enumerate(value):
                self.check_single(item, attr, f"{path}[{i}]", depth)
        else:
            if isinstance(value, list):
                self.err(path, f"expected a single {attr.get('type')}, got an array")
                return
            self.check_single(value, attr, path, depth)

    def check_single(self, value: Any, attr: dict, path: str, depth: int) -> None:
        type_name = attr.get("type")
        if type_name in self.types:
            self.check_primitive(value, type_name, path)
            enum = attr.get("enum")
            if enum and not isinstance(value, (bool, dict, list)) and str(value) not in enum:
                allowed = ", ".join(sorted(enum, key=lambda k: (len(k), k)))
                self.err(path, f"{one_line(repr(value), 60)} is not an allowed value ({allowed})")
        elif type_name in self.objects:
            self.check_object(value, self.objects[type_name], path, depth + 1)
        else:
            self.err(path, f"attribute has unknown type {type_name!r} in the schema")


def _find_class(schema: dict, class_uid: Any) -> dict | None:
    classes = schema.get("classes") or {}
    for cls in classes.values():
        if isinstance(cls, dict) and cls.get("uid") == class_uid:
            return cls
    return None


def validate_finding(record: dict, schema: dict) -> list[str]:
    """Errors of ``record`` against the compiled OCSF schema for Detection Finding (class 2004).

    Checked recursively for every object the record uses: unknown attribute names, required
    attributes (including those of declared profiles), JSON types per OCSF type (``string_t`` length,
    ``ip_t``/``datetime_t`` patterns, 32/64-bit integer ranges, ``timestamp_t`` as integer ms ...),
    arrays where ``is_array``, enum values, ``at_least_one``/``just_one`` constraints, enum captions
    of sibling names (``severity`` for ``severity_id`` ...), ``metadata.version`` against the schema
    version and ``type_uid = class_uid * 100 + activity_id``. An empty list means valid.

    :param record: the finding record.
    :param schema: the compiled schema (:func:`load_ocsf_schema`).
    """
    if not isinstance(record, dict):
        return [f"record: expected a JSON object, got {type(record).__name__}"]
    cls = _find_class(schema, CLASS_UID)
    if cls is None:
        return [f"schema: no class with uid {CLASS_UID} (is this a compiled OCSF schema?)"]
    errors: list[str] = []
    if record.get("class_uid") != CLASS_UID:
        shown = one_line(repr(record.get("class_uid")), 40)
        errors.append(f"class_uid: expected {CLASS_UID} (Detection Finding), got {shown}")

    known_profiles = set((schema.get("profiles") or {}).keys())
    declared: set[str] = set()
    metadata = record.get("metadata")
    profiles = metadata.get("profiles") if isinstance(metadata, dict) else None
    if isinstance(profiles, list):
        for p in profiles:
            if isinstance(p, str) and p in known_profiles:
                declared.add(p)
            else:
                errors.append(f"metadata.profiles: unknown profile {one_line(repr(p), 60)}")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if isinstance(version, str) and schema.get("version") and version != schema["version"]:
        shown = one_line(repr(version), 40)
        errors.append(f"metadata.version: {shown} differs from schema version {schema['version']!r}")

    v = _Validator(schema, declared)
    v.check_object(record, cls, "", 0)
    errors.extend(v.errors)

    cu, ai, tu = record.get("class_uid"), record.get("activity_id"), record.get("type_uid")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (cu, ai, tu)) and tu != cu * 100 + ai:
        errors.append(f"type_uid: {tu} != class_uid * 100 + activity_id ({cu * 100 + ai})")
    category = (schema.get("categories") or {}).get(cls.get("category") or "")
    cat_uid = record.get("category_uid")
    if isinstance(category, dict) and isinstance(cat_uid, int) and cat_uid != category.get("uid"):
        errors.append(f"category_uid: {cat_uid} is not the class's category ({category.get('uid')})")
    return errors
