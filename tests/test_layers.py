"""The package's layers, read from the imports (docs/architecture.md draws them).

Arrows point one way: a module imports only from its own layer and the layers below it.
Every import counts, including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "taskapi"

# Bottom to top. A module's layer is that of the longest prefix listed.
LAYERS: list[tuple[str, ...]] = [
    ("taskapi.config",),
    ("taskapi.core",),
    ("taskapi.models",),
    ("taskapi.schemas", "taskapi.mail"),
    ("taskapi.services",),
    ("taskapi.jobs",),
    ("taskapi.http",),
    ("taskapi.app",),
    ("taskapi.ops",),
]
# Entry points: the only modules outside ops that may import ops.
ENTRY_POINTS = {"taskapi.__main__", "asgi", "worker", "settings"}
WEB_FRAMEWORKS = ("quart", "quart_schema", "quart_cors", "werkzeug", "hypercorn")
ROOT_MODULES = {"__init__.py", "__main__.py", "app.py", "config.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (relative imports resolved; `from a import b` also counts
    `a.b`, which may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def package_imports() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sources()}


def violations(modules: dict[str, set[str]]) -> list[str]:
    found: list[str] = []
    for name, targets in sorted(modules.items()):
        own = layer_of(name)
        for target in sorted(targets):
            if own is not None and target.split(".")[0] in WEB_FRAMEWORKS and own <= 5:
                found.append(f"{name} imports {target}: only http, app and ops know the web")
            if not target.startswith("taskapi"):
                continue
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{name} imports {target}: a lower layer imports a higher one")
    return found


def test_arrows_point_down() -> None:
    assert violations(package_imports()) == []


def test_core_knows_no_web_framework() -> None:
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        web = [t for t in imports_of(path) if t.split(".")[0] in WEB_FRAMEWORKS]
        assert web == [], f"{module_name(path)} imports {web}"


def test_only_entry_points_import_ops() -> None:
    entry_files = [REPO / "asgi.py", REPO / "worker.py", REPO / "settings.py"]
    for path in [*sources(), *entry_files]:
        name = module_name(path)
        if name.startswith("taskapi.ops") or name in ENTRY_POINTS:
            continue
        ops = [t for t in imports_of(path) if t.startswith("taskapi.ops")]
        assert ops == [], f"{name} imports {ops}"


def test_root_shims_stay_thin() -> None:
    for shim in ("asgi.py", "worker.py", "settings.py"):
        assert len((REPO / shim).read_text().splitlines()) <= 20, shim


def test_package_root_holds_only_the_app_and_config() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")} - ROOT_MODULES
    assert loose == set()


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_past_300_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 300


def test_no_test_module_imports_another() -> None:
    for path in sorted((REPO / "tests").rglob("*.py")):
        bad = [t for t in imports_of(path)
               if t.startswith(("tests.test_", "tests.conftest"))]
        assert bad == [], f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize(("module", "target"), [
    ("taskapi.core.cache", "taskapi.http.current"),
    ("taskapi.services.tasks.commands", "taskapi.http.deps"),
    ("taskapi.jobs.emails", "taskapi.ops.worker"),
    ("taskapi.models.task", "taskapi.services.authz"),
    ("taskapi.core.db", "quart"),
])
def test_the_rules_catch_a_wrong_way_import(module: str, target: str) -> None:
    """The checker itself: each of these imports added to the real graph is reported."""
    modules = package_imports()
    modules[module] = modules[module] | {target}
    assert [v for v in violations(modules) if v.startswith(f"{module} imports {target}")]
