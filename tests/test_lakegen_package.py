"""The sample-lake generator is the development package ``seclake_lakegen``, outside the runtime package.

The runtime package reaches it only lazily, from the ``lake generate|drop-batch`` commands (the MWAA
bundle leaves it out; ``tests/mwaa`` checks those commands fail on one line there).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "plugins" / "seclake_ml"
FORWARDER = RUNTIME / "lake" / "generate.py"  # the former import path, not deployed


def test_no_generator_module_is_left_in_the_runtime_package() -> None:
    names = {p.name for p in (RUNTIME / "lake").glob("*.py")}
    assert not {n for n in names if n.startswith("gen_")} and "ocsf_schemas.py" not in names
    assert {p.name for p in (REPO / "plugins" / "seclake_lakegen").glob("*.py")} >= {
        "generate.py", "gen_env.py", "gen_anomalies.py", "gen_network.py", "gen_cloudtrail.py", "gen_common.py",
        "ocsf_schemas.py"}


def test_runtime_modules_import_the_generator_only_inside_functions() -> None:
    for path in RUNTIME.rglob("*.py"):
        if path == FORWARDER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [m for m in mods if m.startswith("seclake_lakegen")], f"{path.relative_to(REPO)}: {mods}"


def test_the_commands_still_generate_a_lake_in_a_checkout(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "plugins")}
    lake = tmp_path / "lake"
    gen = subprocess.run(
        [sys.executable, "-m", "seclake_ml", "lake", "generate", "--root", str(lake), "--start", "2024-03-04",
         "--days", "1", "--seed", "3", "--flows-per-day", "300", "--dns-per-day", "50", "--api-calls-per-day", "60"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert gen.returncode == 0, gen.stderr[-3000:]
    drop = subprocess.run([sys.executable, "-m", "seclake_ml", "lake", "drop-batch", "--root", str(lake), "--day",
                           "next", "--seed", "3", "--flows-per-day", "300", "--dns-per-day", "50",
                           "--api-calls-per-day", "60"], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert drop.returncode == 0, drop.stderr[-3000:]
    assert '"day": "2024-03-05"' in drop.stdout
    assert list(lake.glob("aws/VPC_FLOW/*/region=*/accountId=*/eventDay=20240305/*.parquet"))
    assert list(lake.glob("aws/VPC_FLOW/*/region=*/accountId=*/eventDay=20240304/*.parquet"))

