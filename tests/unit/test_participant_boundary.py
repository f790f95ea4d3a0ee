"""A service adopts the participant kit on its own: the kit imports nothing of this project (its
services, orchestrator, common code, tools or tests), nor the saga engine beside it but for the
error shape both speak (`sagaengine.errors`), since a participant runs no sagas. Checked by
importing every module of the kit in a fresh interpreter and looking at what came along."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "sagaengine" / "participant"
# Every top-level package of the repository but the engine's.
PROJECT = {init.parent.name for init in ROOT.glob("*/__init__.py")} - {"sagaengine"}


def _loaded_by(modules: list[str]) -> set[str]:
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(run.stdout.split())


def test_the_kit_loads_nothing_of_the_project_nor_of_the_engine():
    kit = sorted(
        ".".join(source.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for source in KIT.rglob("*.py")
    )
    loaded = _loaded_by(kit)
    assert set(kit) <= loaded
    assert {name.split(".")[0] for name in loaded} & PROJECT == set()
    engine = {name for name in loaded if name.startswith("sagaengine.")}
    # Of the engine, only the error shape it shares with the engine (sagaengine.errors).
    outside = {name for name in engine if not name.startswith("sagaengine.participant")}
    assert outside <= {"sagaengine.errors"}


def test_the_check_sees_what_a_module_brings_along():
    assert "common.errors" in _loaded_by(["common.errors"])
    assert {"common", "orchestrator", "order_service", "tests"} <= PROJECT
