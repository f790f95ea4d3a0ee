"""deploy/k8s's NetworkPolicies, evaluated: the calls the saga needs pass, the others do not.

A small evaluator of the NetworkPolicy rules (label selectors, namespace selectors, ports,
policy types; no ipBlock, which these policies do not use) over each overlay's rendered pods,
plus the cluster's pods that take part: the ingress controller, Prometheus and the DNS server.
It judges what the policies allow, not what a CNI enforces: the cluster's plugin must enforce
NetworkPolicy for any of it to hold.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest

from common.run_all import PROCESSES
from tests.unit.deploy_manifests import OVERLAY_NAMES, Manifest, of_kind, render, workloads

PORTS = {package.replace("_", "-"): port for package, port in PROCESSES}
RELAY_METRICS_PORT = 9100
DOMAIN_SERVICES = ["order-service", "user-service", "payment-service", "concert-service"]
DATABASE = {"dev": ("postgres", 5432), "production": ("pgbouncer", 6432)}


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)


def _outside(namespace: str, **labels: str) -> Pod:
    return Pod(
        f"{namespace}/{labels}", namespace, labels, {"kubernetes.io/metadata.name": namespace}
    )


INGRESS_CONTROLLER = _outside("ingress-nginx", **{"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = _outside("monitoring", **{"app.kubernetes.io/name": "prometheus"})
DNS = _outside("kube-system", **{"k8s-app": "kube-dns"})
STRANGER = _outside("default", app="curl")
PROMETHEUS_ELSEWHERE = _outside("default", **{"app.kubernetes.io/name": "prometheus"})


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        holds = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not holds:
            return False
    return True


def _peer_matches(peer: dict[str, Any], pod: Pod, policy_namespace: str) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are not evaluated here"
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], pod.namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), pod.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for rule in rule_ports:
        assert isinstance(rule.get("port", 0), int), "named ports are not evaluated here"
        low = rule.get("port", port)
        if rule.get("protocol", "TCP") == protocol and low <= port <= rule.get("endPort", low):
            return True
    return False


def _policy_types(spec: dict[str, Any]) -> list[str]:
    types: list[str] = spec.get("policyTypes") or ["Ingress"] + (
        ["Egress"] if "egress" in spec else []
    )
    return types


class Policies:
    """The NetworkPolicies of one rendered overlay."""

    def __init__(self, docs: tuple[Manifest, ...]) -> None:
        self.policies = of_kind(docs, "NetworkPolicy")

    def _opens(self, direction: str, pod: Pod, peer: Pod, port: int, protocol: str) -> bool:
        """Whether `pod`'s policies let traffic with `peer` through in `direction`."""
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        applying = [
            policy
            for policy in self.policies
            if direction in _policy_types(policy["spec"])
            and policy["metadata"]["namespace"] == pod.namespace
            and selects(policy["spec"]["podSelector"], pod.labels)
        ]
        if not applying:  # selected by no policy of this direction: open in it
            return True
        for policy in applying:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key, []):
                peers = rule.get(peers_key)
                if _port_matches(rule.get("ports"), port, protocol) and (
                    not peers or any(_peer_matches(p, peer, namespace) for p in peers)
                ):
                    return True
        return False

    def sends(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        """Whether `source`'s own policies let it send (whatever the destination's say)."""
        return self._opens("Egress", source, destination, port, protocol)

    def admits(self, destination: Pod, source: Pod, port: int, protocol: str = "TCP") -> bool:
        """Whether `destination`'s own policies let it receive (whatever the source's say)."""
        return self._opens("Ingress", destination, source, port, protocol)

    def allows(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        return self.sends(source, destination, port, protocol) and self.admits(
            destination, source, port, protocol
        )


@pytest.fixture(params=OVERLAY_NAMES)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def policies(overlay: str) -> Policies:
    return Policies(render(overlay))


@pytest.fixture
def pods(overlay: str) -> dict[str, Pod]:
    """The overlay's pods by their workload's name, in its namespace."""
    docs = render(overlay)
    (namespace,) = of_kind(docs, "Namespace")
    name = namespace["metadata"]["name"]
    labels = {**namespace["metadata"].get("labels", {}), "kubernetes.io/metadata.name": name}
    return {w.name: Pod(w.name, w.namespace, w.labels, labels) for w in workloads(docs)}


def test_a_default_deny_covers_every_pod_of_the_namespace(policies):
    assert any(
        p["spec"]["podSelector"] == {}
        and _policy_types(p["spec"]) == ["Ingress"]
        and not p["spec"].get("ingress")
        for p in policies.policies
    )


def test_the_orchestrator_reaches_the_domain_services_and_the_data_platform(policies, pods):
    for name in [*DOMAIN_SERVICES, "data-platform"]:
        assert policies.allows(pods["orchestrator"], pods[name], PORTS[name]), name


def test_the_relay_reaches_the_data_platform_and_no_service(policies, pods):
    relay = pods["orchestrator-relay"]
    assert policies.allows(relay, pods["data-platform"], PORTS["data-platform"])
    for name in [*DOMAIN_SERVICES, "orchestrator"]:
        assert not policies.allows(relay, pods[name], PORTS[name]), name


def test_no_one_but_the_orchestrator_calls_a_service(policies, pods):
    """Services never call each other, and the one-shot jobs call no one: only the database."""
    callers = [*DOMAIN_SERVICES, "data-platform", "saga-migrate", "saga-purge"]
    for caller in callers:
        for name, port in PORTS.items():
            if name != caller:
                assert not policies.allows(pods[caller], pods[name], port), f"{caller} -> {name}"


# Whom each process calls; everything else is closed on both sides, each side on its own, so
# that one policy too wide is not hidden by the other side's.
CALLS = {
    "orchestrator": [*DOMAIN_SERVICES, "data-platform"],
    "orchestrator-relay": ["data-platform"],
}


def test_each_side_alone_closes_what_the_saga_does_not_call(overlay, policies, pods):
    database, _ = DATABASE[overlay]
    for caller, caller_pod in pods.items():
        for name, port in PORTS.items():
            if name == caller or name in CALLS.get(caller, []):
                continue
            assert not policies.admits(pods[name], caller_pod, port), f"{name} admits {caller}"
            # The database's own egress is open: where the managed server is, is the operator's.
            if caller != database:
                assert not policies.sends(caller_pod, pods[name], port), f"{caller} sends to {name}"


def test_a_pod_of_the_namespace_that_is_no_process_reaches_no_server(pods, policies):
    namespace = pods["orchestrator"]
    intruder = Pod("debug", namespace.namespace, {"app": "debug"}, namespace.namespace_labels)
    for name, port in PORTS.items():
        assert not policies.allows(intruder, pods[name], port), name


def test_every_process_reaches_its_database_and_the_dns(overlay, policies, pods):
    database, port = DATABASE[overlay]
    for name, pod in pods.items():
        if name != database:
            assert policies.allows(pod, pods[database], port), name
            assert policies.allows(pod, DNS, 53, "UDP"), name


def test_only_the_processes_reach_the_database(overlay, policies, pods):
    database, port = DATABASE[overlay]
    for outsider in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER):
        assert not policies.allows(outsider, pods[database], port), outsider.name


def test_clients_reach_the_public_api_through_the_ingress_controller_only(policies, pods):
    for name in ["orchestrator", *DOMAIN_SERVICES]:
        assert policies.allows(INGRESS_CONTROLLER, pods[name], PORTS[name]), name
        assert not policies.allows(STRANGER, pods[name], PORTS[name]), name
    assert not policies.allows(INGRESS_CONTROLLER, pods["data-platform"], PORTS["data-platform"])


def test_prometheus_scrapes_every_server_from_the_monitoring_namespace_only(policies, pods):
    for name, port in [*PORTS.items(), ("orchestrator-relay", RELAY_METRICS_PORT)]:
        assert policies.allows(PROMETHEUS, pods[name], port), name
        assert not policies.allows(PROMETHEUS_ELSEWHERE, pods[name], port), name
    assert not policies.allows(PROMETHEUS, pods["orchestrator-relay"], 8000)
