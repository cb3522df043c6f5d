"""The model artifact: ``model.npz`` (NumPy arrays only) and ``model.json`` (everything else).

``model.npz`` (written uncompressed, read with ``allow_pickle=False``):

================================  ==========================  ===========================================
array                             shape, dtype                what
================================  ==========================  ===========================================
``entity_table``                  (num_entity_vectors, d) f4  entity embeddings
``ip_table``                      (IP table rows, d) f4       prefix embeddings, one block per prefix
``ip_layer_<i>_weight``/``_bias`` (d, d) f4 / (d,) f4         encoder layers, ``i = 0..L-1``
``known_entity_hashes``           (k,) u8, sorted, unique     64-bit hashes of the training entities
================================  ==========================  ===========================================

``model.json`` holds the format name and version, the hyperparameters, the encoder (hash seed and
derived keys, prefix lengths, table rows and offsets), row counts, the training interval when given,
training metrics, the list of arrays with shapes and dtypes, and the SHA-256 of ``model.npz``.
Loading checks all of these and raises :class:`ArtifactError` on any mismatch, so a truncated,
swapped or edited file is refused instead of silently producing different scores.

NumPy only (no torch), so the scorer can load models.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from seclake_ml.ipinsights.encoding import EncoderSpec
from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters

__all__ = ["ArtifactError", "FORMAT_NAME", "FORMAT_VERSION", "IPInsightsArtifact", "load_artifact", "save_artifact"]

FORMAT_NAME = "seclake-ipinsights"
FORMAT_VERSION = 1
NPZ_NAME = "model.npz"
JSON_NAME = "model.json"


_LOAD_ONLY_KEYS = ("created_at", "npz_sha256", "npz_bytes")


class ArtifactError(ValueError):
    """A model folder that cannot be used: missing files, wrong format or version, bad checksum or shapes."""


@dataclass
class IPInsightsArtifact:
    """A trained model in memory: hyperparameters, encoder, arrays and metadata."""

    hyperparameters: IPInsightsHyperparameters
    spec: EncoderSpec
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    def expected_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return expected_arrays(self.hyperparameters, self.spec, int(self.arrays["known_entity_hashes"].shape[0]))

    @property
    def num_layers(self) -> int:
        return int(self.hyperparameters.num_ip_encoder_layers)


def expected_arrays(hp: IPInsightsHyperparameters, spec: EncoderSpec, known: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape, dtype string) that a model with these settings must have."""
    d = spec.vector_dim
    out: dict[str, tuple[tuple[int, ...], str]] = {
        "entity_table": ((spec.num_entity_vectors, d), "float32"),
        "ip_table": ((spec.ip_table_rows, d), "float32"),
        "known_entity_hashes": ((known,), "uint64"),
    }
    for i in range(hp.num_ip_encoder_layers):
        out[f"ip_layer_{i}_weight"] = ((d, d), "float32")
        out[f"ip_layer_{i}_bias"] = ((d,), "float32")
    return out


