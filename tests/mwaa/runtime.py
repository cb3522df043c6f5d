"""An MWAA-shaped Airflow runtime for tests: the built bundle, MWAA's package set on Python 3.12, its layout.

* The bundle is built by ``include/mwaa/build_bundle.py`` (what ``make mwaa-bundle`` runs).
* The interpreter is a virtual environment on CPython 3.12 (MWAA 3.3.1's Python) holding only what an
  MWAA 3.3.1 environment holds: ``apache-airflow==3.3.1`` installed with the 3.3.1 constraints file, plus
  the bundle's ``requirements.txt`` under the same constraints. It is installed with ``--no-index`` from
  the wheels the offline bundle ships (plus Airflow's own, which the MWAA image provides), so creating it
  also proves that set complete. Nothing of the test harness goes in: moto runs in the pytest process and
  the checks run as commands of this interpreter. The environment is cached under
  ``var/mwaa-venv/<hash of Airflow's version, constraints, requirements>``.
* Each Airflow home is laid out as on MWAA: ``dags/`` (the bundle's), ``plugins/`` (``plugins.zip``
  unpacked), ``startup.sh`` sourced by ``sh`` into the environment, no ``PYTHONPATH`` and no repository
  folder on ``sys.path`` (Airflow itself puts the plugins folder there, as on MWAA).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.airflow_env import AirflowRuntime, package_env

REPO = Path(__file__).resolve().parents[2]
SKIP_VARIABLE = "SECLAKE_SKIP_MWAA"
HOW_TO_GET_PYTHON312 = (
    "the MWAA-shaped tests need a CPython 3.12 interpreter (MWAA 3.3.1 runs Python 3.12): install one "
    "(`pyenv install 3.12`, or your distribution's python3.12 package) or point SECLAKE_PYTHON312 at it; "
    f"set {SKIP_VARIABLE}=1 to skip these tests on purpose"
)
# Variables of the development shell that must not reach an MWAA-shaped process.
_DROPPED_PREFIXES = ("AIRFLOW", "SECLAKE_ML_", "PYTHON", "VIRTUAL_ENV", "PYENV_VERSION", "CONDA")


def load_builder() -> Any:
    """``include/mwaa/build_bundle.py`` as a module (it is a script, not part of a package)."""
    path = REPO / "include" / "mwaa" / "build_bundle.py"
    spec = importlib.util.spec_from_file_location("seclake_mwaa_build_bundle", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return sys.modules[spec.name]


def _run(cmd: list[str], what: str, timeout: int = 900, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-6000:]
        raise RuntimeError(f"{what} failed (rc={proc.returncode}): {' '.join(cmd)}\n{output}")
    return proc


def mwaa_venv(python312: str, cache_root: Path, wheel_cache: Path) -> tuple[Path, dict[str, float]]:
    """The cached MWAA-shaped virtual environment (created when absent); returns its folder and timings.

    :param python312: a CPython 3.12 interpreter.
    :param cache_root: where environments live (``var/mwaa-venv``).
    :param wheel_cache: the builder's wheel cache (``var/mwaa-wheels``).
    """
    builder = load_builder()
    target = cache_root / builder.set_key(REPO)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / ".lock", "w") as lock:  # one creator at a time (parallel test runs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _make_venv(builder, python312, target, wheel_cache)


def _make_venv(builder: Any, python312: str, target: Path, wheel_cache: Path) -> tuple[Path, dict[str, float]]:
    timings: dict[str, float] = {}
    if (target / ".complete").is_file():
        return target, timings
    t0 = time.perf_counter()
    wheels = builder.collect_wheels(REPO, wheel_cache, python312)
    timings["wheels_s"] = time.perf_counter() - t0
    shutil.rmtree(target, ignore_errors=True)
    t0 = time.perf_counter()
    _run([python312, "-m", "venv", str(target)], "creating the MWAA virtual environment")
    python = str(target / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
          f"apache-airflow=={builder.AIRFLOW_VERSION}", "-r", str(wheels / "requirements.in"),
          "-c", str(REPO / builder.CONSTRAINTS)],
         "installing the MWAA package set", env=_pip_offline_env())
    timings["install_s"] = time.perf_counter() - t0
    (target / ".complete").write_text(f"{timings}\n", encoding="utf-8")
    for stale in target.parent.iterdir():  # environments of earlier package sets (about 800 MB each)
        if stale.is_dir() and stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target, timings


def _pip_offline_env() -> dict[str, str]:
    """No pip configuration of this machine (indexes, find-links): only the wheels named on the command line."""
    env = {k: v for k, v in _clean_env().items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}


class MwaaRuntime(AirflowRuntime):
    """Child Airflow processes run as on MWAA: the venv's Python 3.12, the bundle laid out in the home."""

    name = "mwaa"

    def __init__(self, venv: Path, bundle: Path) -> None:
        self.venv = venv
        self.bundle = bundle

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def cwd(self) -> Path:
        return self.bundle.parent

    def dag_file(self, home: Path, name: str) -> Path:
        return self.lay_out(home) / "dags" / name

    def lay_out(self, home: Path) -> Path:
        """``home`` as an MWAA ``/usr/local/airflow``: ``dags/``, ``plugins/`` (the unpacked zip), ``startup.sh``."""
        if not (home / "plugins").is_dir():
            home.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.bundle / "dags", home / "dags")
            with zipfile.ZipFile(self.bundle / "plugins.zip") as zf:
                zf.extractall(home / "plugins")
            shutil.copyfile(self.bundle / "startup.sh", home / "startup.sh")
        return home

    @cached_property
    def _venv_bin(self) -> str:
        return str(self.venv / "bin")

    def env(self, home: Path, lake: Path | None, work: Path | None, config: dict[str, Any], *,
            aws_connection: bool = False) -> dict[str, str]:
        """The environment after MWAA's start: settings given, then ``startup.sh`` sourced by ``sh``."""
        self.lay_out(home)
        env = _clean_env()
        env.update(
            PATH=os.pathsep.join([self._venv_bin, env.get("PATH", "")]),
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )
        env.update(package_env(lake, work, config, aws_connection=aws_connection))
        return source_startup(home / "startup.sh", env)


def source_startup(script: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` after ``. script`` in ``sh`` (as MWAA keeps the variables a startup script exports).

    :param script: the startup script.
    :param env: the environment it starts from.
    """
    proc = _run(["sh", "-c", '. "$1" >&2 && env -0', "sh", str(script)], "sourcing the startup script",
                timeout=60, env=env)
    out = {}
    for item in proc.stdout.split("\0"):
        name, sep, value = item.partition("=")
        if sep and name and name not in ("_", "PWD", "SHLVL", "OLDPWD"):
            out[name] = value
    return out
