"""The dependency points one way: the saga engine (`sagaengine`) imports nothing from the sagas
of this project, nor from its services or their shared code. Checked two ways: by reading every
import statement of the package, and by importing the package in a fresh interpreter and
looking at what came along."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "sagaengine"
# What the engine must never reach: the app that runs it and the services it calls.
FORBIDDEN = (
    "orchestrator",
    "common",
    "order_service",
    "user_service",
    "payment_service",
    "concert_service",
    "data_platform",
    "examples",
    "tools",
    "tests",
)


def _imported_modules(source: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_module_of_the_engine_imports_the_app_or_the_services():
    offending = sorted(
        f"{source.relative_to(ROOT)} imports {module}"
        for source in ENGINE.rglob("*.py")
        for module in _imported_modules(source)
        if module.split(".")[0] in FORBIDDEN
    )
    assert offending == []


def test_importing_every_engine_module_loads_nothing_of_the_app():
    modules = sorted(
        ".".join(source.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for source in ENGINE.rglob("*.py")
    )
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FORBIDDEN)!r}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_the_boundary_check_sees_a_forbidden_import(tmp_path: Path):
    planted = tmp_path / "planted.py"
    planted.write_text("from orchestrator.definitions import REGISTRY\nimport common.logs\n")
    assert {"orchestrator.definitions", "common.logs"} <= _imported_modules(planted)


def test_the_public_api_the_package_names_resolves_and_loads_lazily():
    probe = (
        "import sys, sagaengine\n"
        "assert 'sagaengine.postgres' not in sys.modules, 'loaded at import'\n"
        "missing = [n for n in sagaengine.__all__ if getattr(sagaengine, n, None) is None]\n"
        "print(missing, all(n in sagaengine.__doc__ for n in sagaengine.__all__))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[] True"  # every name resolves, and the docstring names it
