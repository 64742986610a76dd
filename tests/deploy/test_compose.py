"""docker-compose.yml: valid Compose, the topology of `make up`, and real commands and
settings of the code."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema.validators import validator_for

from tests.deploy.facts import (
    ROOT,
    check_entry_point,
    known_variables,
    load_settings,
    option_value,
    python_module_of,
)

SCHEMA = ROOT / "tests" / "deploy" / "schemas" / "compose-spec.json"
PROCFILE = ROOT / "deploy" / "local" / "Procfile"
KANOL_SERVICES = ("identity", "actes-pes", "archive")
SIMULATORS = ("prefecture", "helios")
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolated(value: object) -> str:
    """A value as Compose runs it when no variable is set: ${NAME:-default} -> default."""
    return _DEFAULTED.sub(lambda match: match.group(2) or "", str(value))


def python_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if isinstance(service.get("command"), list) and service["command"][:2] == ["python", "-m"]
    }


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment is written as a mapping"
    return {name: interpolated(value) for name, value in environment.items()}


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_what_compose_rejects() -> None:
    # The check above means something only if the vendored schema refuses a bad file.
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    bad = {"services": {"x": {"image": "x", "depends_on": {"y": {"condition": "sometimes"}}}}}
    assert not validator.is_valid(bad)
    assert not validator.is_valid({"services": {"x": {"image": "x", "restart_policy": "no"}}})


def test_the_topology_is_that_of_make_up(compose: dict[str, Any]) -> None:
    """Every process of deploy/local/Procfile but the broker runs the same module here."""
    procfile_modules = set(re.findall(r"python -m ([\w.]+)", PROCFILE.read_text()))
    assert procfile_modules, "the Procfile names its processes' modules"
    compose_modules = {
        python_module_of(service["command"])[0] for service in python_services(compose).values()
    }
    assert procfile_modules <= compose_modules
    assert {*KANOL_SERVICES, *SIMULATORS, "kafka", "postgres"} <= set(compose["services"])


def test_kafka_is_4_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tag.split(".")[0] == "4"
    environment = kafka["environment"]
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in name for name in environment)
    bootstraps = {
        environment_of(service)["KANOL_KAFKA_BOOTSTRAP"]
        for name, service in compose["services"].items()
        if name in KANOL_SERVICES
    }
    # The advertised in-network listener is what the services use.
    advertised = environment["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert {f"PLAINTEXT://{b}" for b in bootstraps} <= set(advertised)


def test_every_command_is_a_real_entry_point(compose: dict[str, Any]) -> None:
    services = python_services(compose)
    assert set(services) >= {*KANOL_SERVICES, *SIMULATORS}
    for service in services.values():
        check_entry_point([interpolated(part) for part in service["command"]])


def test_every_variable_is_a_setting_of_its_service(compose: dict[str, Any]) -> None:
    for name, service in python_services(compose).items():
        module, _ = python_module_of(service["command"])
        variables = {v for v in environment_of(service) if v.startswith("KANOL_")}
        unknown = variables - known_variables(module)
        assert not unknown, f"{name}: {sorted(unknown)} are read by nothing"


def test_the_settings_load_from_the_environment_given(compose: dict[str, Any]) -> None:
    """Types and choices too: what the file says is what the process can start with."""
    for name in KANOL_SERVICES:
        service = compose["services"][name]
        module, arguments = python_module_of(service["command"])
        environment = environment_of(service)
        settings = load_settings(module, environment)
        assert settings.service_name == name
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.database_url is not None
        assert str(settings.data_dir) == "/data"
        assert option_value(arguments, "--host") == "0.0.0.0"  # noqa: S104 (in a container)


def test_the_services_find_each_other_by_their_compose_names(compose: dict[str, Any]) -> None:
    """Each URL a service is given names a Compose service on the port it listens on, and
    the service waits for it to be healthy."""
    services = compose["services"]
    listening = {
        name: int(option_value(s["command"], "--port") or 0)
        for name, s in python_services(compose).items()
        if option_value(s["command"], "--port")
    }
    url_settings = (
        "KANOL_IDENTITY_URL",
        "KANOL_PREFECTURE_URL",
        "KANOL_HELIOS_URL",
        "KANOL_PUBLIC_URL",
        "KANOL_DATABASE_URL",
    )
    for name in KANOL_SERVICES:
        environment = environment_of(services[name])
        depends_on = services[name].get("depends_on", {})
        for variable in url_settings:
            if variable not in environment:
                continue
            url = urlsplit(environment[variable])
            host = url.hostname
            assert host in services, f"{name} {variable}: no service {host}"
            if host == name:
                assert url.port == listening[name]
                continue
            if host in listening:
                assert url.port == listening[host], f"{name} {variable}: port"
            assert depends_on.get(host, {}).get("condition") == "service_healthy", (
                f"{name} must wait for {host}"
            )
        assert depends_on["kafka"]["condition"] == "service_healthy"
    origins = json.loads(environment_of(services["archive"])["KANOL_TRUSTED_DOCUMENT_ORIGINS"])
    assert origins == [environment_of(services["actes-pes"])["KANOL_PUBLIC_URL"]]


def test_healthchecks_ask_readyz_of_the_services_and_livez_of_simulators(
    compose: dict[str, Any],
) -> None:
    for name in (*KANOL_SERVICES, *SIMULATORS):
        service = compose["services"][name]
        port = option_value(service["command"], "--port")
        probe = " ".join(service["healthcheck"]["test"])
        path = "/readyz" if name in KANOL_SERVICES else "/livez"
        assert f"http://127.0.0.1:{port}{path}" in probe, name
        published = [str(p) for p in service.get("ports", [])]
        assert published == [f"127.0.0.1:{port}:{port}"], name


def test_each_service_has_its_own_database_made_by_the_init_script(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    pairs = dict(
        pair.split(":", 1)
        for pair in interpolated(postgres["environment"]["KANOL_DATABASES"]).split()
    )
    mounts = [str(volume).split(":") for volume in postgres["volumes"]]
    scripts = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(scripts) == 1 and (ROOT / scripts[0][0]).is_file()
    databases = set()
    for name in KANOL_SERVICES:
        url = urlsplit(environment_of(compose["services"][name])["KANOL_DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg" and url.hostname == "postgres"
        database = url.path.lstrip("/")
        # The role is named after its database, with the password the script gives it.
        assert url.username == database and pairs[database] == url.password
        databases.add(database)
    assert len(databases) == len(KANOL_SERVICES)


def test_documents_are_kept_on_named_volumes(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name in ("actes-pes", "archive"):
        service = compose["services"][name]
        data_dir = environment_of(service)["KANOL_DATA_DIR"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts[data_dir] in named, f"{name}: {data_dir} is not on a named volume"


def test_seeding_runs_before_identity_with_archive_s_client(compose: dict[str, Any]) -> None:
    services = compose["services"]
    seeds = [n for n, s in python_services(compose).items() if "seed" in s["command"]]
    assert seeds, "identity's organisations and clients are seeded"
    chain = services["identity"]["depends_on"]
    assert any(chain.get(n, {}).get("condition") == "service_completed_successfully" for n in seeds)
    archive = environment_of(services["archive"])
    archive_seed = [
        s
        for n in seeds
        if option_value((s := services[n])["command"], "--scopes") == "documents:read"
    ]
    assert len(archive_seed) == 1
    command = [interpolated(part) for part in archive_seed[0]["command"]]
    assert option_value(command, "--client-id") == archive["KANOL_ARCHIVE_CLIENT_ID"]
    assert option_value(command, "--client-secret") == archive["KANOL_ARCHIVE_CLIENT_SECRET"]


@pytest.mark.parametrize("name", [*KANOL_SERVICES, *SIMULATORS])
def test_containers_are_hardened(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert service["build"]["dockerfile"] == "Dockerfile"


def _platform_seeds() -> list[dict[str, object]]:
    """What scripts/platform.sh seeds for `make up`: SIREN, scopes, services of each call."""
    text = (ROOT / "scripts" / "platform.sh").read_text(encoding="utf-8")
    defaults = dict(re.findall(r"(?m)^(KANOL_\w+)=(\S+)$", text))
    seeds = []
    for block in text.split("kanol_identity seed")[1:]:
        call = block.split("\n\n")[0].split("}")[0]
        siren = re.search(r"--siren \"?\$?\{?(\w+)", call)
        scopes = re.search(r"--scopes \"([^\"]*)\"", call)
        services = re.search(r"--services (\S+)", call)
        assert siren and scopes
        seeds.append(
            {
                "siren": defaults.get(siren.group(1), siren.group(1)),
                "scopes": set(scopes.group(1).split()),
                "services": services.group(1) if services else None,
            }
        )
    return seeds


def test_the_same_organisations_and_clients_as_make_up(compose: dict[str, Any]) -> None:
    platform = _platform_seeds()
    assert len(platform) >= 2
    seeded = []
    for service in python_services(compose).values():
        command = [interpolated(part) for part in service["command"]]
        if command[3:4] != ["seed"]:
            continue
        seeded.append(
            {
                "siren": option_value(command, "--siren"),
                "scopes": set((option_value(command, "--scopes") or "").split()),
                "services": option_value(command, "--services"),
            }
        )
    assert sorted(seeded, key=lambda seed: str(seed["siren"])) == sorted(
        platform, key=lambda seed: str(seed["siren"])
    )
