"""Build the Amazon MWAA bundle: ``dist/mwaa/{dags/, plugins.zip, requirements.txt, startup.sh}``.

``python include/mwaa/build_bundle.py [--out dist/mwaa] [--offline]`` (``make mwaa-bundle [OFFLINE=1]``).

* ``dags/``: the DAG files, uploaded to the environment's DAGs folder.
* ``plugins.zip``: the runtime package ``seclake_ml`` (its SQL templates are package data, read through
  ``importlib.resources``) and ``.airflowignore``; no development tools (the sample-lake generator),
  tests, caches or compiled files. MWAA unpacks it under ``/usr/local/airflow/plugins``.
* ``requirements.txt``: the repository's, which installs against the MWAA 3.3.1 constraints URL.
* ``startup.sh``: ``include/mwaa/startup.sh``.

``--offline`` is for environments without access to a package index: the wheels of every requirement and
of their dependencies (built for CPython 3.12 on x86-64 Linux, as MWAA runs, by a local Python 3.12 with
``pip wheel``; Airflow itself is left out, the image has it) go into ``plugins.zip`` under ``wheels/``
with a copy of the constraints file, and ``requirements.txt`` installs from them only
(``--no-index --find-links /usr/local/airflow/plugins/wheels``). Wheels are cached under
``var/mwaa-wheels/<hash of constraints and requirements>``.

Every file is written with a fixed timestamp in a sorted order, so the same sources give the same zip.
Only the standard library is used: any Python 3.11+ runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGE = "seclake_ml"
PLUGIN_EXTRA_FILES = (".airflowignore",)
PACKAGE_DATA_SUFFIXES = (".sql", ".json")
CONSTRAINTS = Path("include") / "mwaa" / "constraints-3.3.1-py3.12.txt"
CONSTRAINT_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"
MWAA_PLUGINS = "/usr/local/airflow/plugins"
WHEELS_DIR = "wheels"
# Airflow is part of the MWAA image (MWAA refuses to change it): wheels are resolved against this
# version and its own wheels are never shipped.
AIRFLOW_VERSION = "3.3.1"
IMAGE_DISTRIBUTIONS = ("apache_airflow-", "apache_airflow_core-", "apache_airflow_task_sdk-")
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def plugin_files(repo: Path = REPO) -> list[tuple[Path, str]]:
    """``(source, name in plugins.zip)`` of everything the runtime package needs, sorted by name.

    :param repo: the repository root.
    """
    plugins = repo / "plugins"
    found = [(plugins / name, name) for name in PLUGIN_EXTRA_FILES if (plugins / name).is_file()]
    for path in sorted((plugins / RUNTIME_PACKAGE).rglob("*")):
        rel = path.relative_to(plugins).as_posix()
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" or path.suffix in PACKAGE_DATA_SUFFIXES:
            found.append((path, rel))
    return sorted(found, key=lambda item: item[1])


def dag_files(repo: Path = REPO) -> list[tuple[Path, str]]:
    """``(source, name under dags/)`` of the DAG files (and the DAG folder's ``.airflowignore`` if any).

    :param repo: the repository root.
    """
    dags = repo / "dags"
    names = sorted(p.name for p in dags.iterdir() if p.is_file() and (p.suffix == ".py" or p.name == ".airflowignore"))
    return [(dags / n, n) for n in names]


def bundle_sources(repo: Path = REPO) -> list[tuple[Path, str]]:
    """Every deployed source file as ``(path, "plugins/<name>" | "dags/<name>")``.

    :param repo: the repository root.
    """
    return [(p, f"plugins/{n}") for p, n in plugin_files(repo)] + [(p, f"dags/{n}") for p, n in dag_files(repo)]


def requirement_lines(repo: Path = REPO) -> list[str]:
    """The package lines of ``requirements.txt`` (no options, no comments).

    :param repo: the repository root.
    """
    lines = []
    for raw in (repo / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def set_key(repo: Path = REPO) -> str:
    """A short hash of Airflow's version, the constraints and ``requirements.txt``: names the package set's caches.

    :param repo: the repository root.
    """
    digest = hashlib.sha256(f"apache-airflow=={AIRFLOW_VERSION}\n".encode())
    for path in (repo / CONSTRAINTS, repo / "requirements.txt"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def find_python312() -> str | None:
    """A Python 3.12 interpreter: ``$SECLAKE_PYTHON312``, ``python3.12`` on PATH, or pyenv's newest 3.12."""
    candidates = [os.environ.get("SECLAKE_PYTHON312"), shutil.which("python3.12")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = sorted((pyenv_root / "versions").glob("3.12.*"),
                      key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.name.split(".")), reverse=True)
    candidates += [str(v / "bin" / "python3.12") for v in versions]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if out.stdout.strip() == "True":
            return candidate
    return None


def _zip_add(zf: zipfile.ZipFile, name: str, data: bytes, compress: int = zipfile.ZIP_DEFLATED) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def collect_wheels(repo: Path, cache_root: Path, python: str | None = None) -> Path:
    """The wheel folder of the requirements' closure (built once per constraints + requirements hash).

    :param repo: the repository root.
    :param cache_root: where cached wheel folders live (``var/mwaa-wheels``).
    :param python: a Python 3.12 interpreter with pip (default: :func:`find_python312`).
    """
    target = cache_root / set_key(repo)
    if (target / ".complete").is_file():
        return target
    python = python or find_python312()
    if python is None:
        raise SystemExit("--offline needs a Python 3.12 interpreter to build CPython 3.12 wheels: install one "
                         "(e.g. `pyenv install 3.12`) or set SECLAKE_PYTHON312 to its path")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    reqs = target / "requirements.in"
    reqs.write_text("\n".join([f"apache-airflow=={AIRFLOW_VERSION}", *requirement_lines(repo)]) + "\n",
                    encoding="utf-8")
    cmd = [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target), "-r", str(reqs),
           "-c", str(repo / CONSTRAINTS)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pip wheel failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    (target / ".complete").write_text(f"{time.perf_counter() - t0:.1f}s\n", encoding="utf-8")
    for stale in cache_root.iterdir():  # wheel sets of earlier requirements (about 200 MB each)
        if stale.is_dir() and stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target


def offline_requirements(repo: Path = REPO) -> str:
    """``requirements.txt`` for an environment without a package index: installs from plugins.zip's wheels.

    :param repo: the repository root.
    """
    return "\n".join([
        "# Installs from the wheels inside plugins.zip only (no package index needed).",
        "--no-index",
        f"--find-links {MWAA_PLUGINS}/{WHEELS_DIR}",
        f'--constraint "{MWAA_PLUGINS}/{WHEELS_DIR}/{CONSTRAINTS.name}"',
        *requirement_lines(repo),
    ]) + "\n"


def build(out: Path, repo: Path = REPO, offline: bool = False, wheel_cache: Path | None = None) -> dict:
    """Write the bundle to ``out`` (replaced) and return a summary (files, sizes, wheels).

    :param out: the bundle folder (``dist/mwaa``).
    :param repo: the repository root.
    :param offline: put the requirements' wheels into plugins.zip and install from them only.
    :param wheel_cache: folder of cached wheel sets (default ``var/mwaa-wheels`` of the repository).
    """
    requirements = repo / "requirements.txt"
    first = requirements.read_text(encoding="utf-8").splitlines()[0]
    if CONSTRAINT_URL not in first:
        raise SystemExit(f"{requirements}: the first line must be --constraint \"{CONSTRAINT_URL}\"")
    if out.exists():
        shutil.rmtree(out)
    (out / "dags").mkdir(parents=True)
    for path, name in dag_files(repo):
        shutil.copyfile(path, out / "dags" / name)
    wheels: list[Path] = []
    if offline:
        folder = collect_wheels(repo, wheel_cache or repo / "var" / "mwaa-wheels")
        wheels = sorted(p for p in folder.glob("*.whl") if not p.name.lower().startswith(IMAGE_DISTRIBUTIONS))
    with zipfile.ZipFile(out / "plugins.zip", "w") as zf:
        for path, name in plugin_files(repo):
            _zip_add(zf, name, path.read_bytes())
        if offline:
            _zip_add(zf, f"{WHEELS_DIR}/{CONSTRAINTS.name}", (repo / CONSTRAINTS).read_bytes())
            for wheel in wheels:
                _zip_add(zf, f"{WHEELS_DIR}/{wheel.name}", wheel.read_bytes(), zipfile.ZIP_STORED)  # zips already
    if offline:
        (out / "requirements.txt").write_text(offline_requirements(repo), encoding="utf-8")
    else:
        shutil.copyfile(requirements, out / "requirements.txt")
    shutil.copyfile(repo / "include" / "mwaa" / "startup.sh", out / "startup.sh")
    (out / "startup.sh").chmod(0o755)
    with zipfile.ZipFile(out / "plugins.zip") as zf:
        names = zf.namelist()
    return {
        "out": str(out),
        "dags": sorted(p.name for p in (out / "dags").iterdir()),
        "plugins_zip_files": len(names),
        "plugins_zip_bytes": (out / "plugins.zip").stat().st_size,
        "wheels": len(wheels),
        "offline": offline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "dist" / "mwaa"), help="bundle folder (default dist/mwaa)")
    parser.add_argument("--offline", action="store_true", help="ship the wheels in plugins.zip")
    parser.add_argument("--wheel-cache", help="cached wheel sets (default var/mwaa-wheels)")
    args = parser.parse_args(argv)
    summary = build(Path(args.out), offline=args.offline,
                    wheel_cache=Path(args.wheel_cache) if args.wheel_cache else None)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