def _check_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...], str]], where: str) -> None:
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{where}: arrays do not match the model description (missing {missing}, unexpected {extra})")
    for name, (shape, dtype) in expected.items():
        a = arrays[name]
        if tuple(a.shape) != shape or a.dtype != np.dtype(dtype):
            raise ArtifactError(f"{where}: array {name!r} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ArtifactError(f"{where}: array {name!r} contains NaN or infinite values")
    known = arrays["known_entity_hashes"]
    if known.size > 1 and not (known[1:] > known[:-1]).all():
        raise ArtifactError(f"{where}: known_entity_hashes must be sorted and unique")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_artifact(artifact: IPInsightsArtifact, out_dir: str | Path) -> Path:
    """Write ``model.npz`` and ``model.json`` into ``out_dir`` (created if needed); returns the folder.

    Each file is written under a temporary name and renamed, the JSON last, so a reader never sees a
    description that points at a half-written array file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = dict(artifact.arrays)
    known = np.unique(np.asarray(arrays["known_entity_hashes"], dtype=np.uint64))
    arrays["known_entity_hashes"] = known
    expected = expected_arrays(artifact.hyperparameters, artifact.spec, int(known.size))
    _check_arrays(arrays, expected, "save_artifact")

    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(arrays[k]) for k in sorted(arrays)})
    data = buf.getvalue()
    npz_tmp = out / (NPZ_NAME + ".tmp")
    npz_tmp.write_bytes(data)
    os.replace(npz_tmp, out / NPZ_NAME)

    meta = {k: v for k, v in artifact.metadata.items() if k not in _LOAD_ONLY_KEYS}
    description = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hyperparameters": artifact.hyperparameters.to_dict(),
        "encoder": artifact.spec.to_dict(),
        "row_counts": meta.pop("row_counts", None),
        "training_interval": meta.pop("training_interval", None),
        "metrics": meta.pop("metrics", {}),
        "arrays": {k: {"shape": list(shape), "dtype": dtype} for k, (shape, dtype) in expected.items()},
        "npz_sha256": _sha256(data),
        "npz_bytes": len(data),
        "environment": {"python": platform.python_version(), "numpy": np.__version__},
        "extra": meta,
    }
    json_tmp = out / (JSON_NAME + ".tmp")
    json_tmp.write_text(json.dumps(description, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(json_tmp, out / JSON_NAME)
    return out


def load_artifact(model_dir: str | Path) -> IPInsightsArtifact:
    """Load and verify a model folder written by :func:`save_artifact`.

    :raises ArtifactError: missing files, unknown format or version, checksum mismatch, bad shapes.
    """
    d = Path(model_dir)
    jpath, npath = d / JSON_NAME, d / NPZ_NAME
    for p in (jpath, npath):
        if not p.is_file():
            raise ArtifactError(f"model folder {d}: {p.name} is missing")
    try:
        desc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{jpath}: not valid JSON ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{jpath}: not a {FORMAT_NAME} model description (format={desc.get('format') if isinstance(desc, dict) else None!r})")
    version = desc.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{jpath}: format_version {version!r} is not supported (this code reads version {FORMAT_VERSION})")
    data = npath.read_bytes()
    digest = _sha256(data)
    if digest != desc.get("npz_sha256"):
        raise ArtifactError(
            f"{npath}: SHA-256 {digest} does not match model.json ({desc.get('npz_sha256')}); the arrays were changed or "
            "belong to another model"
        )
    try:
        hp = IPInsightsHyperparameters.from_dict(desc["hyperparameters"])
        spec = EncoderSpec.from_dict(desc["encoder"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{jpath}: invalid hyperparameters or encoder ({exc})") from None
    if spec.num_entity_vectors != hp.num_entity_vectors or spec.vector_dim != hp.vector_dim:
        raise ArtifactError(f"{jpath}: encoder sizes disagree with the hyperparameters")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - damaged zip members raise zipfile/zlib errors, not only ValueError
        raise ArtifactError(f"{npath}: cannot be read as a NumPy .npz without pickle "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from None
    not_arrays = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if not_arrays:
        raise ArtifactError(f"{npath}: members {not_arrays[:5]} are not NumPy arrays")
    known = arrays.get("known_entity_hashes")
    expected = expected_arrays(hp, spec, int(known.shape[0]) if known is not None and known.ndim == 1 else -1)
    described = {k: (tuple(v["shape"]), v["dtype"]) for k, v in (desc.get("arrays") or {}).items()}
    if described != expected:
        raise ArtifactError(f"{jpath}: the 'arrays' section does not match the hyperparameters and encoder")
    _check_arrays(arrays, expected, str(npath))
    metadata = {
        "row_counts": desc.get("row_counts"),
        "training_interval": desc.get("training_interval"),
        "metrics": desc.get("metrics") or {},
        "created_at": desc.get("created_at"),
        "npz_sha256": digest,
        "npz_bytes": len(data),
        **(desc.get("extra") or {}),
    }
    return IPInsightsArtifact(hyperparameters=hp, spec=spec, arrays=arrays, metadata=metadata)
