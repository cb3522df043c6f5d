"""Scoring with a saved IP Insights model in NumPy only (no torch), including SageMaker's request formats.

``dot_product`` is SageMaker's score: the log-odds that a pair is real; **higher = more normal**.
:meth:`IPInsightsScorer.decision_function` returns ``-dot_product`` (higher = more anomalous). This
module never thresholds; see :mod:`.calibration`.

Defined behaviour for awkward inputs (both the array API and :meth:`~IPInsightsScorer.handle_request`):

* **Invalid IP** (not strict dotted-decimal IPv4: IPv6, ``-``, empty, leading zeros, out of range):
  ``dot_product`` is NaN in arrays and ``null`` in responses; verbose responses add
  ``"error": "invalid IPv4 address: ..."`` and ``"ip_embedding": null``. The rest of the batch is
  scored normally; an invalid row never fails a request.
* **Unknown entity** (not among the training entities, checked on the full 64-bit hash): the score
  is still computed from its hash row (that row was trained for whichever entities share it, or not
  at all), and verbose responses say ``"known_entity": false``. Such scores are not comparable with
  those of known entities; filter on :meth:`~IPInsightsScorer.known_entities` before thresholding.
* **Malformed record** (CSV line without exactly two fields, JSON instance without a two-item
  feature list, undecodable JSON line in JSON Lines): treated like an invalid row, with the reason in
  ``error`` (verbose).
* Whole-request problems (unsupported content type or accept, body that is not UTF-8, JSON body
  without ``instances``) raise :class:`RequestError`, which carries an HTTP status.

Fast path: with at most one encoder layer the layer is folded into the entity side at load time
(``<e, W x + b> = <W^T e, x> + <e, b>``) and the prefix blocks that are indexed directly (/8, /12,
/16 by default) are summed into one table, so scoring a pair reads one entity row and one row per
remaining prefix.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from seclake_ml.ipinsights.artifact import IPInsightsArtifact, load_artifact
from seclake_ml.ipinsights.encoding import hash_unique_strings
from seclake_ml.ipinsights.ipv4 import parse_ipv4

__all__ = ["IPInsightsScorer", "RequestError", "ScoredPairs"]

_CHUNK = 2048
_MERGE_MAX_ROWS = 1 << 20
JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
_JSONLINES_ALIASES = {JSONLINES, "application/x-jsonlines", "application/jsonl", "application/json-lines"}


class RequestError(ValueError):
    """A request that cannot be processed as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ScoredPairs:
    """Scores and flags for a batch of pairs (arrays of equal length)."""

    dot_product: np.ndarray  # float32, NaN where the IP is invalid
    known_entity: np.ndarray  # bool
    valid_ip: np.ndarray  # bool

    @property
    def anomaly_score(self) -> np.ndarray:
        """``-dot_product``: higher = more anomalous."""
        return -self.dot_product


def _parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    if not value:
        return "", {}
    parts = [p.strip() for p in value.split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].lower(), params


