"""deploy/k8s as `kubectl apply -k` would apply it: each overlay rendered by kustomize.

kubectl's own kustomize renders them (`kubectl kustomize`), v5 or newer: Debian's
kubernetes-client (1.20) carries kustomize v2, which reads none of these kustomizations. A
kubectl missing or too old is a failure, not a skip: `make deploy-check` says how to get one.
"""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
OVERLAY_NAMES = ["dev", "production"]
KUSTOMIZE_MAJOR = 5

Manifest = dict[str, Any]


@cache
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is missing: `make deploy-check` says how to get one (kustomize v5+)")
    answer = subprocess.run(
        [path, "version", "--client", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    version = json.loads(answer.stdout).get("kustomizeVersion", "")
    found = re.match(r"v(\d+)\.", version)
    if found is None or int(found.group(1)) < KUSTOMIZE_MAJOR:
        pytest.fail(
            f"{path} carries kustomize {version or 'older than v4'}; deploy/k8s needs "
            f"v{KUSTOMIZE_MAJOR} or newer (kubectl 1.27+)"
        )
    return path


@cache
def render(overlay: str) -> tuple[Manifest, ...]:
    """Every document `kubectl kustomize deploy/k8s/overlays/<overlay>` prints."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Workload:
    """What runs pods: a Deployment, a Job or a CronJob, with its pod template."""

    kind: str
    name: str
    namespace: str
    template: Manifest  # the pod template: metadata and spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.template["metadata"]["labels"]
        return labels

    @property
    def spec(self) -> Manifest:
        spec: Manifest = self.template["spec"]
        return spec

    def containers(self) -> Iterator[Manifest]:
        yield from self.spec.get("initContainers", [])
        yield from self.spec["containers"]


def workloads(docs: tuple[Manifest, ...]) -> list[Workload]:
    found = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            template = doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        meta = doc["metadata"]
        found.append(Workload(doc["kind"], meta["name"], meta.get("namespace", ""), template))
    return found


@cache
def project_image(overlay: str) -> str:
    """The project's image in an overlay, as its kustomization's `images:` names it."""
    kustomization = yaml.safe_load((OVERLAYS / overlay / "kustomization.yaml").read_text())
    entry = next(image for image in kustomization["images"] if image["name"] == "saga")
    return f"{entry.get('newName', 'saga')}:{entry['newTag']}"


def runs_the_project_image(container: Manifest, overlay: str) -> bool:
    """Whether a container runs the project's image (not PgBouncer's or PostgreSQL's)."""
    return bool(container["image"] == project_image(overlay))


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}
