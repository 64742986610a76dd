"""Reading built Kubernetes manifests: selectors, network policies, containers' settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Resource = dict[str, Any]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if selector is None:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def workloads(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """(workload, pod template) of every Deployment, Job and CronJob."""
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource, resource["spec"]["template"]
        elif resource["kind"] == "CronJob":
            yield resource, resource["spec"]["jobTemplate"]["spec"]["template"]


def pod_labels(template: Resource) -> dict[str, str]:
    return dict(template["metadata"].get("labels", {}))


def policies_for(
    resources: list[Resource], labels: dict[str, str], direction: str
) -> list[Resource]:
    return [
        policy
        for policy in of_kind(resources, "NetworkPolicy")
        if direction in policy["spec"].get("policyTypes", [])
        and selector_matches(policy["spec"]["podSelector"], labels)
    ]


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, name: str | None) -> bool:
    if not rule_ports:
        return True
    return any(p.get("port") in (port, name) for p in rule_ports)


def _peer_matches(
    peer: dict[str, Any], labels: dict[str, str], namespace_labels: dict[str, str]
) -> bool:
    """A peer in the same namespace (namespace_labels None means another namespace)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and not selector_matches(
        peer["namespaceSelector"], namespace_labels
    ):
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], labels)
    return "namespaceSelector" in peer


def egress_allowed(
    resources: list[Resource], source: dict[str, str], target: dict[str, str], port: int
) -> bool:
    """Can pods labelled ``source`` open a connection to pods labelled ``target`` on ``port``
    (both in the overlay's namespace), as far as the source's egress policies go?"""
    namespace = _namespace_labels(resources)
    for policy in policies_for(resources, source, "Egress"):
        for rule in policy["spec"].get("egress", []) or []:
            peers = rule.get("to")
            if not _port_matches(rule.get("ports"), port, None):
                continue
            if peers is None or any(_peer_matches(p, target, namespace) for p in peers):
                return True
    return False


def egress_to_outside_allowed(resources: list[Resource], source: dict[str, str], port: int) -> bool:
    for policy in policies_for(resources, source, "Egress"):
        for rule in policy["spec"].get("egress", []) or []:
            if not _port_matches(rule.get("ports"), port, None):
                continue
            for peer in rule.get("to", []):
                block = peer.get("ipBlock", {})
                if block.get("cidr") == "0.0.0.0/0":
                    return True
    return False


def ingress_allowed(
    resources: list[Resource],
    source: dict[str, str],
    target: dict[str, str],
    port: int,
    port_name: str | None,
) -> bool:
    namespace = _namespace_labels(resources)
    for policy in policies_for(resources, target, "Ingress"):
        for rule in policy["spec"].get("ingress", []) or []:
            peers = rule.get("from")
            if not _port_matches(rule.get("ports"), port, port_name):
                continue
            if peers is None or any(_peer_matches(p, source, namespace) for p in peers):
                return True
    return False


def _namespace_labels(resources: list[Resource]) -> dict[str, str]:
    namespaces = of_kind(resources, "Namespace")
    if not namespaces:
        return {}
    labels = dict(namespaces[0]["metadata"].get("labels", {}))
    labels["kubernetes.io/metadata.name"] = namespaces[0]["metadata"]["name"]
    return labels


def container_environment(
    resources: list[Resource], container: Resource, *, placeholder: str = "secret"
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env
    (secrets as ``placeholder``, $(NAME) references expanded)."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef")
        assert reference, f"{container['name']}: only ConfigMaps in envFrom"
        config_map = named(resources, "ConfigMap", reference["name"])
        environment.update(config_map.get("data", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            value = str(variable["value"])
            for name, known in environment.items():
                value = value.replace(f"$({name})", known)
            environment[variable["name"]] = value
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            environment[variable["name"]] = placeholder
        else:
            raise AssertionError(f"{variable['name']}: unexpected valueFrom")
    return environment
