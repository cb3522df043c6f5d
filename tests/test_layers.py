"""The package's layers: its import graph (every ``import``, at module level or inside a function) has
no cycle, no module imports one of a higher layer, and no engine imports Airflow.

The layers, lowest first (a module may import its own layer and the ones below):

1. ``contracts``: configuration, the OCSF source registry, SQL safety, display escaping, output
   checks, the pair and risk-event contracts, path policy, the lake object key layout, IPv4 helpers;
2. ``engines``: the IP Insights and risk engines, the DuckDB query layer, findings, scoring engine
   parts, the local model store: no Airflow, no AWS calls of their own;
3. ``aws``: the Athena query layer and the SageMaker/SSM/S3 helpers (provider hooks);
4. ``services``: what a task or command does, choosing between local and aws parts;
5. ``airflow``: operators, sensors, the plugin and their support;
6. ``entry``: the command line.

``KNOWN_UPWARD`` lists the upward imports that exist today; the test fails on any other one, and on
an entry of the list that no longer exists (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PACKAGE = "seclake_ml"

LAYERS: dict[str, tuple[str, ...]] = {
    "contracts": ("config", "sources", "sqlsafe", "display", "outputs", "pairs", "risk.columns", "lake.paths", "uris", "aws_errors",
                  "interval", "locations",
                  "ipinsights.ipv4", "ipinsights.hyperparams", "__init__", "lake.__init__",
                  "risk.__init__", "scoring.__init__", "ipinsights.__init__", "aws.__init__", "scoring.lake_object"),
    "engines": ("ipinsights.*", "risk.catalog", "risk.useragent", "risk.features", "risk.outliers", "risk.combine",
                "risk.models", "risk.store", "risk.report", "risk.geoip", "risk.labels", "risk.engine",
                "risk.findings", "lake.duck", "scoring.findings", "scoring.findings_parquet", "scoring.ocsf_validate",
                "scoring.ledger", "scoring.stores",
                "scoring.objects", "scoring.readahead", "scoring.profile", "scoring.peers", "scoring.scorers", "scoring.engine",
                "scoring.notifications", "scoring.model_record", "scoring.drift", "feedback.__init__", "feedback.allowlist", "training_data", "model_store", "handoff"),
    "aws": ("aws.*", "lake.athena"),
    "services": ("backends", "backends.*", "runs", "scoring.sites", "feedback.training", "extraction", "scoring.service", "scoring.report", "risk.events", "risk.service", "risk.batch",
                 "calibration_runner", "workspace.__init__", "workspace.data"),
    "airflow": ("operators.*", "airflow_support", "plugin", "links", "workspace.app", "workspace.page"),
    "entry": ("cli", "__main__", "ipinsights.cli", "risk.cli", "risk.labels_cli"),
}
ORDER = list(LAYERS)
ENGINE_LAYERS = ("contracts", "engines")
# (importer, imported) pairs that go up a layer today; each is a debt to pay, none may be added.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in (PLUGINS / PACKAGE).rglob("*.py"):
        parts = path.relative_to(PLUGINS / PACKAGE).with_suffix("").parts
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """``(package modules imported, top-level third-party names imported)`` by one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                ours.add(name[len(PACKAGE) + 1:] or "__init__")
            else:
                others.add(name.split(".")[0])
    return ours, others


def _layer(module: str) -> str:
    for layer, patterns in LAYERS.items():  # a module named exactly wins over a package pattern
        if module in patterns:
            return layer
    for layer, patterns in LAYERS.items():
        for p in patterns:
            if p.endswith(".*") and module.startswith(p[:-1]):
                return layer
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS in {__file__}")


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        ours, _ = _imports(path)
        targets = set()
        for imported in ours:
            if imported in mods:
                targets.add(imported)
            elif f"{imported}.__init__" in mods:
                targets.add(f"{imported}.__init__")
            elif imported.rsplit(".", 1)[0] in mods:  # from seclake_ml.x import name
                targets.add(imported.rsplit(".", 1)[0])
        graph[name] = targets - {name}
    return graph


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_upward_imports() -> None:
    graph = _graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets
              if ORDER.index(_layer(b)) > ORDER.index(_layer(a))}
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, "imports from a lower layer to a higher one:\n" + "\n".join(
        f"  {a} ({_layer(a)}) -> {b} ({_layer(b)})" for a, b in new)
    gone = sorted(KNOWN_UPWARD - upward)
    assert not gone, f"remove these from KNOWN_UPWARD, they no longer exist: {gone}"


def test_engines_import_no_airflow() -> None:
    offenders = []
    for name, path in _modules().items():
        if _layer(name) in ENGINE_LAYERS and "airflow" in _imports(path)[1]:
            offenders.append(name)
    assert not offenders, f"engine or contract modules importing Airflow: {offenders}"
