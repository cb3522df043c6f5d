"""DAG integrity: every DAG file imports offline, fast, without heavy libraries, and follows the house rules.

Also checks the deployment artifacts that ship next to the DAGs: the plugin folder's ignore file, the
sample configurations and the MWAA startup script (the docker-compose stack: tests/test_compose.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
PLUGINS = REPO / "plugins"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
IMPORT_BUDGET_S = 2.0
HEAVY_MODULES = ("pandas", "duckdb", "pyarrow", "torch", "boto3", "botocore", "awswrangler", "numpy")

os.environ.setdefault("AIRFLOW_HOME", str(REPO / "var" / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def _forbidden(*args, **kwargs):
    raise AssertionError("DAG files must not read Variables or connections while they are parsed")


@pytest.fixture(scope="module")
def dagbag():
    """All DAGs in dags/, parsed with Variable and connection lookups made to fail."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    mp = pytest.MonkeyPatch()
    mp.setattr(Variable, "get", staticmethod(_forbidden))
    mp.setattr(BaseHook, "get_connection", classmethod(_forbidden))
    try:
        yield DagBag(dag_folder=str(DAGS))
    finally:
        mp.undo()


def test_dag_files_exist() -> None:
    assert DAG_FILES, f"no DAG files found in {DAGS}"


def test_no_import_errors(dagbag) -> None:
    assert not dagbag.import_errors, "DAG import errors:\n" + "\n".join(
        f"{path}: {err}" for path, err in dagbag.import_errors.items()
    )
    files = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files == {p.name for p in DAG_FILES}, f"every DAG file defines a DAG; got {sorted(files)}"


def test_every_dag_has_tags_docs_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id}: doc_md missing or too short for on-call use"
        for t in dag.tasks:
            assert t.retries >= 2, f"{dag_id}.{t.task_id}: retries={t.retries}, expected >= 2"
            assert t.on_failure_callback, f"{dag_id}.{t.task_id}: no failure callback"


def test_training_dag_shape(dagbag) -> None:
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable

    dag = dagbag.dags["seclake_ipinsights_training"]

    # weekly, and on the drift Asset the scoring DAG updates
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["seclake_ml_ipinsights_drift"]
    assert isinstance(dag.timetable.asset_condition.objects[0], Asset)
    weekly = dag.timetable.timetable
    assert isinstance(weekly, CronDataIntervalTimetable)
    assert weekly.expression == "0 3 * * 1"
    assert str(weekly.timezone) in ("UTC", "Timezone('UTC')")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.task_ids) == {
        "extract.plan_extractions",
        "extract.extract_pairs",
        "extract.summarize_extraction",
        "prepare_training_data",
        "train_ipinsights",
        "calibrate_threshold",
        "quality_gate",
        "rollout_model",
    }
    mapped = dag.get_task("extract.extract_pairs")
    assert type(mapped).__name__ == "MappedOperator"
    assert mapped.operator_class.__name__ == "SecurityLakePairsOperator"
    assert dag.get_task("extract.plan_extractions").downstream_task_ids == {"extract.extract_pairs"}
    assert dag.get_task("extract.extract_pairs").downstream_task_ids == {"extract.summarize_extraction"}
    chain = ["extract.summarize_extraction", "prepare_training_data", "train_ipinsights", "calibrate_threshold",
             "quality_gate", "rollout_model"]
    for up, down in zip(chain, chain[1:]):
        assert down in dag.get_task(up).downstream_task_ids, (up, down)
    rollout = dag.get_task("rollout_model")
    assert [a.name for a in rollout.outlets] == ["seclake_ml_ipinsights_active_model"]


def test_training_dag_params_are_validated(dagbag) -> None:
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["seclake_ipinsights_training"]
    defaults = {"lookback_days": 7, "sources": None, "hyperparameters": {}, "train_fraction": 0.7,
                "target_fpr": 0.01, "auc_floor": 0.9, "gate_tolerance": 0.01}
    assert dag.params.validate() == defaults
    bad_values = [("lookback_days", 0), ("lookback_days", "7"), ("lookback_days", 91), ("sources", ["VPC FLOW"]),
                  ("target_fpr", 0), ("target_fpr", 1.5), ("auc_floor", 2), ("train_fraction", 0.99),
                  ("hyperparameters", "epochs=3")]
    for key, value in bad_values:
        params = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError):
            params[key] = value  # ParamsDict validates on assignment (and again in validate())
            params.validate()
    ok = copy.deepcopy(dag.params)
    ok["sources"] = ["vpc_flow:instance_peer", "route53"]
    ok["lookback_days"] = 14
    assert ok.validate() == {**defaults, "lookback_days": 14, "sources": ["vpc_flow:instance_peer", "route53"]}