class IPInsightsScorer:
    """Scores ``(entity, ip)`` pairs with a trained model.

    :param artifact: a loaded :class:`~seclake_ml.ipinsights.artifact.IPInsightsArtifact`.
    :param entity_cache_size: entity-string hashes kept between calls (cleared when full).
    """

    def __init__(self, artifact: IPInsightsArtifact, entity_cache_size: int = 1_000_000) -> None:
        self.artifact = artifact
        self.spec = artifact.spec
        self.hyperparameters = artifact.hyperparameters
        a = artifact.arrays
        self._entity = np.ascontiguousarray(a["entity_table"], dtype=np.float32)
        self._ip_table = np.ascontiguousarray(a["ip_table"], dtype=np.float32)
        self._layers = [
            (np.ascontiguousarray(a[f"ip_layer_{i}_weight"], dtype=np.float32), np.ascontiguousarray(a[f"ip_layer_{i}_bias"], dtype=np.float32))
            for i in range(artifact.num_layers)
        ]
        self._known = np.asarray(a["known_entity_hashes"], dtype=np.uint64)
        self._key = self.spec.entity_hash_key
        self._cache: dict[Any, int] = {}
        self._cache_size = int(entity_cache_size)
        self._prepare_fast_path()

    @classmethod
    def load(cls, model_dir: str | Path, **kwargs: Any) -> "IPInsightsScorer":
        """Load and verify a model folder (see :func:`~seclake_ml.ipinsights.artifact.load_artifact`)."""
        return cls(load_artifact(model_dir), **kwargs)

    @property
    def vector_dim(self) -> int:
        return self.spec.vector_dim

    @property
    def metadata(self) -> dict[str, Any]:
        return self.artifact.metadata

    # ------------------------------------------------------------------ set-up
    def _prepare_fast_path(self) -> None:
        spec = self.spec
        # Prefix blocks indexed directly can be summed into one table indexed by the longest of them.
        direct = [j for j, h in enumerate(spec.hashed) if not h]
        self._merged = None
        self._merged_shift = 0
        self._rest = list(range(spec.num_prefixes))
        if len(direct) > 1:
            top = max(spec.prefix_lengths[j] for j in direct)
            if (1 << top) <= _MERGE_MAX_ROWS:
                merged = np.zeros((1 << top, spec.vector_dim), np.float32)
                for j in direct:
                    p, off = spec.prefix_lengths[j], spec.offsets[j]
                    block = self._ip_table[off:off + (1 << p)]
                    merged += np.repeat(block, 1 << (top - p), axis=0)
                self._merged = merged
                self._merged_shift = 32 - top
                self._rest = [j for j in range(spec.num_prefixes) if j not in direct]
        # Fold a single linear layer into the entity side.
        if len(self._layers) <= 1:
            if self._layers:
                w, b = self._layers[0]
                self._entity_proj = np.ascontiguousarray(self._entity @ w)
                self._entity_bias = (self._entity @ b).astype(np.float32)
            else:
                self._entity_proj = self._entity
                self._entity_bias = np.zeros(self._entity.shape[0], np.float32)
            self._folded = True
        else:
            self._folded = False

    # ------------------------------------------------------------------ encoding
    def entity_hashes(self, entities: Sequence[object]) -> np.ndarray:
        """64-bit keyed hashes of entity strings (memoised)."""
        cache = self._cache
        seq = entities if isinstance(entities, (list, tuple, np.ndarray)) else list(entities)
        try:
            return np.fromiter((cache[e] for e in seq), dtype=np.uint64, count=len(seq))
        except (KeyError, TypeError):
            pass
        keys = [e if isinstance(e, str) else str(e) for e in seq]
        missing = list({k for k in keys if k not in cache})
        if len(cache) + len(missing) > self._cache_size:
            cache.clear()
        if missing:
            cache.update(zip(missing, hash_unique_strings(missing, self._key).tolist()))
        return np.fromiter((cache[k] for k in keys), dtype=np.uint64, count=len(keys))

    def encode_entities(self, entities: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, known)``: entity-table rows (``int64``) and whether each entity was seen in training."""
        h = self.entity_hashes(entities)
        return self.spec.entity_rows(h), self.known_hashes(h)

    def known_hashes(self, hashes: np.ndarray) -> np.ndarray:
        known = self._known
        if known.size == 0:
            return np.zeros(hashes.shape, bool)
        pos = np.minimum(np.searchsorted(known, hashes), known.size - 1)
        return known[pos] == hashes

    def known_entities(self, entities: Sequence[object]) -> np.ndarray:
        """Whether each entity was among the training entities."""
        return self.known_hashes(self.entity_hashes(entities))

    @staticmethod
    def encode_ips(ips: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(addresses uint32, valid bool)`` for dotted-decimal strings (see :func:`.ipv4.parse_ipv4`)."""
        return parse_ipv4(ips)

    # ------------------------------------------------------------------ scoring
    def dot_product_encoded(self, entity_rows: np.ndarray, addresses: np.ndarray) -> np.ndarray:
        """``dot_product`` for pre-encoded pairs: entity rows (``int64``) and ``uint32`` addresses (all valid)."""
        rows = np.asarray(entity_rows, dtype=np.int64)
        addr = np.asarray(addresses, dtype=np.uint32)
        n = addr.shape[0]
        if rows.shape[0] != n:
            raise ValueError(f"dot_product_encoded: {rows.shape[0]} entity rows but {n} addresses")
        out = np.empty(n, np.float32)
        d = self.spec.vector_dim
        chunk = min(_CHUNK, max(n, 1))
        acc = np.empty((chunk, d), np.float32)
        tmp = np.empty((chunk, d), np.float32)
        ent = np.empty((chunk, d), np.float32)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            m = e - s
            a_acc, a_tmp, a_ent = acc[:m], tmp[:m], ent[:m]
            self._ip_sum(addr[s:e], a_acc, a_tmp)
            if self._folded:
                np.take(self._entity_proj, rows[s:e], axis=0, out=a_ent, mode="clip")
                np.einsum("ij,ij->i", a_acc, a_ent, out=out[s:e])
                out[s:e] += self._entity_bias[rows[s:e]]
            else:
                ipv = self._apply_layers(a_acc)
                np.take(self._entity, rows[s:e], axis=0, out=a_ent, mode="clip")
                np.einsum("ij,ij->i", ipv, a_ent, out=out[s:e])
        return out

    def _ip_sum(self, addr: np.ndarray, acc: np.ndarray, tmp: np.ndarray) -> None:
        """Summed prefix embeddings (before the layers) for valid addresses, into ``acc``."""
        spec = self.spec
        rest = self._rest
        if self._merged is not None:
            np.take(self._merged, (addr >> np.uint32(self._merged_shift)).astype(np.intp), axis=0, out=acc, mode="clip")
        else:
            acc[...] = 0.0
        if rest:
            wide = addr.astype(np.uint64)
            for j in rest:
                np.take(self._ip_table, spec.prefix_column(wide, j), axis=0, out=tmp, mode="clip")
                acc += tmp

    def _apply_layers(self, x: np.ndarray) -> np.ndarray:
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            x = x @ w.T + b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x

    def score(self, entities: Sequence[object], ips: Sequence[object] | np.ndarray) -> ScoredPairs:
        """Score raw pairs: entity strings and dotted IPv4 strings (parsing included)."""
        rows, known = self.encode_entities(entities)
        addr, valid = parse_ipv4(ips)
        if rows.shape[0] != addr.shape[0]:
            raise ValueError(f"score: {rows.shape[0]} entities but {addr.shape[0]} IPs")
        dp = np.full(addr.shape[0], np.nan, np.float32)
        if valid.all():
            dp[:] = self.dot_product_encoded(rows, addr)
        elif valid.any():
            dp[valid] = self.dot_product_encoded(rows[valid], addr[valid])
        return ScoredPairs(dp, known, valid)

    def dot_product(self, entities: Sequence[object], ips: Sequence[object] | np.ndarray) -> np.ndarray:
        """``dot_product`` per pair (``float32``, NaN for invalid IPs); higher = more normal."""
        return self.score(entities, ips).dot_product

    def decision_function(self, entities: Sequence[object], ips: Sequence[object] | np.ndarray) -> np.ndarray:
        """Anomaly score ``-dot_product`` per pair: higher = more anomalous (NaN for invalid IPs)."""
        return -self.dot_product(entities, ips)

    # ------------------------------------------------------------------ embeddings
    def entity_embeddings(self, entities: Sequence[object]) -> np.ndarray:
        """Entity vectors ``(n, vector_dim)``, as SageMaker's verbose ``entity_embedding``."""
        rows, _ = self.encode_entities(entities)
        return self._entity[rows]

    def ip_embeddings(self, ips: Sequence[object] | np.ndarray) -> np.ndarray:
        """IP vectors ``(n, vector_dim)`` after the encoder layers; NaN rows for invalid IPs."""
        addr, valid = parse_ipv4(ips)
        return self._ip_vectors(addr, valid)

    def _ip_vectors(self, addr: np.ndarray, valid: np.ndarray) -> np.ndarray:
        n = addr.shape[0]
        out = np.full((n, self.vector_dim), np.nan, np.float32)
        if valid.any():
            a = addr[valid]
            rows = self.spec.prefix_rows(a)
            x = self._ip_table[rows].sum(axis=1, dtype=np.float32)
            out[valid] = self._apply_layers(x)
        return out

    # ------------------------------------------------------------------ SageMaker request formats
    def handle_request(self, body: bytes | str, content_type: str | None, accept: str | None = None) -> tuple[bytes, str]:
        """Answer an inference request in SageMaker IP Insights' formats.

        :param body: request payload.
        :param content_type: ``text/csv`` (lines ``entity,ip``), ``application/json``
            (``{"instances": [{"data": {"features": {"values": [e, ip]}}}, {"features": [e, ip]}]}``)
            or ``application/jsonlines`` (one instance object per line).
        :param accept: ``application/json`` (default) or ``application/jsonlines``, optionally with
            ``; verbose=True`` to add ``entity_embedding``, ``ip_embedding``, ``known_entity`` and
            ``error`` (invalid rows) to each prediction.
        :return: ``(response body, response content type)``.
        :raises RequestError: unsupported content type or accept, or a body that cannot be read at all.
        """
        ctype, _ = _parse_media_type(content_type)
        out_type, verbose = self._negotiate(accept)
        if isinstance(body, (bytes, bytearray, memoryview)):
            try:
                text = bytes(body).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(f"request body is not UTF-8 ({exc})") from None
        elif isinstance(body, str):
            text = body
        else:
            raise RequestError(f"request body: expected bytes or str, got {type(body).__name__}")
        if ctype == CSV:
            entities, ips, errors = _read_csv(text)
        elif ctype == JSON:
            entities, ips, errors = _read_json(text)
        elif ctype in _JSONLINES_ALIASES:
            entities, ips, errors = _read_jsonlines(text)
        else:
            raise RequestError(f"content type {content_type!r} is not supported; use {CSV}, {JSON} or {JSONLINES}", status=415)
        predictions = self._predict_records(entities, ips, errors, verbose)
        if out_type == JSON:
            payload = '{"predictions": [' + ", ".join(predictions) + "]}"
        else:
            payload = "".join(p + "\n" for p in predictions)
        return payload.encode("utf-8"), out_type + ("; verbose=True" if verbose else "")

    @staticmethod
    def _negotiate(accept: str | None) -> tuple[str, bool]:
        if not accept or not accept.strip():
            return JSON, False
        for option in accept.split(","):
            mtype, params = _parse_media_type(option)
            verbose = params.get("verbose", "false").lower() in ("true", "1", "yes")
            if mtype in (JSON, "*/*", "application/*"):
                return JSON, verbose
            if mtype in _JSONLINES_ALIASES:
                return JSONLINES, verbose
        raise RequestError(f"accept {accept!r} is not supported; use {JSON} or {JSONLINES} (optionally '; verbose=True')", status=406)

    def _predict_records(self, entities: list[str], ips: list[str], errors: list[str | None], verbose: bool) -> list[str]:
        n = len(entities)
        if n == 0:
            return []
        scored = self.score(entities, ips)
        ok = scored.valid_ip & np.fromiter((e is None for e in errors), dtype=bool, count=n)
        dp_text = scored.dot_product.astype(str)
        if not verbose:
            return ['{"dot_product": ' + (dp_text[i] if ok[i] else "null") + "}" for i in range(n)]
        ent_vecs = self.entity_embeddings(entities)
        ip_vecs = self._ip_vectors(*parse_ipv4(ips))
        ent_txt = _rows_as_json(ent_vecs)
        ip_txt = _rows_as_json(ip_vecs)
        out = []
        for i in range(n):
            if ok[i]:
                out.append(
                    '{"dot_product": ' + dp_text[i] + ', "entity_embedding": ' + ent_txt[i] + ', "ip_embedding": ' + ip_txt[i]
                    + ', "known_entity": ' + ("true" if scored.known_entity[i] else "false") + "}"
                )
            else:
                reason = errors[i] or f"invalid IPv4 address: {ips[i][:64]!r}"
                ent_part = ent_txt[i] if errors[i] is None else "null"
                known = "true" if (errors[i] is None and scored.known_entity[i]) else "false"
                out.append(
                    '{"dot_product": null, "entity_embedding": ' + ent_part + ', "ip_embedding": null, "known_entity": '
                    + known + ', "error": ' + json.dumps(reason) + "}"
                )
        return out


