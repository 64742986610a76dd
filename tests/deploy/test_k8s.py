"""deploy/k8s: each overlay builds, is valid for Kubernetes and the operators' CRDs, and
matches the code (commands, settings, topics, consumer groups, ports, probes)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import yaml
from jsonschema import Draft7Validator

from kanol_common.events import TOPICS
from tests.deploy.facts import (
    ROOT,
    SETTINGS_BY_MODULE,
    check_entry_point,
    consumer_topology,
    known_variables,
    load_settings,
    option_value,
    python_module_of,
)
from tests.deploy.k8s import (
    Resource,
    container_environment,
    egress_allowed,
    egress_to_outside_allowed,
    ingress_allowed,
    named,
    of_kind,
    pod_labels,
    policies_for,
    selector_matches,
    workloads,
)

CRD_DIR = ROOT / "tests" / "deploy" / "schemas" / "crds"
SERVICES = {
    "identity": "kanol_identity",
    "actes-pes": "kanol_actes_pes",
    "archive": "kanol_archive",
}
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic"}
STRIMZI_API = "kafka.strimzi.io/v1"
NAME = "app.kubernetes.io/name"


# -- schemas -------------------------------------------------------------------------------


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of each vendored CRD's served versions."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = _closed(schema)
    return schemas


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused: the API server would silently prune them,
    which hides a misspelt field; x-kubernetes-preserve-unknown-fields stays open."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    # metadata is the API server's, described as a bare object in CRDs.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    return schema


def is_custom(resource: Resource) -> bool:
    """A kind of an operator's CRD: its API group has dots, and is not Kubernetes' own."""
    group = str(resource["apiVersion"]).rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def test_each_overlay_builds(overlays: dict[str, list[Resource]]) -> None:
    for name, resources in overlays.items():
        kinds = {r["kind"] for r in resources}
        assert {"Deployment", "Service", "NetworkPolicy", "Kafka", "Cluster"} <= kinds, name


def test_kubernetes_kinds_are_valid(overlays: dict[str, list[Resource]], overlay: str) -> None:
    version = kubernetes_validate.utils.latest_version()
    checked = 0
    for resource in overlays[overlay]:
        if is_custom(resource):
            continue  # checked against the operators' CRDs below
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked >= 20


def test_custom_resources_match_the_operators_crds(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    """KEDA, CloudNativePG and prometheus-operator kinds against their vendored CRDs;
    Strimzi's kinds have no CRD file in a registry and are checked by shape below."""
    schemas = crd_schemas()
    for resource in overlays[overlay]:
        if not is_custom(resource):
            continue
        key = (resource["apiVersion"], resource["kind"])
        if resource["kind"] in STRIMZI_KINDS:
            assert resource["apiVersion"] == STRIMZI_API
            continue
        assert key in schemas, f"no CRD for {key}"
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft7Validator(schemas[key]).iter_errors(resource)
        ]
        assert errors == [], f"{resource['kind']}/{resource['metadata']['name']}"


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    scaled_object: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [], "maxReplicas": 3},
    }
    validator = Draft7Validator(crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")])
    assert not validator.is_valid(scaled_object)
    del scaled_object["spec"]["maxReplicas"]
    assert validator.is_valid(scaled_object)


# -- workloads against the code ------------------------------------------------------------


def service_deployments(resources: list[Resource]) -> dict[str, Resource]:
    return {
        d["metadata"]["name"]: d
        for d in of_kind(resources, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == "service"
    }


def test_every_service_is_deployed(overlays: dict[str, list[Resource]], overlay: str) -> None:
    assert set(service_deployments(overlays[overlay])) == set(SERVICES)


def test_commands_are_real_entry_points(overlays: dict[str, list[Resource]], overlay: str) -> None:
    for _, template in workloads(overlays[overlay]):
        for container in template["spec"]["containers"]:
            check_entry_point(container["command"])


def test_variables_are_settings_and_load(overlays: dict[str, list[Resource]], overlay: str) -> None:
    """Every KANOL_* name a container gets is read by its entry point, and the values
    (ConfigMaps and env, secrets replaced by a placeholder) make valid settings."""
    resources = overlays[overlay]
    for workload, template in workloads(resources):
        for container in template["spec"]["containers"]:
            module, _ = python_module_of(container["command"])
            environment = container_environment(resources, container)
            kanol = {k: v for k, v in environment.items() if k.startswith("KANOL_")}
            unknown = set(kanol) - known_variables(module)
            assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)}"
            settings = load_settings(module, kanol)
            if module in SERVICES.values():
                service = next(name for name, m in SERVICES.items() if m == module)
                assert settings.service_name == service, workload["metadata"]["name"]
                assert str(settings.data_dir) == "/data"


