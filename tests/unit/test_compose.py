"""docker-compose.yml cannot run on this machine (no Docker engine), so this test keeps it honest:
it must agree with the connector config, the topics, the services' settings and the local stack."""
from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from common.settings import Settings
from infra import config
from infra.connector import spec as connector_spec

COMPOSE = yaml.safe_load((config.ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
EVENTLY_SERVICES = ["migrate", "command-service", "projector", "query-service"]


def env_of(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def test_images_are_the_documented_ones():
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["redis"]["image"] == "redis:7"
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{config.KAFKA_VERSION}"
    assert SERVICES["connect"]["image"] == f"quay.io/debezium/connect:{config.DEBEZIUM_VERSION}"
    assert SERVICES["mongo"]["image"] == "mongo:7"
    for name in EVENTLY_SERVICES + ["topics", "register-connector"]:
        assert SERVICES[name]["image"] == "evently-app", name
        assert SERVICES[name]["build"] == ".", name


def test_postgres_has_logical_wal():
    command = " ".join(SERVICES["postgres"]["command"])
    assert "wal_level=logical" in command
    assert "max_slot_wal_keep_size=" in command


def test_kafka_is_single_node_kraft_with_explicit_topics():
    env = env_of("kafka")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "projectors.topics" in " ".join(SERVICES["topics"]["command"])


def test_every_connector_env_placeholder_is_provided_to_connect():
    placeholders = set()
    for value in connector_spec()["config"].values():
        placeholders |= set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", value))
    assert placeholders, "connector config should take its credentials from the environment"
    env = env_of("connect")
    assert placeholders <= env.keys(), placeholders - env.keys()
    assert env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith("EnvVarConfigProvider")
    # ... and the local stack hands Connect the same variables.
    assert placeholders <= config.service_env().keys()


def test_connect_points_at_the_compose_postgres():
    env, pg = env_of("connect"), env_of("postgres")
    assert env["EVENTLY_CDC_PG_HOST"] == "postgres"
    assert env["EVENTLY_CDC_PG_USER"] == pg["POSTGRES_USER"]
    assert env["EVENTLY_CDC_PG_PASSWORD"] == pg["POSTGRES_PASSWORD"]
    assert env["EVENTLY_CDC_PG_DB"] == pg["POSTGRES_DB"]


def test_connector_registration_job_uses_the_same_put_as_the_local_stack():
    command = SERVICES["register-connector"]["command"]
    assert command[:3] == ["python", "-m", "infra.connector"]
    assert "http://connect:8083" in command


@pytest.mark.parametrize("name", EVENTLY_SERVICES)
def test_evently_service_env_vars_are_real_settings(name):
    fields = set(Settings.model_fields)
    for key in env_of(name):
        assert key.startswith("EVENTLY_"), key
        assert key.removeprefix("EVENTLY_").lower() in fields, f"{name}: {key} is not a setting"


@pytest.mark.parametrize("name", EVENTLY_SERVICES)
def test_evently_service_entrypoints_exist(name):
    command = SERVICES[name]["command"]
    assert command[:2] == ["python", "-m"]
    assert importlib.util.find_spec(command[2]) is not None, command[2]


def test_evently_services_reach_the_compose_backends():
    env = env_of("command-service")
    pg = env_of("postgres")
    assert env["EVENTLY_DATABASE_URL"] == (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}")
    assert env["EVENTLY_REDIS_URL"].startswith("redis://redis:6379")
    assert env["EVENTLY_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in env_of("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    assert env["EVENTLY_MONGO_URL"].startswith("mongodb://mongo:27017")


def test_published_ports_are_loopback_and_match_the_local_stack():
    expected = {"postgres": "postgres", "redis": "redis", "kafka": "kafka", "connect": "connect",
                "mongo": "ferretdb", "command-service": "command", "query-service": "query",
                "projector": "projector"}
    for service, port_name in expected.items():
        ports = SERVICES[service]["ports"]
        assert all(p.startswith("127.0.0.1:") for p in ports), service
        assert f"127.0.0.1:{config.PORTS[port_name].default}:" in ports[0], service


def test_every_long_running_service_restarts_and_has_a_healthcheck():
    one_shot = {"topics", "register-connector", "migrate"}
    for name, svc in SERVICES.items():
        if name in one_shot:
            assert svc.get("restart") == "no", name
        else:
            assert svc.get("restart") == "unless-stopped" and "healthcheck" in svc, name