def _rows_as_json(vectors: np.ndarray) -> list[str]:
    text = vectors.astype(str)
    return ["[" + ", ".join(row) + "]" if not np.isnan(vectors[i, 0]) else "null" for i, row in enumerate(text.tolist())]


def _two_fields(values: Any) -> tuple[str, str, str | None]:
    """(entity, ip, error) from a two-item feature list."""
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        return "", "", f"expected two features [entity, ip], got {n}"
    e, ip = values
    if e is None or (isinstance(e, str) and not e.strip()):
        return "", "", "missing entity"
    e_text = e.strip() if isinstance(e, str) else str(e)
    ip_text = ip.strip() if isinstance(ip, str) else ("" if ip is None else str(ip))
    return e_text, ip_text, None


def _read_csv(text: str) -> tuple[list[str], list[str], list[str | None]]:
    entities, ips, errors = [], [], []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if '"' in text:
        rows: Iterable[list[str]] = csv.reader(io.StringIO("\n".join(lines)))
    else:
        rows = (ln.split(",") for ln in lines)
    for fields in rows:
        if len(fields) != 2:
            entities.append("")
            ips.append("")
            errors.append(f"expected 2 fields (entity,ip), got {len(fields)}")
            continue
        e, ip = fields[0].strip(), fields[1].strip()
        entities.append(e)
        ips.append(ip)
        errors.append(None if e else "missing entity")
    return entities, ips, errors


