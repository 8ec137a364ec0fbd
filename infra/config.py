"""Where the local stack lives and which loopback ports it uses.

Every port can be overridden with the environment variable named in PORTS; the services are
handed URLs built from these ports (see ``service_env``), so nothing else needs to change.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
STACK = pathlib.Path(os.environ.get("EVENTLY_STACK_DIR", ROOT / ".stack")).resolve()

# Versions of what the stack downloads (docker-compose.yml pins the matching images).
KAFKA_VERSION = "4.3.1"
DEBEZIUM_VERSION = "3.7.0.Final"
FERRETDB_VERSION = "v1.24.0"


@dataclass(frozen=True)
class Port:
    env: str
    default: int
    what: str

    @property
    def value(self) -> int:
        return int(os.environ.get(self.env, self.default))


PORTS = {
    "postgres": Port("EVENTLY_PG_PORT", 15432, "PostgreSQL 15 (command DB + FerretDB backend)"),
    "redis": Port("EVENTLY_REDIS_PORT", 16379, "Redis (seat locks, live seat feed)"),
    "kafka": Port("EVENTLY_KAFKA_PORT", 19092, "Kafka broker (PLAINTEXT)"),
    "kafka-controller": Port("EVENTLY_KAFKA_CONTROLLER_PORT", 19093, "Kafka KRaft controller"),
    "connect": Port("EVENTLY_CONNECT_PORT", 18083, "Kafka Connect REST (Debezium)"),
    "ferretdb": Port("EVENTLY_MONGO_PORT", 27027, "FerretDB (MongoDB wire protocol)"),
    "ferretdb-debug": Port("EVENTLY_FERRETDB_DEBUG_PORT", 18088, "FerretDB metrics/debug HTTP"),
    "command": Port("EVENTLY_COMMAND_PORT", 8001, "command service HTTP API"),
    "query": Port("EVENTLY_QUERY_PORT", 8002, "query service HTTP API + SSE"),
    "projector": Port("EVENTLY_PROJECTOR_METRICS_PORT", 8003, "projector worker /metrics"),
}

HOST = "127.0.0.1"
PG_USER = "evently"
PG_PASSWORD = "evently"
PG_DB = "evently"
FERRET_DB = "ferretdb"


def port(name: str) -> int:
    return PORTS[name].value


def paths() -> dict[str, pathlib.Path]:
    return {
        "logs": STACK / "logs",
        "run": STACK / "run",
        "conf": STACK / "conf",
        "data": STACK / "data",
        "cache": STACK / "cache",
    }


def service_env() -> dict[str, str]:
    """Environment handed to Evently's own processes, to Kafka Connect and to the tests."""
    jwt = os.environ.get("EVENTLY_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
    return {
        "EVENTLY_DATABASE_URL": f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{port('postgres')}/{PG_DB}",
        "EVENTLY_REDIS_URL": f"redis://{HOST}:{port('redis')}/0",
        "EVENTLY_KAFKA_BOOTSTRAP": f"{HOST}:{port('kafka')}",
        "EVENTLY_MONGO_URL": f"mongodb://{HOST}:{port('ferretdb')}/",
        "EVENTLY_CONNECT_URL": f"http://{HOST}:{port('connect')}",
        "EVENTLY_JWT_SECRET": jwt,
        "EVENTLY_COMMAND_HOST": HOST,
        "EVENTLY_COMMAND_PORT": str(port("command")),
        "EVENTLY_QUERY_HOST": HOST,
        "EVENTLY_QUERY_PORT": str(port("query")),
        "EVENTLY_PROJECTOR_METRICS_PORT": str(port("projector")),
        # Read by the Debezium connector config through Kafka's EnvVarConfigProvider.
        "EVENTLY_CDC_PG_HOST": HOST,
        "EVENTLY_CDC_PG_PORT": str(port("postgres")),
        "EVENTLY_CDC_PG_USER": PG_USER,
        "EVENTLY_CDC_PG_PASSWORD": PG_PASSWORD,
        "EVENTLY_CDC_PG_DB": PG_DB,
    }
