"""Where the local stack lives and which loopback ports it uses.

Every port can be overridden with the environment variable named in PORTS; the services are
handed URLs built from these ports (see ``service_env``), so nothing else needs to change.
"""
from __future__ import annotations

import os
import pathlib
import secrets
from dataclasses import dataclass

from common.settings import LOCAL_HOST, LOCAL_PG, LOCAL_PORTS

ROOT = pathlib.Path(__file__).resolve().parent.parent
STACK = pathlib.Path(os.environ.get("EVENTLY_STACK_DIR", ROOT / ".stack")).resolve()

# Versions of what the stack downloads (docker-compose.yml pins the matching images).
KAFKA_VERSION = "4.3.1"
DEBEZIUM_VERSION = "3.7.0.Final"
FERRETDB_VERSION = "v1.24.0"
MAILPIT_VERSION = "v1.33.1"  # the local SMTP server and inbox (issue 15), built from the Go module proxy
STRIPE_MOCK_VERSION = "v0.203.0"  # tests only: the Stripe adapter's requests (tests/integration/test_payment_adapters.py)


@dataclass(frozen=True)
class Port:
    env: str
    default: int
    what: str

    @property
    def value(self) -> int:
        return int(os.environ.get(self.env, self.default))


_WHAT = {
    "postgres": ("EVENTLY_PG_PORT", "PostgreSQL 15 (command DB + FerretDB backend)"),
    "redis": ("EVENTLY_REDIS_PORT", "Redis (seat locks, live seat feed)"),
    "kafka": ("EVENTLY_KAFKA_PORT", "Kafka broker (PLAINTEXT)"),
    "kafka-controller": ("EVENTLY_KAFKA_CONTROLLER_PORT", "Kafka KRaft controller"),
    "connect": ("EVENTLY_CONNECT_PORT", "Kafka Connect REST (Debezium)"),
    "ferretdb": ("EVENTLY_MONGO_PORT", "FerretDB (MongoDB wire protocol)"),
    "ferretdb-debug": ("EVENTLY_FERRETDB_DEBUG_PORT", "FerretDB metrics/debug HTTP"),
    "command": ("EVENTLY_COMMAND_PORT", "command service HTTP API"),
    "query": ("EVENTLY_QUERY_PORT", "query service HTTP API + SSE"),
    "projector": ("EVENTLY_PROJECTOR_METRICS_PORT", "projector worker /metrics"),
    "devpay": ("EVENTLY_DEVPAY_PORT", "devpay, the local payment provider (API, checkout page)"),
    "notifier": ("EVENTLY_NOTIFIER_METRICS_PORT", "the notifier's /health and /metrics"),
    "smtp": ("EVENTLY_SMTP_PORT", "Mailpit's SMTP server (the notifier sends here)"),
    "mailpit": ("EVENTLY_MAILPIT_PORT", "Mailpit's web inbox and API"),
}
# The default ports are common/settings.py's LOCAL_PORTS (one table for the stack and the services' defaults).
PORTS = {name: Port(env, LOCAL_PORTS[name], what) for name, (env, what) in _WHAT.items()}

HOST = LOCAL_HOST
PG_USER, PG_PASSWORD, PG_DB = LOCAL_PG
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


def jwt_secret() -> str:
    """The local stack's JWT secret: random, made once per stack (``.stack/conf/jwt-secret``, mode 0600), so no
    secret a token could be forged with is ever published."""
    return stack_secret("jwt-secret")


def stack_secret(name: str) -> str:
    """A random secret made once per stack (``.stack/conf/<name>``, mode 0600): the JWT secret, devpay's API key
    and webhook secret, the secret that encrypts ticket-signing keys at rest."""
    path = STACK / "conf" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:  # atomic: a concurrent caller either wins or reads the winner's secret, never a half-written file
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def service_env() -> dict[str, str]:
    """Environment handed to Evently's own processes and to the tests (Kafka Connect gets only the
    ``EVENTLY_CDC_*`` entries: infra/stack.py)."""
    return {
        "EVENTLY_ENV": "dev",
        "EVENTLY_DATABASE_URL": f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{port('postgres')}/{PG_DB}",
        "EVENTLY_REDIS_URL": f"redis://{HOST}:{port('redis')}/0",
        "EVENTLY_KAFKA_BOOTSTRAP": f"{HOST}:{port('kafka')}",
        "EVENTLY_MONGO_URL": f"mongodb://{HOST}:{port('ferretdb')}/",
        "EVENTLY_CONNECT_URL": f"http://{HOST}:{port('connect')}",
        "EVENTLY_JWT_SECRET": os.environ.get("EVENTLY_JWT_SECRET") or jwt_secret(),
        "EVENTLY_COMMAND_HOST": HOST,
        "EVENTLY_COMMAND_PORT": str(port("command")),
        "EVENTLY_QUERY_HOST": HOST,
        "EVENTLY_QUERY_PORT": str(port("query")),
        "EVENTLY_PROJECTOR_METRICS_PORT": str(port("projector")),
        "EVENTLY_NOTIFIER_METRICS_PORT": str(port("notifier")),
        "EVENTLY_DEVPAY_PORT": str(port("devpay")),
        "EVENTLY_DEVPAY_URL": f"http://{HOST}:{port('devpay')}",
        "EVENTLY_DEVPAY_API_KEY": os.environ.get("EVENTLY_DEVPAY_API_KEY") or stack_secret("devpay-api-key"),
        "EVENTLY_DEVPAY_WEBHOOK_SECRET": (os.environ.get("EVENTLY_DEVPAY_WEBHOOK_SECRET")
                                          or stack_secret("devpay-webhook-secret")),
        "EVENTLY_DEVPAY_WEBHOOK_URL": f"http://{HOST}:{port('command')}/api/v1/payments/devpay/webhook",
        "EVENTLY_DEVPAY_DB": str(STACK / "data" / "devpay" / "devpay.sqlite3"),
        "EVENTLY_SMTP_URL": f"smtp://{HOST}:{port('smtp')}",
        "EVENTLY_MAILPIT_URL": f"http://{HOST}:{port('mailpit')}",
        "EVENTLY_TICKET_KEY_SECRETS": (os.environ.get("EVENTLY_TICKET_KEY_SECRETS")
                                       or stack_secret("ticket-key-secret")),
        # The test and load suites run thousands of accounts and streams from 127.0.0.1: the local stack raises
        # the per-address limits (tests/e2e/test_rate_limits.py checks the production defaults on its own
        # processes). Export any of these to try other values.
        **{k: os.environ.get(k, v) for k, v in {
            "EVENTLY_RATE_PASSWORD_PER_ADDRESS": "100000/minute",
            "EVENTLY_RATE_PASSWORD_PER_ACCOUNT": "1000/minute",
            "EVENTLY_RATE_WRITES_PER_ACCOUNT": "100000/minute",
            "EVENTLY_SSE_MAX_PER_ADDRESS": "100000",
        }.items()},
        # Read by the Debezium connector config through Kafka's EnvVarConfigProvider.
        "EVENTLY_CDC_PG_HOST": HOST,
        "EVENTLY_CDC_PG_PORT": str(port("postgres")),
        "EVENTLY_CDC_PG_USER": PG_USER,
        "EVENTLY_CDC_PG_PASSWORD": PG_PASSWORD,
        "EVENTLY_CDC_PG_DB": PG_DB,
    }
