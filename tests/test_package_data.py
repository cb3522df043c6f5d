"""SQL templates are package data of ``seclake_ml``: found through ``importlib.resources`` wherever the
package is imported from (a folder, an unpacked plugins.zip, the zip itself), never through paths of
this repository or environment variables."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from seclake_ml import sqlsafe
from seclake_ml.sqlsafe import UnsafeSqlError

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ["athena/pairs_classified.sql", "athena/pairs_counts.sql", "athena/pairs_unload.sql", "athena/risk_events_unload.sql",
             "common/pairs_reason.sql",
             "duckdb/pairs_bad_values.sql", "duckdb/pairs_candidates.sql", "duckdb/pairs_copy.sql",
             "duckdb/pairs_counts.sql", "duckdb/pairs_grouped.sql", "duckdb/pairs_profile.sql", "duckdb/pairs_stage.sql",
             "duckdb/pairs_write.sql", "duckdb/risk_events.sql"]


def test_the_package_ships_every_template_it_renders() -> None:
    assert sqlsafe.template_names() == TEMPLATES
    plugins = REPO / "plugins"
    rendered = {path.relative_to(plugins).as_posix() for path in (plugins / "seclake_ml").rglob("*.sql")}
    assert rendered == {f"seclake_ml/sql/{name}" for name in TEMPLATES}
    assert not (REPO / "include" / "sql").exists()
    text = sqlsafe.render("duckdb/pairs_counts.sql", stage=sqlsafe.ident("pairs_stage"))
    assert "pairs_stage" in text and "${" not in text


def test_unknown_or_unsafe_template_names_fail_naming_them() -> None:
    with pytest.raises(FileNotFoundError, match=r"'duckdb/nope\.sql'.*athena/pairs_classified\.sql"):
        sqlsafe.render("duckdb/nope.sql")
    for bad in ("../sql/duckdb/pairs_counts.sql", "duckdb/PAIRS.sql", "/etc/passwd", 7):
        with pytest.raises(UnsafeSqlError, match="invalid template name"):
            sqlsafe.render(bad)


def test_templates_are_read_from_a_zip_import(tmp_path: Path) -> None:
    """Imported straight from a zip (no files on disk), the templates still load: no path arithmetic."""
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (REPO / "plugins" / "seclake_ml").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(REPO / "plugins").as_posix())
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from seclake_ml import sqlsafe; "
            "print(json.dumps([sqlsafe.__file__, sqlsafe.template_names(), "
            "sqlsafe.render('duckdb/pairs_counts.sql', stage=sqlsafe.ident('s'))]))")
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(archive)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, names, text = json.loads(proc.stdout)
    assert where.startswith(str(archive)) and names == TEMPLATES and "FROM s" in text.replace("\n", " ")


def test_no_code_looks_for_templates_outside_the_package() -> None:
    for path in (REPO / "plugins").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle in ("SECLAKE_ML_SQL_DIR", "include/sql", '"include" / "sql"', "dags/include"):
            assert needle not in text, f"{path.relative_to(REPO)} refers to {needle}"