def test_probes_ask_livez_and_readyz_on_the_port_served(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    for name, deployment in service_deployments(overlays[overlay]).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = int(option_value(container["command"], "--port") or 0)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port == SETTINGS_BY_MODULE[SERVICES[name]]().port  # type: ignore[attr-defined]
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/livez"),
        ):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert ports.get(get["port"], get["port"]) == port, f"{name} {probe} port"
        assert option_value(container["command"], "--host") == "0.0.0.0"  # noqa: S104


def test_pods_run_non_root_on_a_read_only_root(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    for workload, template in workloads(overlays[overlay]):
        name = workload["metadata"]["name"]
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 1000, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        mounted = set()
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, name
            assert "memory" in container["resources"]["limits"], name
            mounted |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        # Python, uvicorn and the services write only there.
        assert "/tmp" in mounted, name
        if workload["kind"] == "Deployment":
            assert "/data" in mounted, name


def test_services_accounts_and_budgets_select_their_pods(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    resources = overlays[overlay]
    for name, deployment in service_deployments(resources).items():
        template = deployment["spec"]["template"]
        labels = pod_labels(template)
        named(resources, "ServiceAccount", template["spec"]["serviceAccountName"])
        service = named(resources, "Service", name)
        assert selector_matches({"matchLabels": service["spec"]["selector"]}, labels)
        (container,) = template["spec"]["containers"]
        names = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
        budgets = [
            b
            for b in of_kind(resources, "PodDisruptionBudget")
            if selector_matches(b["spec"]["selector"], labels)
        ]
        assert len(budgets) == 1, name
        for volume in template["spec"].get("volumes", []):
            if claim := volume.get("persistentVolumeClaim"):
                named(resources, "PersistentVolumeClaim", claim["claimName"])


def test_referenced_secrets_exist_or_are_documented(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    """dev generates its secrets; prod's are created by the operator from deploy/README.md."""
    resources = overlays[overlay]
    referenced = set()
    for _, template in workloads(resources):
        for container in template["spec"]["containers"]:
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    referenced.add(ref["name"])
    cluster = of_kind(resources, "Cluster")[0]
    referenced |= {r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    present = {s["metadata"]["name"] for s in of_kind(resources, "Secret")}
    if overlay == "dev":
        assert referenced <= present
    else:
        readme = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
        assert all(name in readme for name in referenced), referenced - present


# -- PostgreSQL ----------------------------------------------------------------------------


def test_each_service_has_its_role_and_database(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    resources = overlays[overlay]
    (cluster,) = of_kind(resources, "Cluster")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d for d in of_kind(resources, "Database")}
    seen = set()
    for name, deployment in service_deployments(resources).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        url = urlsplit(container_environment(resources, container)["KANOL_DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg"
        assert url.hostname == f"{cluster['metadata']['name']}-rw", name
        database = url.path.lstrip("/")
        role = roles[url.username or ""]
        assert role["login"] is True and role["ensure"] == "present"
        assert databases[database]["spec"]["owner"] == url.username
        assert databases[database]["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
        password_ref = next(
            v["valueFrom"]["secretKeyRef"]
            for v in container["env"]
            if v["name"] == "DATABASE_PASSWORD"
        )
        # The role's password is the one the service presents.
        assert password_ref == {"name": role["passwordSecret"]["name"], "key": "password"}
        seen.add(database)
    assert len(seen) == len(SERVICES)
    if overlay == "dev":
        for secret in of_kind(resources, "Secret"):
            if secret["metadata"]["name"] in {r["passwordSecret"]["name"] for r in roles.values()}:
                assert secret["type"] == "kubernetes.io/basic-auth"


# -- Kafka ---------------------------------------------------------------------------------


def kafka_cluster(resources: list[Resource]) -> tuple[Resource, list[Resource]]:
    (kafka,) = of_kind(resources, "Kafka")
    pools = [
        p
        for p in of_kind(resources, "KafkaNodePool")
        if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    ]
    return kafka, pools


def test_kafka_runs_in_kraft_mode_with_node_pools(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    resources = overlays[overlay]
    kafka, pools = kafka_cluster(resources)
    assert kafka["apiVersion"] == STRIMZI_API
    assert "zookeeper" not in kafka["spec"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    assert len(pools) == len(of_kind(resources, "KafkaNodePool"))
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert controllers % 2 == 1, "a KRaft quorum has an odd number of voters"
    assert brokers >= 1
    for pool in pools:
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        resources_of_pool = pool["spec"]["resources"]
        assert resources_of_pool["requests"]["memory"] == resources_of_pool["limits"]["memory"]
        volumes = pool["spec"]["storage"]["volumes"]
        assert pool["spec"]["storage"]["type"] == "jbod"
        assert sum(v.get("kraftMetadata") == "shared" for v in volumes) == 1
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] <= brokers
    assert config["min.insync.replicas"] <= config["default.replication.factor"]
    assert config["offsets.topic.replication.factor"] <= brokers
    (listener,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["port"] == 9092]
    assert listener["type"] == "internal" and listener["tls"] is False

    platform = named(resources, "ConfigMap", "kanol-platform")["data"]
    # Strimzi's bootstrap Service is <cluster>-kafka-bootstrap.
    assert platform["KANOL_KAFKA_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    assert int(platform["KANOL_KAFKA_REPLICATION_FACTOR"]) <= brokers


def test_every_topic_of_the_code_has_a_kafka_topic(
    overlays: dict[str, list[Resource]], overlay: str, tmp_path: Path
) -> None:
    """The event catalog's topics, and every consumer group's retry and DLQ topics, as the
    services' apps build them."""
    resources = overlays[overlay]
    kafka, pools = kafka_cluster(resources)
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    platform = named(resources, "ConfigMap", "kanol-platform")["data"]
    prefix = platform.get("KANOL_KAFKA_TOPIC_PREFIX", "")
    topics = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    wanted = {f"{prefix}{topic}" for topic in TOPICS}
    for groups in consumer_topology(tmp_path).values():
        for _, consumed, retry, dlq in groups:
            wanted |= {*consumed, retry, dlq}
    assert wanted <= set(topics), sorted(wanted - set(topics))
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["metadata"]["name"] == name
        spec = topic["spec"]
        assert 1 <= spec["replicas"] <= brokers, name
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"], name
        assert spec["partitions"] >= 1
    for event_topic in TOPICS:
        assert topics[f"{prefix}{event_topic}"]["spec"]["partitions"] == int(
            platform["KANOL_KAFKA_EVENT_TOPIC_PARTITIONS"]
        )


def test_archive_scales_on_the_lag_of_its_consumer_group(
    overlays: dict[str, list[Resource]], overlay: str, tmp_path: Path
) -> None:
    resources = overlays[overlay]
    (scaled,) = of_kind(resources, "ScaledObject")
    target = named(resources, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert target["metadata"]["name"] == "archive"
    assert "replicas" not in target["spec"], "KEDA owns archive's replica count"
    groups = {g[0]: g for g in consumer_topology(tmp_path)["archive"]}
    from kanol_archive.consumers import GROUP_ID

    platform = named(resources, "ConfigMap", "kanol-platform")["data"]
    group = f"{platform.get('KANOL_KAFKA_TOPIC_PREFIX', '')}{GROUP_ID}"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == group and group in groups
    kafka, _ = kafka_cluster(resources)
    namespace = target["metadata"]["namespace"]
    # KEDA's operator lives in another namespace: the address must be fully qualified.
    assert trigger["metadata"]["bootstrapServers"] == (
        f"{kafka['metadata']['name']}-kafka-bootstrap.{namespace}.svc:9092"
    )
    topics = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    partitions = min(topics[topic]["spec"]["partitions"] for topic in groups[group][1])
    spec = scaled["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert trigger["metadata"]["allowIdleConsumers"] == "false"


# -- network policies ----------------------------------------------------------------------


def test_the_namespace_denies_by_default(overlays: dict[str, list[Resource]], overlay: str) -> None:
    resources = overlays[overlay]
    deny = [
        p
        for p in of_kind(resources, "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")
    ]
    assert deny and "Ingress" in deny[0]["spec"]["policyTypes"]
    for workload, template in workloads(resources):
        labels = pod_labels(template)
        name = workload["metadata"]["name"]
        assert policies_for(resources, labels, "Ingress"), f"{name}: no ingress policy"
        egress = policies_for(resources, labels, "Egress")
        assert any(not p["spec"].get("egress") for p in egress), f"{name}: egress not denied"


def _service_pods(resources: list[Resource], host: str) -> tuple[dict[str, str], int, str]:
    """The labels and the port of the pods behind Service ``host``."""
    service = named(resources, "Service", host)
    for _, template in workloads(resources):
        labels = pod_labels(template)
        if selector_matches({"matchLabels": service["spec"]["selector"]}, labels):
            (container,) = template["spec"]["containers"]
            (port,) = [
                p
                for p in container["ports"]
                if p["name"] == service["spec"]["ports"][0]["targetPort"]
            ]
            return labels, port["containerPort"], port["name"]
    raise AssertionError(f"no pods behind Service {host}")


def test_policies_allow_what_each_workload_talks_to(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    """Every address in a workload's settings is reachable through the policies, both
    ways, and nothing else of Kanol's is: the database, Kafka, the other services."""
    resources = overlays[overlay]
    kafka, _ = kafka_cluster(resources)
    (cluster,) = of_kind(resources, "Cluster")
    listener = kafka["spec"]["kafka"]["listeners"][0]
    postgres_pods = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    kafka_pods = {"strimzi.io/cluster": kafka["metadata"]["name"], "strimzi.io/kind": "Kafka"}
    url_settings = ("KANOL_IDENTITY_URL", "KANOL_PREFECTURE_URL", "KANOL_HELIOS_URL")
    for workload, template in workloads(resources):
        name = workload["metadata"]["name"]
        source = pod_labels(template)
        (container,) = template["spec"]["containers"]
        environment = container_environment(resources, container)
        if "KANOL_DATABASE_URL" in environment:
            assert egress_allowed(resources, source, postgres_pods, 5432), f"{name} -> postgres"
            assert ingress_allowed(resources, source, postgres_pods, 5432, None), name
        if workload["kind"] == "Deployment" and SERVICES.get(name):
            assert egress_allowed(resources, source, kafka_pods, 9092), f"{name} -> kafka"
            # Strimzi builds the brokers' ingress policy from the listener's peers.
            peers = listener["networkPolicyPeers"]
            assert any(selector_matches(p.get("podSelector"), source) for p in peers), name
        urls = [environment[v] for v in url_settings if v in environment and SERVICES.get(name)]
        if name == "archive":
            urls += yaml.safe_load(environment["KANOL_TRUSTED_DOCUMENT_ORIGINS"])
        for url in urls:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if host == name:  # itself (identity's own address)
                continue
            if "." in host:  # outside the cluster
                assert egress_to_outside_allowed(resources, source, parts.port or 443), url
                continue
            target, port, port_name = _service_pods(resources, host)
            assert port == parts.port, url
            assert egress_allowed(resources, source, target, port), f"{name} -> {url}"
            assert ingress_allowed(resources, source, target, port, port_name), f"{name} -> {url}"
    # And what is not in anyone's settings stays closed: nobody but archive calls actes-pes,
    # and no service calls archive.
    identity = pod_labels(named(resources, "Deployment", "identity")["spec"]["template"])
    archive = pod_labels(named(resources, "Deployment", "archive")["spec"]["template"])
    actes = pod_labels(named(resources, "Deployment", "actes-pes")["spec"]["template"])
    assert not egress_allowed(resources, identity, actes, 8002)
    assert not ingress_allowed(resources, identity, actes, 8002, "http")
    assert not ingress_allowed(resources, actes, archive, 8003, "http")


def test_maintenance_runs_on_schedules_with_the_service_settings(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    """archive's audit, logbook verification and orphan collection, and actes-pes's orphan
    collection run as CronJobs, one at a time, on their service's own database, object
    store and volume of documents."""
    resources = overlays[overlay]
    commands = set()
    for cron_job in of_kind(resources, "CronJob"):
        name = cron_job["metadata"]["name"]
        assert len(cron_job["spec"]["schedule"].split()) == 5, name
        assert cron_job["spec"]["concurrencyPolicy"] == "Forbid", name
        pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        module, arguments = python_module_of(container["command"])
        commands.add((module, arguments[0]))
        service_name = next(n for n, m in SERVICES.items() if m == module)
        service = named(resources, "Deployment", service_name)["spec"]["template"]["spec"]
        # The service's settings, but for credentials it does not use (archive's client).
        environment = container_environment(resources, container)
        expected = container_environment(resources, service["containers"][0])
        assert environment.items() <= expected.items(), name
        assert "KANOL_DATABASE_URL" in environment, name
        if environment.get("KANOL_STORAGE", "local") == "local":
            volume = {v["name"]: v for v in pod["volumes"]}["data"]
            assert volume == {v["name"]: v for v in service["volumes"]}["data"], name
    assert commands == {
        ("kanol_archive", "audit"),
        ("kanol_archive", "verify-logbook"),
        ("kanol_archive", "collect-orphans"),
        ("kanol_actes_pes", "collect-orphans"),
    }


# -- monitoring ----------------------------------------------------------------------------


def test_prometheus_scrapes_every_service(
    overlays: dict[str, list[Resource]], overlay: str
) -> None:
    resources = overlays[overlay]
    monitors = of_kind(resources, "PodMonitor")
    for name, deployment in service_deployments(resources).items():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"] for p in container["ports"]}
        matching = [
            m for m in monitors if selector_matches(m["spec"]["selector"], pod_labels(template))
        ]
        assert len(matching) == 1, name
        (endpoint,) = matching[0]["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["port"] in ports
        # The dashboard groups by "service": the relabeling must set it.
        assert any(r["targetLabel"] == "service" for r in endpoint["relabelings"])