def _instance_fields(inst: Any) -> tuple[str, str, str | None]:
    if isinstance(inst, dict):
        if "features" in inst:
            return _two_fields(inst["features"])
        data = inst.get("data")
        if isinstance(data, dict) and isinstance(data.get("features"), dict) and "values" in data["features"]:
            return _two_fields(data["features"]["values"])
    return "", "", 'expected {"features": [entity, ip]} or {"data": {"features": {"values": [entity, ip]}}}'


def _collect(instances: Iterable[Any]) -> tuple[list[str], list[str], list[str | None]]:
    entities, ips, errors = [], [], []
    for inst in instances:
        e, ip, err = _instance_fields(inst)
        entities.append(e)
        ips.append(ip)
        errors.append(err)
    return entities, ips, errors


def _read_json(text: str) -> tuple[list[str], list[str], list[str | None]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise RequestError('application/json request: expected an object with an "instances" list')
    return _collect(doc["instances"])


def _read_jsonlines(text: str) -> tuple[list[str], list[str], list[str | None]]:
    entities, ips, errors = [], [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            entities.append("")
            ips.append("")
            errors.append(f"line is not valid JSON ({exc.msg})")
            continue
        batch = doc["instances"] if isinstance(doc, dict) and isinstance(doc.get("instances"), list) else [doc]
        e, i, r = _collect(batch)
        entities += e
        ips += i
        errors += r
    return entities, ips, errors
