"""The MWAA bundle, deployed as MWAA 3.3.1 deploys it, on MWAA's package set and Python 3.12.

The bundle is built (``make mwaa-bundle``), an Airflow home is laid out as MWAA lays out
``/usr/local/airflow`` (see :mod:`tests.mwaa.runtime`), and then, with the interpreter of the MWAA-shaped
environment: every module of ``plugins.zip`` imports from the unpacked plugins folder; Airflow parses the
three DAGs without an import error; the aws training DAG and both scoring DAGs run end to end against the
moto server of this process. The end-to-end runs are the aws tests of ``tests/aws`` themselves (same
stand-ins, same assertions), collected again here with :class:`~tests.mwaa.runtime.MwaaRuntime` as their
``dag_runtime``; the batch-scoring DAG run is written here.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.aws.moto_server import aws_env, moto_server  # noqa: F401  (fixtures)
from tests.aws.test_scoring_aws import (  # noqa: F401  (env and site are fixtures)
    LAKE_BUCKET,
    NEXT_DAY,
    SCORE_DAY,
    TRAIN_DAY,
    WORK,
    Env,
    Site,
    activate,
    env,
    findings,
    flagged,
    lake_uri,
    ledger,
    pair_of,
    predict,
    site,
)
from tests.aws.test_scoring_aws import (
    test_scoring_dag_turns_queue_messages_into_findings_and_alerts as test_scoring_dag_on_mwaa,  # noqa: F401
)
from tests.aws.test_training_dag_aws import airflow_home, athena_engine  # noqa: F401  (fixtures)
from tests.aws.test_training_dag_aws import (
    test_dag_runs_end_to_end_on_the_aws_backend as test_training_dag_on_mwaa,  # noqa: F401
)
from tests.aws.test_training_operators_aws import batch_transform  # noqa: F401  (fixture)

from .runtime import REPO, MwaaRuntime, load_builder

DAG_IDS = {"seclake_ipinsights_training", "seclake_ipinsights_scoring", "seclake_ipinsights_batch_scoring",
           "seclake_cloudtrail_risk_training"}
SQL_TEMPLATES = {"athena/pairs_classified.sql", "athena/pairs_counts.sql", "athena/pairs_unload.sql", "athena/risk_events_unload.sql",
                 "common/pairs_reason.sql",
                 "duckdb/pairs_bad_values.sql", "duckdb/pairs_candidates.sql", "duckdb/pairs_copy.sql",
                 "duckdb/pairs_counts.sql", "duckdb/pairs_grouped.sql", "duckdb/pairs_profile.sql",
                 "duckdb/pairs_stage.sql", "duckdb/pairs_write.sql", "duckdb/risk_events.sql"}
LOCAL_CONFIG = {"backend": "local"}
# Modules of the local backend's IP Insights trainer (PyTorch); never imported on the aws backend.
LOCAL_TRAINING_MODULES = {"seclake_ml.ipinsights.model", "seclake_ml.ipinsights.trainer"}


def _child(runtime: MwaaRuntime, home: Path, args: list[str], what: str, *, config: dict[str, Any] | None = None,
           timeout: int = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=runtime.env(home, None, None, config or LOCAL_CONFIG), cwd=home,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{what} failed (rc={proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc


# ----------------------------------------------------------------------------- the bundle itself
def test_bundle_holds_the_dags_the_runtime_package_and_its_data_only(mwaa_bundle: tuple[Path, dict]) -> None:
    out, summary = mwaa_bundle
    assert sorted(p.name for p in out.iterdir()) == ["dags", "plugins.zip", "requirements.txt", "startup.sh"]
    assert {p.name for p in (out / "dags").iterdir()} == {f"{d}.py" for d in DAG_IDS}
    with zipfile.ZipFile(out / "plugins.zip") as zf:
        names = zf.namelist()
    assert len(names) == summary["plugins_zip_files"] and ".airflowignore" in names
    assert {n.split("/")[0] for n in names} == {".airflowignore", "seclake_ml"}
    assert {n.removeprefix("seclake_ml/sql/") for n in names if n.endswith(".sql")} == SQL_TEMPLATES
    assert "seclake_ml/plugin.py" in names and "seclake_ml/scoring/engine.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or "test" in n.split("/")[-1]]
    assert not [n for n in names if "lakegen" in n or n.endswith("/generate.py") or "/gen_" in n]
    assert (out / "requirements.txt").read_bytes() == (REPO / "requirements.txt").read_bytes()
    assert (out / "startup.sh").read_bytes() == (REPO / "include" / "mwaa" / "startup.sh").read_bytes()
    # the same sources give the same zip, byte for byte (S3 object versions change only with the code)
    again = load_builder().build(out.parent / "again")
    assert again["plugins_zip_bytes"] == summary["plugins_zip_bytes"]
    assert (out.parent / "again" / "plugins.zip").read_bytes() == (out / "plugins.zip").read_bytes()


def test_offline_bundle_installs_from_its_own_wheels(
    mwaa_bundle: tuple[Path, dict], mwaa_env_dir: tuple[Path, dict], tmp_path: Path,
) -> None:
    """``OFFLINE=1``: plugins.zip carries every wheel the requirements need beyond the MWAA image's Airflow."""
    builder = load_builder()
    out = tmp_path / "offline"
    summary = builder.build(out, offline=True, wheel_cache=REPO / "var" / "mwaa-wheels")
    lines = (out / "requirements.txt").read_text().splitlines()
    assert "--no-index" in lines and "--find-links /usr/local/airflow/plugins/wheels" in lines
    assert '--constraint "/usr/local/airflow/plugins/wheels/constraints-3.3.1-py3.12.txt"' in lines
    assert [ln for ln in lines if not ln.startswith(("-", "#"))] == builder.requirement_lines(REPO)
    unpacked = tmp_path / "plugins"
    with zipfile.ZipFile(out / "plugins.zip") as zf:
        zf.extractall(unpacked)
    wheels = sorted(p.name for p in (unpacked / "wheels").glob("*.whl"))
    assert len(wheels) == summary["wheels"] > 50
    assert not [w for w in wheels if w.startswith(builder.IMAGE_DISTRIBUTIONS)]
    assert {w.split("-")[0] for w in wheels} >= {"duckdb", "matplotlib", "awswrangler",
                                                 "apache_airflow_providers_amazon"}
    # what the image provides: Airflow's own wheels, from the cache the bundle was made from
    image = tmp_path / "image"
    image.mkdir()
    cache = REPO / "var" / "mwaa-wheels" / builder.set_key(REPO)
    for wheel in cache.glob("*.whl"):
        if wheel.name.startswith(builder.IMAGE_DISTRIBUTIONS):
            (image / wheel.name).symlink_to(wheel)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(ln.replace("/usr/local/airflow/plugins", str(unpacked)) for ln in lines) + "\n")
    python = str(mwaa_env_dir[0] / "bin" / "python")
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         "--find-links", str(image), f"apache-airflow=={builder.AIRFLOW_VERSION}", "-r", str(reqs)],
        capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    installed = {i["metadata"]["name"].lower() for i in json.loads(proc.stdout)["install"]}
    assert {"duckdb", "matplotlib", "awswrangler", "apache-airflow-providers-amazon"} <= installed


