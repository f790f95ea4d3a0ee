"""deploy/k8s: each overlay rendered by kustomize, validated offline, and held to what matters.

- Every rendered document validates against Kubernetes 1.30's schema, strictly
  (kubernetes-validate): a misspelt or misplaced field fails here, not at `kubectl apply`.
- Every process of common/run_all.py has a Deployment running it on its port, with a Service;
  each server has its startup, liveness and readiness probes on /health/live and /health/ready;
  every container has resource requests and limits; every pod runs as non-root with the
  restricted profile, and the project's containers on a read-only root with /tmp an emptyDir.
- The orchestrator: two replicas or more, a PDB and an HPA that select it alone, a shutdown that
  fits its grace period; the relay on its own (alone in production); the migrations Job migrates
  every process; the purge CronJob's arguments are ones the purge command takes.
- Tokens and database URLs come from Secrets; production ships none, only names an operator's;
  its settings are production's and parse.
The NetworkPolicies are evaluated in test_deploy_network.py.
"""

import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from common.run_all import PROCESSES
from common.settings import DEV_ADMIN_TOKEN, DEV_SERVICE_TOKEN
from concert_service.config import Settings as ConcertSettings
from data_platform.config import Settings as DataPlatformSettings
from orchestrator.config import Settings as OrchestratorSettings
from order_service.config import Settings as OrderSettings
from payment_service.config import Settings as PaymentSettings
from sagaengine import purge
from tests.unit.deploy_manifests import (
    OVERLAY_NAMES,
    ROOT,
    env_of,
    named,
    of_kind,
    project_image,
    render,
    runs_the_project_image,
    workloads,
)
from user_service.config import Settings as UserSettings

KUBERNETES_VERSION = "1.30.0"
PACKAGES = {package: port for package, port in PROCESSES}
SECRET_SETTINGS = {"PG_URL", "ADMIN_TOKEN", "SERVICE_TOKEN", "ADMIN_VIEWER_TOKEN"}
TEST_SETTINGS = ("_DATABASE_URL", "_FAULT_INJECTION")
# The Secrets an operator creates for production; deploy/README.md says how.
OPERATOR_SECRETS = {"saga-secrets", "saga-pgbouncer"}
SETTINGS = {
    "orchestrator": OrchestratorSettings,
    "order_service": OrderSettings,
    "user_service": UserSettings,
    "payment_service": PaymentSettings,
    "concert_service": ConcertSettings,
    "data_platform": DataPlatformSettings,
}

overlays = pytest.mark.parametrize("overlay", OVERLAY_NAMES)


def serve_args(container: dict[str, Any]) -> tuple[str, int] | None:
    """(package, port) of a container running `python -m <package> serve ... --port N`."""
    args = container.get("args", [])
    if len(args) < 2 or args[1] != "serve":
        return None
    return args[0], int(args[args.index("--port") + 1])


def servers(overlay: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """package -> (its Deployment's pod spec, its container), for each `serve`."""
    found = {}
    for workload in workloads(render(overlay)):
        for container in workload.containers():
            served = serve_args(container)
            if served:
                assert served[0] not in found, f"{served[0]} is served by two Deployments"
                found[served[0]] = (workload.spec, container)
    return found


@overlays
def test_every_document_validates_against_the_kubernetes_schema(overlay):
    errors = []
    for doc in render(overlay):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {error.message}")
    assert not errors, "\n".join(errors)


@overlays
def test_every_process_is_served_on_its_port_behind_a_service(overlay):
    docs = render(overlay)
    served = servers(overlay)
    assert set(served) == set(PACKAGES)
    for package, (_, container) in served.items():
        port = PACKAGES[package]
        assert serve_args(container) == (package, port)
        assert "0.0.0.0" in container["args"], f"{package} listens on loopback only"
        assert [p["containerPort"] for p in container["ports"]] == [port]
        service = named(docs, "Service", package.replace("_", "-"))
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert service["spec"]["ports"][0]["targetPort"] in (port, container["ports"][0]["name"])


@overlays
def test_every_server_is_probed_on_its_health_endpoints(overlay):
    for package, (_, container) in servers(overlay).items():
        port_name = container["ports"][0]["name"]
        probes = {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",
            "readinessProbe": "/health/ready",
        }
        for probe, path in probes.items():
            assert probe in container, f"{package} has no {probe}"
            http = container[probe]["httpGet"]
            assert (http["path"], http["port"]) == (path, port_name), f"{package} {probe}"


@overlays
def test_every_container_has_resource_requests_and_limits(overlay):
    for workload in workloads(render(overlay)):
        for container in workload.containers():
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert set(resources.get(bound, {})) >= {"cpu", "memory"}, (
                    f"{workload.name}/{container['name']} has no cpu and memory {bound}"
                )


@overlays
def test_every_pod_runs_as_non_root_with_the_restricted_profile(overlay):
    for workload in workloads(render(overlay)):
        pod = workload.spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, workload.name
        assert pod.get("runAsUser", 0) != 0, workload.name
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, workload.name
        assert workload.spec.get("automountServiceAccountToken") is False, workload.name
        tmp_volumes = {v["name"] for v in workload.spec.get("volumes", []) if "emptyDir" in v}
        for container in workload.containers():
            context = container.get("securityContext", {})
            where = f"{workload.name}/{container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities") == {"drop": ["ALL"]}, where
            if runs_the_project_image(container, overlay):
                assert context.get("readOnlyRootFilesystem") is True, where
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in tmp_volumes, f"{where}: /tmp is no emptyDir"