_TIMER = textwrap.dedent(
    """
    import importlib.util, json, sys, time
    t0 = time.perf_counter()
    import airflow.sdk
    from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable, Param, TaskGroup, task
    t1 = time.perf_counter()
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t2 = time.perf_counter()
    heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(sys.argv[2].split(",")))
    print(json.dumps({"airflow_s": t1 - t0, "dag_s": t2 - t1, "heavy": heavy}))
    """
)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_without_heavy_modules(dag_file: Path, record_property) -> None:
    """Fresh interpreter: time the DAG file's own import, after Airflow itself is loaded."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-c", _TIMER, str(dag_file), ",".join(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    record_property("dag_import_s", round(report["dag_s"], 3))
    print(f"\n{dag_file.name}: DAG file import {report['dag_s']:.3f}s (Airflow SDK import {report['airflow_s']:.3f}s)")
    assert not report["heavy"], f"{dag_file.name} imports heavy modules at parse time: {report['heavy']}"
    assert report["dag_s"] < IMPORT_BUDGET_S, f"{dag_file.name} took {report['dag_s']:.2f}s to import"


# ----------------------------------------------------------------------------- deploy artifacts
def test_plugin_scanner_only_sees_plugin_module() -> None:
    """Airflow imports each .py under plugins/ as a top-level module; only plugin.py may be scanned."""
    from airflow._shared.module_loading import find_path_from_directory

    found = sorted(Path(p).relative_to(PLUGINS).as_posix() for p in find_path_from_directory(str(PLUGINS), ".airflowignore", "glob"))
    assert found == ["seclake_ml/plugin.py"]


def test_plugin_registers_macros() -> None:
    from airflow.plugins_manager import AirflowPlugin

    from seclake_ml.plugin import SeclakeMlPlugin

    assert issubclass(SeclakeMlPlugin, AirflowPlugin) and SeclakeMlPlugin.name == "seclake_ml"
    names = {m.__name__ for m in SeclakeMlPlugin.macros}
    assert {"interval_key", "iso"} <= names


@pytest.mark.parametrize("name", ["local.json", "aws.example.json"])
def test_sample_configs_validate(name: str) -> None:
    from seclake_ml.config import load_config

    text = (REPO / "include" / "config" / name).read_text(encoding="utf-8")
    cfg = load_config(variable_json=text, environ={})
    assert cfg.backend == ("aws" if name.startswith("aws") else "local")
    # the local sample also reads S3 data events (the sample lake has them); the aws example leaves
    # them to the deployment, as their volume and Athena cost vary by account
    assert len(cfg.source_views()) == (4 if name.startswith("aws") else 5)


def test_aws_example_config_holds_what_training_and_rollout_need() -> None:
    from seclake_ml.config import load_config

    raw = json.loads((REPO / "include" / "config" / "aws.example.json").read_text(encoding="utf-8"))
    cfg = load_config(variable_json=json.dumps(raw), environ={})
    assert cfg.sagemaker.role_arn and cfg.work_location.startswith("s3://")
    assert set(raw["extra"]["sagemaker"]) >= {"role_arn", "resource_prefix", "ssm_path", "training_instance_type",
                                              "transform_instance_type", "endpoint_instance_type", "alarms"}
    iam = (REPO / "include" / "iam" / "README.md").read_text(encoding="utf-8")
    examples = dict(re.findall(r"^\| `\$\{(\w+)\}` \| `([^`]+)` \|", iam, flags=re.M))
    assert cfg.athena_workgroup == examples["AthenaWorkgroup"]
    assert all(a.startswith(cfg.sagemaker.resource_prefix + "-") for a in cfg.sagemaker.alarms)
    assert cfg.scoring.sns_topic_arn.endswith(":" + examples["FindingsTopicName"])


def test_mwaa_startup_script_exports_valid_defaults(tmp_path: Path) -> None:
    script = REPO / "include" / "mwaa" / "startup.sh"
    sh = shutil.which("sh") or "/bin/sh"
    proc = subprocess.run(
        [sh, "-c", f'. "{script}" && printf "%s" "$SECLAKE_ML_CONFIG"'],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_REGION": "eu-west-1",
             "SECLAKE_ML_DEFAULT_WORK_LOCATION": "s3://my-seclake-work/ipinsights"},
        check=True,
    )
    from seclake_ml.config import load_config

    cfg = load_config(variable_json=proc.stdout, environ={})
    assert (cfg.backend, cfg.region, cfg.glue_db) == ("aws", "eu-west-1", "amazon_security_lake_glue_db_eu_west_1")
    assert cfg.work_location == "s3://my-seclake-work/ipinsights"
    # the defaults are the names the least-privilege policies of include/iam grant
    iam = (REPO / "include" / "iam" / "README.md").read_text(encoding="utf-8")
    examples = dict(re.findall(r"^\| `\$\{(\w+)\}` \| `([^`]+)` \|", iam, flags=re.M))
    assert cfg.athena_workgroup == examples["AthenaWorkgroup"] == "seclake-ml"
    assert cfg.sagemaker.resource_prefix == examples["ResourcePrefix"]
    assert cfg.sagemaker.ssm_path == "/" + examples["ParameterPath"]
    assert cfg.sagemaker.role_arn is None  # no safe default: training fails naming extra.sagemaker.role_arn


def test_mwaa_startup_script_takes_the_sagemaker_role_and_keeps_a_given_config() -> None:
    script = REPO / "include" / "mwaa" / "startup.sh"
    role = "arn:aws:iam::111122223333:role/seclake-ml-sagemaker"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECLAKE_ML_DEFAULT_SAGEMAKER_ROLE_ARN": role,
            "SECLAKE_ML_DEFAULT_WORK_LOCATION": "s3://my-seclake-work/ipinsights"}
    show = f'. "{script}" && printf "%s" "$SECLAKE_ML_CONFIG"'
    out = subprocess.run(["sh", "-c", show], capture_output=True, text=True, env=base, check=True).stdout
    from seclake_ml.config import load_config

    assert load_config(variable_json=out, environ={}).sagemaker.role_arn == role
    given = json.dumps({"backend": "local"})
    out = subprocess.run(["sh", "-c", show], capture_output=True, text=True, env={**base, "SECLAKE_ML_CONFIG": given},
                         check=True).stdout
    assert out == given


@pytest.mark.parametrize("events,reason", [
    ({"seclake_ml_ipinsights_drift": [SimpleNamespace(extra={"reason": "batch b: score PSI 0.6 is above 0.25"})]},
     "drift"),
    ({"seclake_ml_ipinsights_drift": [SimpleNamespace(extra={})]}, "an event made by hand, without a reason"),
])
def test_an_asset_triggered_training_run_plans_the_window_ending_at_its_trigger(dagbag, monkeypatch, events,
                                                                                   reason) -> None:
    """Asset-triggered runs have no data interval: the window ends at the hour the run was triggered."""
    from datetime import datetime, timezone

    from seclake_ml import airflow_support

    monkeypatch.setattr(airflow_support, "read_config_variable", lambda key="seclake_ml_config": None)
    monkeypatch.setenv("SECLAKE_ML_CONFIG", json.dumps({"sources": ["vpc_flow"]}))
    plan = dagbag.dags["seclake_ipinsights_training"].get_task("extract.plan_extractions").python_callable
    run = SimpleNamespace(run_after=datetime(2024, 3, 5, 14, 37, 12, tzinfo=timezone.utc), logical_date=None)
    got = plan(params={"lookback_days": 7, "sources": None}, dag_run=run, data_interval_start=None,
               data_interval_end=None, triggering_asset_events=events)
    assert got == [{"source": "vpc_flow", "view": "instance_peer", "start": "2024-02-27T14:00:00Z",
                    "end": "2024-03-05T14:00:00Z"}], reason