# ----------------------------------------------------------------------------- imports and parsing on MWAA
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys, time
    import airflow  # puts the plugins folder on sys.path, as on MWAA
    plugins, repo = sys.argv[1], sys.argv[2]
    assert plugins in sys.path, sys.path
    import seclake_ml
    names, seconds, torch_only = [], {}, []
    for info in pkgutil.walk_packages(seclake_ml.__path__, "seclake_ml."):
        if info.name.endswith(".__main__"):  # the command line entry point runs when imported
            continue
        t0 = time.perf_counter()
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            torch_only.append(info.name)
        seconds[info.name] = time.perf_counter() - t0
        names.append(info.name)
    outside = sorted(m for m, mod in sys.modules.items() if m.startswith("seclake_ml")
                     and not (getattr(mod, "__file__", None) or plugins).startswith(plugins))
    try:
        import seclake_lakegen
        lakegen = seclake_lakegen.__file__
    except ModuleNotFoundError:
        lakegen = None
    from seclake_ml import sqlsafe
    print("RESULT " + json.dumps({
        "python": list(sys.version_info[:2]), "modules": names, "outside": outside, "lakegen": lakegen,
        "repo_on_path": [p for p in sys.path if p.startswith(repo) and not p.startswith(sys.prefix)],
        "templates": sqlsafe.template_names(),
        "rendered": sqlsafe.render("duckdb/pairs_counts.sql", stage=sqlsafe.ident("pairs_stage")),
        "torch_only": torch_only, "slowest": max(seconds.items(), key=lambda kv: kv[1]),
    }))
    """
)


def test_every_module_of_the_bundle_imports_on_the_mwaa_package_set(
    dag_runtime: MwaaRuntime, tmp_path: Path, mwaa_bundle: tuple[Path, dict],
) -> None:
    home = dag_runtime.lay_out(tmp_path / "airflow")
    script = tmp_path / "import_all.py"
    script.write_text(IMPORT_ALL)
    proc = _child(dag_runtime, home, [dag_runtime.python, str(script), str(home / "plugins"), str(REPO)],
                  "importing every module")
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    with zipfile.ZipFile(mwaa_bundle[0] / "plugins.zip") as zf:
        shipped = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in zf.namelist() if n.endswith(".py")}
    assert result["python"] == [3, 12]
    assert set(result["modules"]) | {"seclake_ml", "seclake_ml.__main__"} == shipped
    assert result["outside"] == [] and result["repo_on_path"] == [] and result["lakegen"] is None
    assert set(result["templates"]) == SQL_TEMPLATES and "pairs_stage" in result["rendered"]
    # torch is not part of the MWAA package set: only the local backend's trainer needs it
    assert result["torch_only"] == sorted(LOCAL_TRAINING_MODULES)


def test_airflow_parses_the_bundle_without_import_errors(dag_runtime: MwaaRuntime, tmp_path: Path) -> None:
    home = dag_runtime.lay_out(tmp_path / "airflow")
    airflow = [dag_runtime.python, "-m", "airflow"]
    _child(dag_runtime, home, [*airflow, "db", "migrate"], "airflow db migrate")
    t0 = time.perf_counter()
    # what the dag-processor does: parse every file of the DAGs folder, store DAGs and import errors
    _child(dag_runtime, home, [*airflow, "dags", "reserialize"], "airflow dags reserialize")
    parse_s = time.perf_counter() - t0
    for local in ([], ["--local"]):
        errors = _child(dag_runtime, home, [*airflow, "dags", "list-import-errors", *local, "-o", "json"],
                        "airflow dags list-import-errors")
        assert json.loads(_json_part(errors.stdout)) == [], errors.stdout
    listed = _child(dag_runtime, home, [*airflow, "dags", "list", "-o", "json"], "airflow dags list")
    assert {d["dag_id"] for d in json.loads(_json_part(listed.stdout))} == DAG_IDS
    plugins = _child(dag_runtime, home, [*airflow, "plugins", "-o", "json"], "airflow plugins")
    assert "seclake_ml" in {p["name"] for p in json.loads(_json_part(plugins.stdout))}
    print(f"\nairflow dags reserialize on the MWAA layout: {parse_s:.1f}s")


def _json_part(stdout: str) -> str:
    """The JSON line of a CLI's ``-o json`` output (Airflow logs to stdout too)."""
    found = [ln for ln in stdout.splitlines() if ln.startswith(("[", "{"))]
    assert found, f"no JSON in the output:\n{stdout[-3000:]}"
    return found[-1]


