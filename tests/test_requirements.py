"""The MWAA runtime requirements are exactly what the deployed code imports, pinned, and agree with MWAA's
Airflow 3.3.1 / Python 3.12 constraints and the dev lock."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

CONSTRAINT_URL_RE = re.compile(
    r'^--constraint\s+"?(https://raw\.githubusercontent\.com/apache/airflow/constraints-([0-9.]+)/constraints-([0-9.]+)\.txt)"?\s*$'
)
# Local-only or MWAA-incompatible packages: the image provides Airflow itself (and MWAA refuses to
# change it), training runs in SageMaker containers, and the SageMaker SDK cannot be installed next
# to Airflow 3.3 on Python 3.12.
FORBIDDEN = {
    "apache-airflow",
    "apache-airflow-core",
    "apache-airflow-task-sdk",
    "torch",
    "moto",
    "pytest",
    "sagemaker",
    "sagemaker-core",
    "sagemaker-train",
    "sagemaker-serve",
    "sagemaker-mlops",
}
PROVIDER = "apache-airflow-providers-amazon"
CONSTRAINTS_FILE = Path("include") / "mwaa" / "constraints-3.3.1-py3.12.txt"
# Imported by the runtime package only on the local backend (the engine's trainer); never on MWAA.
LOCAL_ONLY_IMPORTS = {"torch"}
# Provided by the MWAA image: Airflow and its constraints' providers, and the libraries Airflow core's
# api-server is built on, which the workspace app (seclake_ml.workspace) uses through it.
AIRFLOW_CORE_IMPORTS = {"fastapi", "jinja2", "pydantic", "starlette"}
IMAGE_IMPORTS = {"airflow"} | AIRFLOW_CORE_IMPORTS
# Markers evaluated as on MWAA 3.3.1 (Amazon Linux, x86_64, CPython 3.12).
MWAA_MARKER_ENV = {
    "python_version": "3.12", "python_full_version": "3.12.13", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
}


def _pins(path: Path) -> dict[str, str]:
    """``name -> version`` for each ``name==version`` line of a pip freeze/lock file."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if sep:
            pins[canonicalize_name(name.split("[", 1)[0].strip())] = version.split(";", 1)[0].strip()
    return pins