@overlays
def test_every_container_of_the_project_runs_the_overlays_tagged_image(overlay):
    image = project_image(overlay)
    assert not image.endswith(":latest")
    for workload in workloads(render(overlay)):
        for container in workload.containers():
            if container.get("args", [None])[0] in PACKAGES:
                assert container["image"] == image, f"{workload.name}/{container['name']}"
            else:  # someone else's image: pinned to a version too
                assert ":" in container["image"] and not container["image"].endswith(":latest")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


@overlays
def test_the_orchestrator_has_two_replicas_a_pdb_and_an_hpa_of_its_own(overlay):
    docs = render(overlay)
    deployment = named(docs, "Deployment", "orchestrator")
    assert deployment["spec"]["replicas"] >= 2
    pod_labels = {w.name: w.labels for w in workloads(docs) if w.kind == "Deployment"}

    pdbs = [
        pdb
        for pdb in of_kind(docs, "PodDisruptionBudget")
        if _selects(pdb["spec"]["selector"], pod_labels["orchestrator"])
    ]
    assert len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] >= 1
    others = [name for name, labels in pod_labels.items() if name != "orchestrator"]
    assert not [n for n in others if _selects(pdbs[0]["spec"]["selector"], pod_labels[n])]

    hpa = named(docs, "HorizontalPodAutoscaler", "orchestrator")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "orchestrator",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


@overlays
def test_the_orchestrators_shutdown_fits_in_its_grace_period(overlay):
    pod, container = servers(overlay)["orchestrator"]
    assert pod["terminationGracePeriodSeconds"] == 30
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    shutdown_grace = float(env_of(container)["ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS"]["value"])
    assert shutdown_grace == 20
    assert float(command[1]) + shutdown_grace < pod["terminationGracePeriodSeconds"]


