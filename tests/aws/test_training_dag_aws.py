"""The whole training DAG on the aws backend: ``dag.test()`` in a child process against the moto server.

The child process gets a throwaway, migrated Airflow home, ``SECLAKE_ML_CONFIG`` with ``backend:
aws`` and ``AWS_ENDPOINT_URL`` pointing at the session's moto server, which runs in this (the
pytest) process. Every task runs its real code: Athena queries, S3 reads and writes, the training
job, Batch Transform jobs, Model/EndpointConfig/Endpoint and the SSM registry all go to moto. The
test then reads back from the server what was sent.

moto stores requests but computes nothing, so three services get a stand-in *inside the server*
(never in the code under test):

* **Athena** does not execute SQL: an ``UNLOAD`` would write no Parquet and the counts query
  would return no rows. The server's ``StartQueryExecution`` is wrapped: for an ``UNLOAD`` it
  writes the pairs of that query's source (recognised by the ``'<source>' AS source`` literal)
  under the query's ``TO '<prefix>'``, as Athena's engine would; for the counts ``SELECT`` it binds
  a canned result (reason, row_count, distinct_pairs) to that execution, as the moto control
  API's result queue does, but per source so that the order in which the mapped extractions start
  does not matter. The extraction's own clean-up of the destination prefix still runs first, for real.
* **Batch Transform** runs no container: ``CreateTransformJob`` is wrapped to write the ``.out``
  objects (see ``test_training_operators_aws.batch_transform``): the candidate's artifact
  scores seen pairs high and injected ones low, the earlier model's artifact scores noise.
* **SageMaker endpoints** start ``Creating`` here and become ``InService`` on a later
  ``DescribeEndpoint``; the endpoint's status is recorded whenever ``PutParameter`` arrives, to show
  the registry is written only once the endpoint serves.

An earlier activation is seeded in the SSM registry only (no endpoint): moto has no
``UpdateEndpoint``, so the rollout must take its create path. The gate still scores the candidate's
sets with that earlier model (a Batch Transform job of its Model, which the gate re-creates from the
recorded artifact and image).

In the child process two waits are shortened and nothing else is changed: the provider's
``SageMakerHook.check_status`` polls with a 0 s interval instead of sleeping 30 s before each
describe, and the rollout's ``_sleep`` between endpoint polls is a no-op.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import AirflowRuntime

from .moto_server import DEFAULT_ACCOUNT, MotoServer, athena_result
from .test_training_operators_aws import (  # noqa: F401  (batch_transform is a fixture)
    BUCKET,
    ENDPOINT,
    IMAGE,
    INTERVAL,
    ROLE,
    SSM_ACTIVE,
    VERSION,
    WORK,
    BatchTransformStandIn,
    batch_transform,
    client,
    config,
    known_pair_scores,
    known_pairs,
    noise_scores,
    parameter,
    parquet_bytes,
    sagemaker_backend,
    synthetic_pairs,
)

DAG_ID = "seclake_ipinsights_training"
RUN_DATE = "2026-01-12T03:00:00+00:00"  # data interval [2026-01-05 03:00, 2026-01-12 03:00)
SSM_PREVIOUS = f"/seclake-ml/ipinsights/{ENDPOINT}/previous"
OLD_VERSION = "ipinsights-20251229T0300Z-20260105T0300Z"
OLD_ARTIFACT = f"{WORK}/sagemaker/training/seclake-ml-train-old/output/model.tar.gz"
COUNT_COLUMNS = ("reason", "row_count", "distinct_pairs")
SOURCE_VIEWS = {"vpc_flow": "vpc_flow:instance_peer", "cloudtrail_signin": "cloudtrail_signin:principal_ip"}
DROPPED = {"vpc_flow": [("ipv6", 3, 2), ("not_ip", 1, 1)], "cloudtrail_signin": []}

DRIVER = textwrap.dedent(
    """
    import json
    import sys
    from datetime import datetime

    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    import seclake_ml.aws.rollout as rollout

    _check_status = SageMakerHook.check_status

    def check_status(self, job_name, key, describe, check_interval, *args, **kwargs):
        return _check_status(self, job_name, key, describe, 0, *args, **kwargs)

    SageMakerHook.check_status = check_status  # no 30 s sleep before each status check
    rollout._sleep = lambda seconds: None

    import importlib.util

    from airflow import settings
    from airflow.models.xcom import XComModel

    spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    assert dag.dag_id == sys.argv[2], dag.dag_id
    run = dag.test(logical_date=datetime.fromisoformat(sys.argv[3]), run_conf=json.loads(sys.argv[4]))
    with settings.Session() as session:
        tis = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)
        xcom = {f"{r.task_id}[{r.map_index}]:{r.key}": XComModel.deserialize_value(r) for r in rows}
    print("DAG_TEST_RESULT " + json.dumps({"state": str(run.state), "tis": tis, "xcom": xcom}, default=str))
    """
)


def _env(runtime: AirflowRuntime, home: Path) -> dict[str, str]:
    """This process's environment (already pointed at moto by ``aws_env``) plus the Airflow home."""
    return runtime.env(home, None, None, config(), aws_connection=True)


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory, dag_runtime: AirflowRuntime) -> tuple[Path, float]:
    home = tmp_path_factory.mktemp("airflow_aws") / "airflow"
    t0 = time.perf_counter()
    proc = subprocess.run([dag_runtime.python, "-m", "airflow", "db", "migrate"], env=_env(dag_runtime, home),
                          cwd=dag_runtime.cwd,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return home, time.perf_counter() - t0


def _s3_backend():
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT]["global"]


