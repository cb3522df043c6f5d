"""docs/configuration.md is generated from the typed configuration and must not be stale."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "configuration.md"


def _generator():
    path = REPO / "include" / "config" / "reference.py"
    spec = importlib.util.spec_from_file_location("seclake_config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_up_to_date() -> None:
    assert DOC.is_file(), "docs/configuration.md is missing: run `make config-doc`"
    assert DOC.read_text(encoding="utf-8") == _generator().render(), (
        "docs/configuration.md is stale (the configuration changed): run `make config-doc` and commit the result")


def test_every_field_is_documented_with_type_default_allowed_values_and_readers() -> None:
    from seclake_ml.config import config_fields

    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*\|$", DOC.read_text(), flags=re.M)}
    names = [name for name, *_ in config_fields()]
    assert names and set(names) == set(rows)
    assert {"backend", "work_location", "extra.scoring.queue_url", "extra.sagemaker.role_arn",
            "extra.hyperparameters.vector_dim"} <= set(names)
    for name in names:
        cells = [c.strip() for c in rows[name].strip("|").split(" | ")]
        assert len(cells) == 6 and all(cells[1:4]) and cells[5], rows[name]
        assert cells[4] != "—", f"{name}: no module of plugins/ or dags/ reads it (a dead setting?)"
