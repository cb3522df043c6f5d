"""Write ``docs/configuration.md``: every configuration field, generated from the typed configuration.

``python include/config/reference.py`` (``make config-doc``) rewrites the file; ``--check`` exits 1 when
it is stale. The fields, types, defaults, allowed values and descriptions come from
:func:`seclake_ml.config.config_fields`; the "read in" column from a static scan of the package: the
modules that read a field as an attribute of the configuration (``cfg.<field>``, ``cfg.scoring.<field>``)
or through the package's section accessors (``aws_setting(cfg, "<field>")``, ``setting(cfg, "<field>")``).
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
OUTPUT = REPO / "docs" / "configuration.md"
# Names the package gives a SeclakeConfig value, and the accessors of the extra sections.
CONFIG_NAMES = ("cfg", "config", "conf")
SECTION_ACCESSORS = {"aws_setting": "sagemaker", "require_setting": "sagemaker", "setting": "scoring"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PLUGINS if path.is_relative_to(PLUGINS) else REPO).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _tail(node: ast.expr) -> str:
    """The last name of an expression: ``cfg`` for ``self.cfg``, ``scoring`` for ``cfg.scoring``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def derived_reads(fields: set[str]) -> dict[str, set[str]]:
    """``property or method of SeclakeConfig -> the fields it reads`` (``glue_db`` reads ``glue_database``).

    :param fields: the top-level field names.
    """
    tree = ast.parse((PLUGINS / "seclake_ml" / "config.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SeclakeConfig")
    derived: dict[str, set[str]] = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_") and fn.name not in fields:
            used = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name) and n.value.id == "self" and n.attr in fields}
            if used:
                derived[fn.name] = used
    return derived


def reads(sections: tuple[str, ...], fields: set[str]) -> dict[str, set[str]]:
    """``dotted field name -> modules that read it`` over the runtime package and the DAG files.

    :param sections: the names of the ``extra`` sections (``scoring``, ``sagemaker``, ...).
    :param fields: the top-level field names.
    """
    derived = derived_reads(fields)
    found: dict[str, set[str]] = defaultdict(set)
    files = sorted((PLUGINS / "seclake_ml").rglob("*.py")) + sorted((REPO / "dags").glob("*.py"))
    for path in files:
        if path.name == "config.py" and path.parent.name == "seclake_ml":
            continue
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                owner = _tail(node.value)
                if owner in CONFIG_NAMES and node.attr in sections:
                    found[f"extra.{node.attr}"].add(module)  # the section as a whole
                elif owner in CONFIG_NAMES:
                    for name in derived.get(node.attr, {node.attr}):
                        found[name].add(module)
                elif owner in sections and isinstance(node.value, ast.Attribute) and \
                        _tail(node.value.value) in CONFIG_NAMES:  # cfg.<section>.<field>
                    found[f"extra.{owner}.{node.attr}"].add(module)
            elif isinstance(node, ast.Call) and len(node.args) >= 2:
                section = SECTION_ACCESSORS.get(_tail(node.func))
                name = node.args[1]
                if section and isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found[f"extra.{section}.{name.value}"].add(module)
    return found


def _cell(value: object) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def _default(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def render() -> str:
    """The whole of ``docs/configuration.md`` for the configuration as it is now."""
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    from seclake_ml import config

    rows = list(config.config_fields())
    sections = tuple(sorted({name.split(".")[1] for name, *_ in rows if name.startswith("extra.")}))
    where = reads(sections, {name for name, *_ in rows if not name.startswith("extra.")})
    groups: dict[str, list[tuple]] = defaultdict(list)
    for name, kind, default, allowed, doc in rows:
        group = ".".join(name.split(".")[:2]) if name.startswith("extra.") else "top level"
        groups[group].append((name, kind, default, allowed, doc))
    out = [
        "# Configuration reference",
        "",
        "Generated by `include/config/reference.py` from `seclake_ml.config` (`make config-doc`);",
        "`tests/test_configuration_doc.py` fails when this file is stale. Do not edit by hand.",
        "",
        "One JSON object, validated when it loads; an invalid value fails the first task with the field's",
        "dotted name, the value and what is allowed. Read in this order (highest first): the operator's",
        "`config_overrides`; `SECLAKE_ML_<FIELD>` environment variables (top-level fields only, e.g.",
        "`SECLAKE_ML_WORK_LOCATION`); the Airflow Variable `seclake_ml_config` or, when it is not set, the",
        "`SECLAKE_ML_CONFIG` environment variable; the defaults below. Examples: `include/config/local.json`,",
        "`include/config/aws.example.json`; MWAA defaults: `include/mwaa/startup.sh`.",
        "",
        "\"Read in\" lists the modules of `plugins/` and `dags/` that read the field (found by a static scan).",
    ]
    for group, items in groups.items():
        out += ["", f"## {'Top-level fields' if group == 'top level' else f'`{group}`'}", "",
                "| field | type | default | allowed | read in | what |", "| --- | --- | --- | --- | --- | --- |"]
        for name, kind, default, allowed, doc in items:
            section = ".".join(name.split(".")[:2])
            # a section read only as a whole (the hyperparameters mapping): its modules read every field
            specific = where.get(name) or (where.get(section, set()) if not any(
                k.startswith(section + ".") for k in where) else set())
            modules = ", ".join(f"`{m}`" for m in sorted(specific)) or "—"
            out.append(f"| `{name}` | {kind} | {_cell(_default(default))} | {_cell(allowed)} | {modules} | "
                       f"{_cell(doc)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run `make config-doc`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