@pytest.fixture(scope="module")
def requirements_lines(repo_dir: Path) -> list[str]:
    return (repo_dir / "requirements.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def requirements(requirements_lines: list[str]) -> list[Requirement]:
    reqs = []
    for number, raw in enumerate(requirements_lines, start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("--") else raw.strip()
        if not line or line.startswith("--"):
            continue
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as exc:
            pytest.fail(f"requirements.txt line {number} is not a valid requirement: {raw!r} ({exc})")
    return reqs


@pytest.fixture(scope="module")
def constraints(repo_dir: Path) -> dict[str, str]:
    path = repo_dir / CONSTRAINTS_FILE
    if not path.is_file():
        pytest.fail(f"MWAA constraints file not found at {path}")
    text = path.read_text(encoding="utf-8")
    assert "constraints-3.3.1/constraints-3.12.txt" in text[:2000], f"{path} is not Airflow's 3.3.1 / py3.12 file"
    return _pins(path)


@pytest.fixture(scope="module")
def dev_lock(repo_dir: Path) -> dict[str, str]:
    return _pins(repo_dir / "requirements-dev.lock")


def test_first_line_is_the_airflow_331_py312_constraint(requirements_lines: list[str]) -> None:
    match = CONSTRAINT_URL_RE.match(requirements_lines[0].strip())
    assert match, f"first line must be --constraint <airflow constraints URL>, got {requirements_lines[0]!r}"
    assert match.group(2) == "3.3.1", f"constraints tag must be 3.3.1 (MWAA's image), got {match.group(2)}"
    assert match.group(3) == "3.12", f"constraints must be the Python 3.12 file (MWAA's Python), got {match.group(3)}"
    others = [line for line in requirements_lines[1:] if line.strip().startswith(("--constraint", "-c "))]
    assert not others, f"exactly one constraint line expected, also found {others}"


def test_every_requirement_is_pinned_exactly(requirements: list[Requirement]) -> None:
    assert requirements, "requirements.txt lists no package"
    for req in requirements:
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{req} must be pinned with a single =="


def test_pins_agree_with_mwaa_constraints(requirements: list[Requirement], constraints: dict[str, str]) -> None:
    checked = 0
    for req in requirements:
        name = canonicalize_name(req.name)
        pinned = next(iter(req.specifier)).version
        if name in constraints:
            checked += 1
            assert pinned == constraints[name], (
                f"{req.name}=={pinned} conflicts with the MWAA 3.3.1 constraint {req.name}=={constraints[name]}"
            )
    assert checked >= 1, "expected at least the Amazon provider to be checked against the constraints"


def test_pins_agree_with_dev_lock(
    requirements: list[Requirement], dev_lock: dict[str, str], constraints: dict[str, str]
) -> None:
    """Packages the constraints leave free are pinned as in the dev lock (the constraints win for the others)."""
    free = 0
    for req in requirements:
        name = canonicalize_name(req.name)
        pinned = next(iter(req.specifier)).version
        assert name in dev_lock, f"{req.name} is required on MWAA but missing from requirements-dev.lock"
        if name not in constraints:
            free += 1
            assert dev_lock[name] == pinned, (
                f"{req.name}: requirements.txt pins {pinned}, dev lock has {dev_lock[name]}")
    assert free >= 2, "expected at least duckdb and matplotlib outside the constraints"


def _runtime_imports(repo: Path) -> dict[str, set[str]]:
    """Top-level third-party names imported anywhere (lazily too) by the bundle's code -> importing files."""
    from tests.mwaa.runtime import load_builder

    bundle_sources = load_builder().bundle_sources

    found: dict[str, set[str]] = {}
    for path, arcname in bundle_sources(repo):
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("seclake_ml", "seclake_lakegen", "__future__"):
                    found.setdefault(top, set()).add(arcname)
    return found


def _unconstrained_closure(names: set[str], constraints: dict[str, str]) -> set[str]:
    """``names`` plus every dependency (on MWAA's platform) that the constraints file does not pin, recursively."""
    todo, seen = list(names), set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for raw in importlib.metadata.requires(name) or []:
            dep = Requirement(raw)
            if dep.marker is not None and not dep.marker.evaluate(MWAA_MARKER_ENV):
                continue
            dep_name = canonicalize_name(dep.name)
            if dep_name not in constraints and not dep_name.startswith("apache-airflow"):
                todo.append(dep_name)
    return seen


def test_requirements_are_exactly_what_the_bundle_imports(
    repo_dir: Path, requirements: list[Requirement], constraints: dict[str, str]
) -> None:
    """Each third-party import of the deployed code is a requirement, and nothing else is one.

    Exceptions: Airflow itself (the image), the Amazon provider (hooks and operators under ``airflow.``),
    local-only imports (torch, the local trainer), and the dependencies of a requirement that the
    constraints file leaves unpinned (they are pinned too, so MWAA installs exactly this set).
    """
    imports = _runtime_imports(repo_dir)
    to_dist = importlib.metadata.packages_distributions()
    imported = set()
    for top in set(imports) - IMAGE_IMPORTS - LOCAL_ONLY_IMPORTS:
        dists = to_dist.get(top)
        assert dists, f"{top} (imported by {sorted(imports[top])}) is not installed in the dev environment"
        imported |= {canonicalize_name(d) for d in dists}
    required = {canonicalize_name(r.name) for r in requirements}
    missing = imported - required
    assert not missing, f"imported by the bundle but not in requirements.txt: {sorted(missing)}"
    expected = _unconstrained_closure(imported, constraints) | imported | {PROVIDER}
    extra = required - expected
    assert not extra, (
        f"in requirements.txt but not imported by the bundle (nor an unpinned dependency): {sorted(extra)}")
    unpinned = _unconstrained_closure(required, constraints) - required
    assert not unpinned, f"dependencies neither in the constraints nor pinned in requirements.txt: {sorted(unpinned)}"
    assert {"duckdb", "matplotlib", "awswrangler"} <= required


def test_provider_has_aiobotocore_extra_and_constraint_version(
    requirements: list[Requirement], constraints: dict[str, str]
) -> None:
    provider = [r for r in requirements if canonicalize_name(r.name) == PROVIDER]
    assert len(provider) == 1, f"exactly one {PROVIDER} line expected"
    assert "aiobotocore" in provider[0].extras, "deferrable AWS operators need the provider's [aiobotocore] extra"
    assert next(iter(provider[0].specifier)).version == constraints[PROVIDER] == "9.34.0"


def test_no_local_only_packages(requirements: list[Requirement]) -> None:
    names = {canonicalize_name(r.name) for r in requirements}
    found = sorted(names & FORBIDDEN)
    assert not found, f"local-only or MWAA-incompatible packages in requirements.txt: {found}"
    assert not any(n.startswith("sagemaker") for n in names), "the SageMaker SDK must not be a runtime requirement"


def test_dev_lock_matches_mwaa_airflow(dev_lock: dict[str, str], constraints: dict[str, str]) -> None:
    assert dev_lock.get("apache-airflow", "").startswith("3.3."), (
        f"dev lock must pin apache-airflow 3.3.x, got {dev_lock.get('apache-airflow')}"
    )
    assert dev_lock.get(PROVIDER) == constraints[PROVIDER], (
        f"dev lock pins {PROVIDER}=={dev_lock.get(PROVIDER)}, MWAA constraints have {constraints[PROVIDER]}"
    )
    assert "aiobotocore" in dev_lock, "dev lock must include aiobotocore (deferrable operators)"


def test_image_imports_are_airflow_core_dependencies() -> None:
    """The libraries taken from the image besides Airflow are requirements of ``apache-airflow-core`` itself."""
    core = {canonicalize_name(Requirement(r).name) for r in importlib.metadata.requires("apache-airflow-core") or []}
    assert AIRFLOW_CORE_IMPORTS <= core, f"not Airflow core dependencies: {sorted(AIRFLOW_CORE_IMPORTS - core)}"