@overlays
def test_the_outbox_relay_runs_on_its_own_and_alone_in_production(overlay):
    relay = named(render(overlay), "Deployment", "orchestrator-relay")
    (container,) = relay["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "orchestrator" and "relay" in container["args"]
    # Its metrics, on the port it declares and Prometheus is told of.
    port = int(container["args"][container["args"].index("--metrics-port") + 1])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    annotations = relay["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    _, orchestrator = servers(overlay)["orchestrator"]
    in_process = env_of(orchestrator).get("ORCHESTRATOR_RELAY_ENABLED", {}).get("value", "true")
    assert in_process == ("false" if overlay == "production" else "true")


@overlays
def test_the_migrations_job_migrates_every_process(overlay):
    job = named(render(overlay), "Job", "saga-migrate")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    steps = [c["args"] for c in spec.get("initContainers", []) + spec["containers"]]
    assert sorted(steps) == sorted([package, "migrate"] for package in PACKAGES)


@overlays
def test_the_purge_cronjob_runs_a_purge_the_command_accepts(overlay, monkeypatch):
    cronjob = named(render(overlay), "CronJob", "saga-purge")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["orchestrator", "purge"]
    asked = {}

    def recorded(url, older_than, **options):
        asked.update(options, older_than=older_than)
        return purge.PurgeReport(cutoff=datetime.now(UTC))

    monkeypatch.setattr(purge, "purge", recorded)
    purge.run("postgresql+psycopg://unused/saga", container["args"][2:])
    assert asked == {
        "older_than": timedelta(days=30),
        "batch": 5000,
        "dry_run": False,
        "archive_path": None,
    }


@overlays
def test_tokens_and_database_urls_come_from_secrets_only(overlay):
    docs = render(overlay)
    for workload in workloads(docs):
        for container in workload.containers():
            for name, entry in env_of(container).items():
                if name in SECRET_SETTINGS or name.endswith("_DATABASE_URL"):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        f"{workload.name}/{container['name']}: {name} is not from a Secret"
                    )
    for config_map in of_kind(docs, "ConfigMap"):
        leaked = {k for k in config_map.get("data", {}) if k in SECRET_SETTINGS}
        assert not leaked, f"{config_map['metadata']['name']} holds {leaked}"


def _referenced_secrets(overlay: str) -> set[str]:
    names = set()
    for workload in workloads(render(overlay)):
        for volume in workload.spec.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    names.add(source["secret"]["name"])
        for container in workload.containers():
            for entry in container.get("env", []):
                if "secretKeyRef" in entry.get("valueFrom", {}):
                    names.add(entry["valueFrom"]["secretKeyRef"]["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
    return names


def test_production_ships_no_secret_and_names_only_the_operators():
    assert of_kind(render("production"), "Secret") == []
    assert _referenced_secrets("production") == OPERATOR_SECRETS
    guide = (ROOT / "deploy" / "README.md").read_text()
    for name in OPERATOR_SECRETS:
        assert f"kubectl -n saga create secret generic {name}" in guide


def test_the_dev_secret_holds_the_documented_dev_tokens():
    (secret,) = [
        s
        for s in of_kind(render("dev"), "Secret")
        if s["metadata"]["name"].startswith("saga-secrets-")
    ]
    values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert values["ADMIN_TOKEN"] == DEV_ADMIN_TOKEN
    assert values["SERVICE_TOKEN"] == DEV_SERVICE_TOKEN


def test_production_settings_are_productions_and_every_process_accepts_them(monkeypatch):
    docs = render("production")
    (config,) = [
        c["data"]
        for c in of_kind(docs, "ConfigMap")
        if c["metadata"]["name"].startswith("saga-config-")
    ]
    assert config["APP_ENV"] == "production"
    assert config["DB_PREPARED_STATEMENTS"] == "false"

    # The test suite's own settings (APP_ENV=test, its databases, fault injection) out of the way.
    for name in [n for n in os.environ if n == "APP_ENV" or n.endswith(TEST_SETTINGS)]:
        monkeypatch.delenv(name)
    secrets = {"PG_URL": "postgresql://saga:secret@pgbouncer:6432", "ADMIN_TOKEN": "a" * 32}
    secrets |= {"SERVICE_TOKEN": "s" * 32, "ADMIN_VIEWER_TOKEN": "v" * 32}
    for package, (_, container) in servers("production").items():
        with monkeypatch.context() as env:
            for name, entry in env_of(container).items():
                env.setenv(name, entry["value"] if "value" in entry else secrets[name])
            for name, value in config.items():
                env.setenv(name, value)
            try:
                settings = SETTINGS[package]()
            except ValidationError as error:
                pytest.fail(f"{package} refuses the production settings: {error}")
            assert settings.app_env == "production"
            assert settings.db_prepared_statements is False  # behind PgBouncer 1.18-like poolers
            if package == "orchestrator":
                assert settings.relay_enabled is False


def test_pgbouncer_pools_transactions_on_the_port_its_service_names():
    docs = render("production")
    (ini,) = [
        c["data"]["pgbouncer.ini"]
        for c in of_kind(docs, "ConfigMap")
        if c["metadata"]["name"].startswith("pgbouncer-config-")
    ]
    settings = dict(
        (part.strip() for part in line.split("=", 1))
        for line in ini.splitlines()
        if "=" in line and not line.lstrip().startswith((";", "#", "%"))
    )
    assert settings["pool_mode"] == "transaction"
    service = named(docs, "Service", "pgbouncer")
    assert [p["port"] for p in service["spec"]["ports"]] == [int(settings["listen_port"])]
    (container,) = named(docs, "Deployment", "pgbouncer")["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [int(settings["listen_port"])]
    # No session state to reset: the processes need none (pgbouncer.ini).
    assert "server_reset_query_always" not in settings
