"""Print the project's runtime requirements for the container image, one per line.

The Dockerfile installs these before it copies the source, so that the layer of dependencies is
rebuilt only when pyproject.toml changes, not at every change of the code. pgserver is left out:
it is the embedded PostgreSQL that `make run-all` falls back on when no server answers; a
container always has a server to talk to, so it would only add a PostgreSQL build to the image.
Standard library only: it runs in the bare build stage, before anything is installed.
"""

import re
import sys
import tomllib
from pathlib import Path

# Dependencies that no process in a container imports.
LEFT_OUT = {"pgserver"}
# A requirement's distribution name: what precedes its extras, version or marker (PEP 508).
NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def distribution_name(requirement: str) -> str:
    match = NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [dep for dep in dependencies if distribution_name(dep) not in LEFT_OUT]


if __name__ == "__main__":
    print("\n".join(runtime_requirements(Path(sys.argv[1]))))
