"""Model artifact: round trip, verification on load, tamper detection, no pickle."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.ipinsights.artifact import ArtifactError, load_artifact, save_artifact
from seclake_ml.ipinsights.scorer import IPInsightsScorer


def test_train_save_load_gives_identical_scores(trained, model_dir, world):
    in_memory = trained.scorer().dot_product(world.test_entities, world.test_ips)
    loaded = IPInsightsScorer.load(model_dir).dot_product(world.test_entities, world.test_ips)
    np.testing.assert_array_equal(in_memory, loaded)
    # And the NumPy scorer agrees with the torch network it was exported from.
    import torch

    from seclake_ml.ipinsights.trainer import _score_rows

    scorer = IPInsightsScorer.load(model_dir)
    rows, _ = scorer.encode_entities(world.test_entities)
    addr, _ = scorer.encode_ips(world.test_ips)
    torch_scores = _score_rows(trained.model_, trained.spec_, rows, addr, torch.device("cpu"))
    np.testing.assert_allclose(loaded, torch_scores, rtol=1e-4, atol=1e-4)


def test_description_holds_what_operators_need(model_dir):
    desc = json.loads((model_dir / "model.json").read_text())
    assert desc["format"] == "seclake-ipinsights" and desc["format_version"] == 1
    assert desc["hyperparameters"]["vector_dim"] == 16
    assert desc["encoder"]["prefix_lengths"] == [8, 12, 16, 20, 24, 32]
    assert desc["encoder"]["hash_seed"] == 3 and len(desc["encoder"]["ip_prefix_salts"]) == 6
    assert desc["row_counts"]["train"]["pairs"] == 12_000 and desc["row_counts"]["known_entities"] == 200
    assert desc["training_interval"] == {"start": "2024-01-01T00:00:00Z", "end": "2024-01-08T00:00:00Z"}
    assert 0.9 < desc["metrics"]["validation:discriminator_auc"] <= 1.0
    assert len(desc["metrics"]["history"]) == 3
    assert desc["arrays"]["entity_table"] == {"shape": [1000, 16], "dtype": "float32"}
    assert len(desc["npz_sha256"]) == 64
    with np.load(model_dir / "model.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(desc["arrays"])


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def test_changed_array_bytes_are_refused(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path)
    data = bytearray((d / "model.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "model.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 .* does not match"):
        load_artifact(d)


def test_consistent_but_altered_description_is_refused(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path)
    desc = json.loads((d / "model.json").read_text())
    desc["hyperparameters"]["vector_dim"] = 32  # claims a different shape than the arrays have
    desc["encoder"]["vector_dim"] = 32
    (d / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ArtifactError, match="arrays"):
        load_artifact(d)


def test_replaced_arrays_with_matching_checksum_are_checked_for_shape(trained, tmp_path):
    d = trained.save(tmp_path / "m")
    with np.load(d / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["ip_table"] = arrays["ip_table"][:-1]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (d / "model.npz").write_bytes(buf.getvalue())
    desc = json.loads((d / "model.json").read_text())
    import hashlib

    desc["npz_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (d / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ArtifactError, match="array 'ip_table' is float32\\[.*\\], expected float32"):
        load_artifact(d)


def test_pickled_content_is_never_loaded(trained, tmp_path):
    d = trained.save(tmp_path / "m")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zipfile.ZipFile(d / "model.npz") as src:
            for name in src.namelist():
                zf.writestr(name, src.read(name))
        obj = io.BytesIO()
        np.save(obj, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        zf.writestr("evil.npy", obj.getvalue())
    (d / "model.npz").write_bytes(buf.getvalue())
    desc = json.loads((d / "model.json").read_text())
    import hashlib

    desc["npz_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (d / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ArtifactError, match="without pickle|unexpected"):
        load_artifact(d)


@pytest.mark.parametrize("change, message", [
    (lambda desc: desc.update(format_version=2), "format_version 2 is not supported"),
    (lambda desc: desc.update(format="something-else"), "not a seclake-ipinsights model"),
    (lambda desc: desc["encoder"].update(entity_hash_key="00" * 16), "entity_hash_key"),
    (lambda desc: desc["hyperparameters"].update(epochs=0), "epochs"),
])
def test_description_problems_are_named(model_dir, tmp_path, change, message):
    d = _copy(model_dir, tmp_path)
    desc = json.loads((d / "model.json").read_text())
    change(desc)
    (d / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(d)


def test_missing_files_are_named(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path)
    (d / "model.npz").unlink()
    with pytest.raises(ArtifactError, match="model.npz is missing"):
        load_artifact(d)


def test_resaving_a_loaded_artifact_reproduces_the_arrays(model_dir, tmp_path):
    art = load_artifact(model_dir)
    out = save_artifact(art, tmp_path / "again")
    again = load_artifact(out)
    for k, v in art.arrays.items():
        np.testing.assert_array_equal(v, again.arrays[k])
    assert again.metadata["training_interval"] == art.metadata["training_interval"]
