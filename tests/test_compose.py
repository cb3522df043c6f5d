"""docker-compose.yaml mirrors MWAA: checked on the file as Compose itself renders it (``docker compose config``).

No container runs here (there is no Docker engine in CI); Compose resolves anchors, merges, profiles and
variables, and the test reads the result: the image (Airflow 3.3.1 on Python 3.12), MWAA's start sequence
(plugins.zip unpacked, startup.sh sourced, the bundle's requirements.txt installed), the bundle mounted
read-only and no source folder mounted, the aws profile pointed at the moto service, the local profile
with CPU torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_IMAGE = "apache/airflow:3.3.1-python3.12"
COMPONENTS = ("init", "apiserver", "scheduler", "dag-processor", "triggerer")
SOURCE_FOLDERS = ("dags", "plugins", "include", "tests")


def _compose_command() -> list[str]:
    """``docker compose`` (the v2 plugin) when present, else ``docker-compose``; fails saying how to get one."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no Compose tool: install the docker compose plugin, or `apt-get install docker-compose` "
                "(Debian) / `pip install docker-compose`; .ci/run installs it when absent", pytrace=False)


def _lock(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==(\S+)", (REPO / "requirements-dev.lock").read_text(), flags=re.M)
    assert found, f"{name} not in requirements-dev.lock"
    return found.group(1)


@pytest.fixture(scope="module", params=["aws", "local"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """``(profile, the config Compose renders for it)``, services narrowed to that profile's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "AIRFLOW_UID"))}
    env["AIRFLOW_UID"] = "1000"
    proc = subprocess.run([*_compose_command(), "--profile", request.param, "config"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"compose config failed:\n{proc.stdout}{proc.stderr}"
    doc = yaml.safe_load(proc.stdout)
    doc["services"] = {n: s for n, s in doc["services"].items()
                       if not s.get("profiles") or request.param in s["profiles"]}
    return request.param, doc


def _airflow_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if s.get("image", "").startswith("apache/airflow")}


def test_each_profile_runs_every_airflow_component_on_the_mwaa_image(rendered: tuple[str, dict]) -> None:
    profile, doc = rendered
    airflow = _airflow_services(doc)
    prefix = "airflow" if profile == "aws" else "local"
    assert set(airflow) == {f"{prefix}-{c}" for c in COMPONENTS}
    assert "postgres" in doc["services"]
    for name, svc in airflow.items():
        assert svc["image"] == AIRFLOW_IMAGE, name
        command = svc["command"] if isinstance(svc["command"], list) else [svc["command"]]
        assert command[-1] in ("migrate", "api-server", "scheduler", "dag-processor", "triggerer"), name
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert svc["environment"]["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true"  # AWS waits in the triggerer
        api = svc["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        assert api == f"http://{prefix}-apiserver:8080/execution/", name


def test_airflow_containers_start_like_mwaa_from_the_mounted_bundle(rendered: tuple[str, dict]) -> None:
    profile, doc = rendered
    constraints = (REPO / "requirements.txt").read_text().splitlines()[0]
    assert "constraints-3.3.1/constraints-3.12.txt" in constraints  # the image's Airflow and Python
    for name, svc in _airflow_services(doc).items():
        mounts = {v.split(":")[0]: v.split(":")[1:] for v in svc["volumes"]}
        assert mounts[str(REPO / "dist" / "mwaa")] == ["/mwaa", "ro"], name
        assert not [m for m in mounts if m in {str(REPO / f) for f in SOURCE_FOLDERS}], name
        assert not [t for t, *_ in mounts.values() if t.startswith("/opt/airflow/include")], name
        env = svc["environment"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/mwaa/dags"
        entry = svc["entrypoint"]
        assert entry[:4] == ["/usr/bin/dumb-init", "--", "/bin/bash", "-c"], name
        script = [ln.strip() for ln in entry[4].replace("$$", "$").splitlines() if ln.strip()]
        steps = [next(i for i, ln in enumerate(script) if ln.startswith(p)) for p in (
            "python -m zipfile -e /mwaa/plugins.zip", ". /mwaa/startup.sh", "sed", "pip install", "exec /entrypoint")]
        assert steps == sorted(steps), script  # unpack, startup script, requirements, then Airflow
        assert '"${AIRFLOW__CORE__PLUGINS_FOLDER}"' in script[steps[0]]
        assert "/mwaa/requirements.txt" in script[steps[2]] and "-r /tmp/requirements.txt" in script[steps[3]]
        assert "duckdb" not in entry[4] and "_PIP_ADDITIONAL_REQUIREMENTS" not in env


def test_profiles_point_the_package_at_moto_or_the_local_lake(rendered: tuple[str, dict]) -> None:
    from seclake_ml.config import load_config

    profile, doc = rendered
    for name, svc in _airflow_services(doc).items():
        env = svc["environment"]
        cfg = load_config(variable_json=env["SECLAKE_ML_CONFIG"], environ={})
        assert cfg.backend == profile, name
        if profile == "aws":
            assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
            assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"]) == {"conn_type": "aws"}
            assert cfg.athena_workgroup == "seclake-ml" and cfg.sagemaker.role_arn
            assert "SECLAKE_COMPOSE_EXTRA_PIP" not in env  # no torch: training runs in SageMaker
        else:
            assert "AWS_ENDPOINT_URL" not in env
            assert f"torch=={_lock('torch')}+cpu" in env["SECLAKE_COMPOSE_EXTRA_PIP"].split()
            targets = {v.split(":")[1] for v in svc["volumes"]}
            assert {cfg.lake_root, cfg.work_location} <= targets
    if profile == "aws":
        moto = doc["services"]["moto"]
        assert moto["image"] == f"motoserver/moto:{_lock('moto')}"
        init = doc["services"]["moto-init"]["entrypoint"][-1]
        cfg = load_config(variable_json=doc["services"]["airflow-init"]["environment"]["SECLAKE_ML_CONFIG"], environ={})
        for needed in (cfg.lake_bucket, cfg.work_location.split("/")[2], cfg.athena_workgroup,
                       cfg.scoring.queue_url.rsplit("/", 1)[1], cfg.scoring.sns_topic_arn.rsplit(":", 1)[1]):
            assert f'"{needed}"' in init, needed
    else:
        assert "moto" not in doc["services"]
