"""docs/ARCHITECTURE.md stays true: its package table lists every module there is, and the two
layering rules it states hold in the code."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
_ROW = re.compile(r"^\| `(app(?:/[a-z_]+)*)` \| [^|]+ \| (.+) \|$")


def _documented() -> dict[str, set[str]]:
    table = DOC.read_text().split("## Packages and modules", 1)[1]
    rows = (_ROW.match(line) for line in table.splitlines())
    return {row.group(1): set(re.findall(r"`([a-z0-9_]+)`", row.group(2))) for row in rows if row}


def _actual() -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for path in (ROOT / "app").rglob("*.py"):
        relative = path.relative_to(ROOT)
        if "versions" in relative.parts or path.stem == "__init__":
            continue
        packages.setdefault(str(relative.parent), set()).add(path.stem)
    return packages


def test_the_module_table_lists_every_module_of_every_package() -> None:
    documented, actual = _documented(), _actual()
    assert sorted(documented) == sorted(actual)
    for package, modules in actual.items():
        assert documented[package] == modules, package


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_web_layer_imports_it_and_only_the_tasks_import_the_tasks() -> None:
    for path in (ROOT / "app").rglob("*.py"):
        relative = str(path.relative_to(ROOT))
        imported = _imports(path)
        web = relative.startswith(("app/api/", "app/playground/")) or relative == "app/main.py"
        if not web:
            assert not {name for name in imported if name.startswith("app.api")}, relative
        if not relative.startswith("app/tasks/"):
            assert not {name for name in imported if name.startswith("app.tasks")}, relative


def test_every_module_the_rules_table_names_exists() -> None:
    text = DOC.read_text().split("## Where each rule lives", 1)[1].split("## Packages", 1)[0]
    for module in re.findall(r"`(app/[a-z_/]+\.py)`", text):
        assert (ROOT / module).is_file(), module