@pytest.fixture
def athena_engine(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Answer the extraction's queries inside the moto server (see the module docstring)."""
    from moto.athena.models import AthenaBackend, QueryResults

    frames = synthetic_pairs()
    original = AthenaBackend.start_query_execution
    written: dict[str, str] = {}

    def start_query_execution(self: Any, query: str, *args: Any, **kwargs: Any) -> str:
        found = re.search(r"'([a-z0-9_]+)' AS source", query)
        source = found.group(1) if found else None
        frame = frames[SOURCE_VIEWS[source]] if source in SOURCE_VIEWS else None
        if frame is not None and query.startswith("SELECT"):
            counts = [("ok", len(frame), len(frame.drop_duplicates(["entity", "ip"]))), *DROPPED[source]]
            self.query_results_queue.insert(0, QueryResults(**athena_result(COUNT_COLUMNS, sorted(counts))))
        exec_id = original(self, query, *args, **kwargs)
        if frame is not None and query.startswith("UNLOAD"):
            destination = re.search(r"TO '(s3://[^']+)'", query).group(1)
            bucket, _, prefix = destination[len("s3://"):].partition("/")
            key = f"{prefix}{exec_id}_00000_part-0.parquet"
            _s3_backend().put_object(bucket, key, parquet_bytes(frame))
            written[source] = f"s3://{bucket}/{key}"
        return exec_id

    monkeypatch.setattr(AthenaBackend, "start_query_execution", start_query_execution)
    return {"frames": frames, "written": written}


def _seed_earlier_activation() -> dict[str, Any]:
    from seclake_ml.aws import names, registry
    from seclake_ml.config import SeclakeConfig

    record = {
        "version": OLD_VERSION, "threshold": -0.25, "endpoint_name": ENDPOINT,
        "endpoint_config_name": "seclake-ml-epc-old", "model_data_url": OLD_ARTIFACT, "image_uri": IMAGE,
        "model_name": names.model_name("seclake-ml", model_data_url=OLD_ARTIFACT, image_uri=IMAGE),
    }
    return registry.record_active(SeclakeConfig.from_mapping(config()), record)["record"]


@pytest.mark.e2e
def test_dag_runs_end_to_end_on_the_aws_backend(
    aws_env: MotoServer, airflow_home: tuple[Path, float], athena_engine: dict[str, Any], dag_runtime: AirflowRuntime,
    batch_transform: BatchTransformStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, record_property: Any,
) -> None:
    from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
    from moto.ssm.models import SimpleSystemManagerBackend

    home, migrate_s = airflow_home
    client("s3").create_bucket(Bucket=BUCKET)
    client("athena").create_work_group(Name="seclake", Configuration={})
    client("cloudwatch").put_metric_alarm(
        AlarmName="seclake-ml-endpoint-5xx", MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker",
        Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    aws_env.athena_immediate()
    # a stale object of an earlier run under one UNLOAD destination: the extraction must remove it
    stale = f"ml/pairs/vpc_flow/instance_peer/{INTERVAL}/old-run.parquet"
    client("s3").put_object(Bucket=BUCKET, Key=stale, Body=b"stale")
    old = _seed_earlier_activation()
    batch_transform.default = known_pair_scores(known_pairs(athena_engine["frames"]))
    batch_transform.by_artifact[OLD_ARTIFACT] = noise_scores

    endpoint_seen: list[str] = []
    puts: list[tuple[str, str | None]] = []
    init, describe, put = FakeEndpoint.__init__, SageMakerModelBackend.describe_endpoint, \
        SimpleSystemManagerBackend.put_parameter

    def endpoint_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.endpoint_status = "Creating"

    def describe_endpoint(self: Any, endpoint_name: str) -> Any:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:
            endpoint_seen.append(endpoint.endpoint_status)
            if len(endpoint_seen) >= 2:
                endpoint.endpoint_status = "InService"
        return describe(self, endpoint_name)

    def put_parameter(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        endpoint = sagemaker_backend().endpoints.get(ENDPOINT)
        puts.append((name, endpoint.endpoint_status if endpoint else None))
        return put(self, name, *args, **kwargs)

    monkeypatch.setattr(FakeEndpoint, "__init__", endpoint_init)
    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", describe_endpoint)
    monkeypatch.setattr(SimpleSystemManagerBackend, "put_parameter", put_parameter)

    driver = tmp_path / "run_dag.py"
    driver.write_text(DRIVER, encoding="utf-8")
    run_conf = {"hyperparameters": {"epochs": 3, "vector_dim": 64}}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [dag_runtime.python, str(driver), str(dag_runtime.dag_file(home, f"{DAG_ID}.py")), DAG_ID, RUN_DATE,
         json.dumps(run_conf)],
        env=_env(dag_runtime, home), cwd=dag_runtime.cwd, capture_output=True, text=True, timeout=600, check=False,
    )
    dag_s = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("DAG_TEST_RESULT ")]
    assert proc.returncode == 0 and found, f"dag.test() failed (rc={proc.returncode}):\n{output[-8000:]}"
    result = json.loads(found[-1][len("DAG_TEST_RESULT "):])
    failed = {k: v for k, v in result["tis"].items() if v != "success"}
    assert result["state"] == "success" and not failed, f"{failed}\n{output[-8000:]}"
    assert set(result["tis"]) == {
        "extract.plan_extractions[-1]", "extract.extract_pairs[0]", "extract.extract_pairs[1]",
        "extract.summarize_extraction[-1]", "prepare_training_data[-1]", "train_ipinsights[-1]",
        "calibrate_threshold[-1]", "quality_gate[-1]", "rollout_model[-1]",
    }
    xcom = result["xcom"]
    data, model = xcom["prepare_training_data[-1]:return_value"], xcom["train_ipinsights[-1]:return_value"]
    cal, decision = xcom["calibrate_threshold[-1]:return_value"], xcom["quality_gate[-1]:return_value"]
    activated = xcom["rollout_model[-1]:return_value"]

    # ---- extraction: queries sent, the stale object removed before the UNLOAD, pairs counted
    athena = client("athena")
    queries = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]
               for i in athena.list_query_executions()["QueryExecutionIds"]]
    unloads = sorted(re.search(r"TO '([^']+)'", q["Query"]).group(1) for q in queries
                     if q["Query"].startswith("UNLOAD"))
    assert unloads == sorted(f"{WORK}/pairs/{v.replace(':', '/')}/{INTERVAL}/" for v in SOURCE_VIEWS.values())
    assert sum(q["Query"].startswith("SELECT") for q in queries) == 2
    assert {q["WorkGroup"] for q in queries} == {"seclake"}
    assert all("t.eventday BETWEEN '20260105' AND '20260112'" in q["Query"] for q in queries)
    assert client("s3").list_objects_v2(Bucket=BUCKET, Prefix=stale).get("KeyCount") == 0
    summary = xcom["extract.summarize_extraction[-1]:return_value"]
    rows = sum(len(df) for df in athena_engine["frames"].values())
    assert summary["pairs_written"] == rows
    assert set(summary["pairs"].values()) == set(unloads)

    # ---- training data and the training job
    assert data["train_uri"] == f"{WORK}/training/data/{INTERVAL}/train/"
    assert data["holdout_uri"] == f"{WORK}/training/data/{INTERVAL}/validation/"
    assert data["train_rows"] + data["holdout_rows"] == rows and data["holdout_rows"] > 0
    assert data["split_time"] == "2026-01-10T00:36:00Z"
    job_name = model["details"]["job_name"]
    job = client("sagemaker").describe_training_job(TrainingJobName=job_name)
    assert job_name.startswith("seclake-ml-train-20260105t0300-20260112t0300-")
    assert job["HyperParameters"] == {
        "num_entity_vectors": "20000", "vector_dim": "64", "random_negative_sampling_rate": "5",
        "mini_batch_size": "1000", "epochs": "3", "learning_rate": "0.01",
    }
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in job["InputDataConfig"]] == [
        ("train", data["train_uri"]), ("validation", data["holdout_uri"])]
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE and job["RoleArn"] == ROLE
    assert model["model_uri"] == f"{WORK}/sagemaker/training/{job_name}/output/model.tar.gz"
    assert model["version"] == VERSION

    # ---- calibration and gate: two transform jobs, the candidate's and the earlier model's
    jobs = {j["artifact"]: j for j in batch_transform.jobs}
    assert set(jobs) == {model["model_uri"], OLD_ARTIFACT}
    sm = client("sagemaker")
    cal_model = cal["details"]["model_name"]
    cal_job = sm.describe_transform_job(TransformJobName=cal["details"]["transform_job"])
    assert cal_job["ModelName"] == cal_model
    assert cal_job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"{WORK}/training/calibration/{INTERVAL}/input/")
    gate_job = sm.describe_transform_job(TransformJobName=jobs[OLD_ARTIFACT]["name"])
    assert gate_job["ModelName"] == old["model_name"]
    assert sm.describe_model(ModelName=old["model_name"])["PrimaryContainer"]["ModelDataUrl"] == OLD_ARTIFACT
    assert cal["auc"] == 1.0 and cal["report_uri"] == f"{WORK}/training/calibration/{INTERVAL}/report/report.html"
    assert decision["passed"] is True and decision["active"] == OLD_VERSION
    assert decision["active_auc"] is not None and decision["active_auc"] < 0.8

    # ---- rollout: Model, EndpointConfig, Endpoint; SSM written once InService
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    config_name = endpoint["EndpointConfigName"]
    variants = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    assert [(v["ModelName"], v["InstanceType"], v["InitialInstanceCount"]) for v in variants] == [
        (cal_model, "ml.m5.large", 1)]
    served = sm.describe_model(ModelName=cal_model)["PrimaryContainer"]
    assert (served["ModelDataUrl"], served["Image"]) == (model["model_uri"], IMAGE)
    assert endpoint_seen[0] == "Creating" and endpoint["EndpointStatus"] == "InService"
    assert puts == [(SSM_PREVIOUS, "InService"), (SSM_ACTIVE, "InService")]
    record = parameter(SSM_ACTIVE)
    assert record is not None
    assert (record["version"], record["threshold"], record["endpoint_config_name"], record["model_name"]) == (
        VERSION, cal["threshold"]["value"], config_name, cal_model)
    assert record["model_data_url"] == model["model_uri"] and record["auc"] == 1.0
    assert parameter(SSM_PREVIOUS) == old
    assert activated == {"activated": True, "version": VERSION, "threshold": cal["threshold"]["value"],
                         "previous_version": OLD_VERSION, "backend": "aws",
                         "details": {"endpoint_name": ENDPOINT, "endpoint_config_name": config_name,
                                     "model_name": cal_model, "action": "created"}}

    record_property("airflow_db_migrate_s", round(migrate_s, 1))
    record_property("dag_test_s", round(dag_s, 1))
    print(f"\nairflow db migrate {migrate_s:.1f}s; dag.test() on the aws backend {dag_s:.1f}s")