def test_sample_lake_commands_fail_on_one_line_without_the_dev_package(
    dag_runtime: MwaaRuntime, tmp_path: Path,
) -> None:
    home = dag_runtime.lay_out(tmp_path / "airflow")
    env = dag_runtime.env(home, None, None, LOCAL_CONFIG)
    env["PYTHONPATH"] = str(home / "plugins")  # the package itself is importable, the generator is not
    for args in (["lake", "generate", "--root", str(tmp_path / "lake"), "--start", "2024-01-01"],
                 ["lake", "drop-batch", "--root", str(tmp_path / "lake"), "--day", "next"]):
        proc = subprocess.run([dag_runtime.python, "-m", "seclake_ml", *args], env=env, cwd=home,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.count("\n") == 1 and "seclake_lakegen" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "lake").exists()


# ----------------------------------------------------------------------------- the batch-scoring DAG on MWAA
BATCH_DRIVER = textwrap.dedent(
    """
    import importlib.util, json, sys
    from datetime import datetime

    from airflow import settings
    from airflow.models.xcom import XComModel

    spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    run = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]))
    with settings.Session() as session:
        tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)
        xcom = {f"{r.task_id}:{r.key}": XComModel.deserialize_value(r) for r in rows}
    print("DAG_TEST_RESULT " + json.dumps({"state": str(run.state), "tis": tis, "xcom": xcom}, default=str))
    """
)


@pytest.mark.e2e
def test_batch_scoring_dag_on_mwaa(
    env: Env, site: Site, dag_runtime: MwaaRuntime, tmp_path: Path,  # noqa: F811  (env, site: fixtures)
) -> None:
    every = [k for day in (TRAIN_DAY, SCORE_DAY, NEXT_DAY) for k in site.keys[day]]
    from seclake_ml.scoring.ledger import Ledger

    env.upload(site, every)
    activate_record = activate(site)
    predicted = predict(site, site.keys[SCORE_DAY])
    reqs = [r for k in site.keys[SCORE_DAY] for r in predicted[k]]
    env.model = site.scorer
    expected = flagged(site, reqs)
    assert expected

    home = tmp_path / "airflow"
    config = json.loads(__import__("os").environ["SECLAKE_ML_CONFIG"])
    _child(dag_runtime, home, [dag_runtime.python, "-m", "airflow", "db", "migrate"], "airflow db migrate",
           config=config)
    driver = tmp_path / "run_dag.py"
    driver.write_text(BATCH_DRIVER)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [dag_runtime.python, str(driver), str(dag_runtime.dag_file(home, "seclake_ipinsights_batch_scoring.py")),
         "2024-03-06T00:00:00+00:00"],  # the daily interval [2024-03-05, 2024-03-06)
        env=dag_runtime.env(home, None, None, config, aws_connection=True), cwd=dag_runtime.cwd,
        capture_output=True, text=True, timeout=300, check=False,
    )
    dag_s = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("DAG_TEST_RESULT ")]
    assert proc.returncode == 0 and found, f"dag.test() failed (rc={proc.returncode}):\n{output[-8000:]}"
    result = json.loads(found[-1][len("DAG_TEST_RESULT "):])
    assert result["state"] == "success", output[-8000:]
    assert result["tis"] == {"hand_off_interval": "success", "score_interval": "success",
                             "risk_score_interval": "success"}, output[-8000:]
    bid = "interval-20240305T000000Z_20240306T000000Z"
    assert result["xcom"]["hand_off_interval:return_value"] == {
        "batch_id": bid, "origin": "interval", "objects": 2, "rejected": 0, "ignored": 0}
    scored = result["xcom"]["score_interval:return_value"]
    assert scored["totals"]["scored"] == 2 and scored["totals"]["findings"] == len(expected)
    assert scored["model_version"] == activate_record["version"]
    assert scored["result"] == f"{WORK}/{Ledger.result_key(bid)}"
    records = findings()
    assert {pair_of(r) for r in records} == expected
    assert {e["status"] for e in map(ledger().entry, map(lake_uri, site.keys[SCORE_DAY]))} == {"scored"}
    assert all(ledger().entry(lake_uri(k)) is None for k in site.keys[TRAIN_DAY] + site.keys[NEXT_DAY])
    assert LAKE_BUCKET in scored["findings_location"]
    print(f"\nbatch scoring dag.test() on the MWAA layout {dag_s:.1f}s")
