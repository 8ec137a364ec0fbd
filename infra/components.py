"""The stack's components: how each one is configured, started, health-checked and stopped.

Every component writes its log to .stack/logs/<name>.log and runs under supervisord (infra/supervisor.py), which
knows its PID and restarts, restarts it if it dies, and stops exactly what ``make up`` started.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import uuid
from dataclasses import dataclass
from typing import Callable

from infra import config, install, supervisor
from infra.connector import http_json
from infra.progress import StepFailed, say, wait_for

PG_BIN = pathlib.Path(os.environ.get("EVENTLY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def ensure_dir(key: str) -> pathlib.Path:
    d = config.paths()[key]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    # logs, conf (the JWT secret, credentials) and run are the stack owner's alone; data only lets others
    # traverse (PostgreSQL runs as the postgres user under it), and each component's own directory in it is
    # private (PostgreSQL's 0700 data dir, Redis' below).
    d.chmod(0o711 if key == "data" else 0o700)
    return d


def port_open(port: int, host: str = config.HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def port_holder(port: int) -> str:
    """Best-effort description of who listens on a port (for the refusal message)."""
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=3).stdout
        return out.strip() or "unknown process"
    except (OSError, subprocess.SubprocessError):
        return "unknown process"


def http_ok(url: str) -> bool:
    try:
        return http_json(url)[0] == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Component:
    name: str
    port_names: list[str]
    start_timeout: float = 60.0
    health: Callable[[], bool] = lambda: True

    @property
    def log(self) -> pathlib.Path:
        return ensure_dir("logs") / f"{self.name}.log"

    @property
    def ports(self) -> list[int]:
        return [config.port(p) for p in self.port_names]

    # supervisord runs every component (infra/supervisor.py): it knows whether one runs, its PID and its restarts.
    def pid(self) -> int | None:
        i = supervisor.info(self.name)
        return (i["pid"] or None) if i and i["statename"] in ("STARTING", "RUNNING") else None

    def running(self) -> bool:
        i = supervisor.info(self.name)
        return bool(i) and i["statename"] in supervisor.RUNNING_STATES

    def restarts(self) -> int:
        return supervisor.restarts(self.name)

    def workers(self) -> set[int]:
        """The worker processes our services' own supervisors run (aiohttp and uvicorn workers, via
        multiprocessing spawn); empty for a single-process component."""
        parent = self.pid()
        if parent is None:
            return set()
        out = subprocess.run(["pgrep", "-P", str(parent), "-f", "spawn_main"], capture_output=True, text=True)
        return {int(p) for p in out.stdout.split()}

    def healthy(self) -> bool:
        try:
            return self.running() and bool(self.health())
        except Exception:  # noqa: BLE001
            return False

    def check_ports_free(self) -> None:
        for p in self.ports:
            if port_open(p):
                raise StepFailed(
                    f"port {p} ({self.name}) is already in use by something this stack did not start: "
                    f"{port_holder(p)}\n  stop it, or pick another port with "
                    f"{next(v.env for v in config.PORTS.values() if v.value == p)}=<port>")

    def ensure(self) -> str:
        """Start if needed. Returns 'running' (left alone) or 'started'."""
        if self.running():
            if self.healthy():
                return "running"
            wait_for(f"{self.name} (already started, not yet healthy)", self.health,
                     timeout=self.start_timeout, alive=self.running, log=self.log)
            return "running"
        self.check_ports_free()
        self.prepare()
        self.launch()
        wait_for(self.name, self.health, timeout=self.start_timeout, alive=self.running, log=self.log)
        return "started"

    def prepare(self) -> None:
        """Write config files, initialise data directories."""

    def launch(self) -> None:
        raise NotImplementedError

    def stop(self) -> bool:
        """Stop it (supervisord stops its whole process group); False when it was not running."""
        return supervisor.stop(self.name)


@dataclass
class ProcessComponent(Component):
    """A long-running foreground process, run by supervisord in its own process group."""
    argv: Callable[[], list[str]] = lambda: []
    env: Callable[[], dict[str, str]] = dict
    cwd: pathlib.Path = config.ROOT
    setup: Callable[[], None] = lambda: None
    evently: bool = False  # one of our own services: it inherits the caller's EVENTLY_* overrides

    def prepare(self) -> None:
        self.setup()

    def launch(self) -> None:
        # supervisord runs it (infra/supervisor.py) and restarts it if it dies. Only our own services see EVENTLY_*
        # from the caller's environment (a JWT secret exported in the shell must not reach Kafka Connect or
        # Redis); every file a component creates is private (umask 077: the Redis AOF, the logs).
        inherited = {k: v for k, v in os.environ.items() if self.evently or not k.startswith("EVENTLY_")}
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.log, 0o600)
        with os.fdopen(fd, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
        supervisor.write_program(self.name, self.argv(), {**inherited, **self.env()}, self.cwd, self.log)
        supervisor.start(self.name)


# --------------------------------------------------------------------------- PostgreSQL

@dataclass
class Postgres(Component):
    """PostgreSQL 15 in its own cluster under .stack/data/postgres, run as the postgres user."""

    @functools.cached_property
    def root(self) -> pathlib.Path:
        """Where the cluster lives: .stack/data/postgres, unless the postgres user cannot reach
        .stack (a checkout under a private directory); then a directory in its own home."""
        inside = ensure_dir("data") / "postgres"
        if os.geteuid() != 0 or subprocess.run(as_postgres(["test", "-x", str(config.STACK)]),
                                                capture_output=True).returncode == 0:
            return inside
        digest = hashlib.sha1(str(config.STACK).encode()).hexdigest()[:10]
        return pathlib.Path(os.path.expanduser("~postgres")) / f"evently-{digest}"

    @property
    def datadir(self) -> pathlib.Path:
        return self.root / "pgdata"

    @property
    def sockdir(self) -> pathlib.Path:
        return self.root / "run"

    @property
    def log(self) -> pathlib.Path:
        ensure_dir("logs")
        return self.root / "postgres.log"

    def _chown(self, path: pathlib.Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def prepare(self) -> None:
        for d in (self.root, self.sockdir):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._chown(self.datadir)
        self.datadir.chmod(0o700)
        say("==> initdb: new PostgreSQL cluster in " + str(self.datadir))
        pwfile = self.root / "pg.pw"
        pwfile.write_text("postgres\n")
        self._chown(pwfile)
        subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                    "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                                    "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL)
        pwfile.unlink()
        conf = self.datadir / "postgresql.auto.conf"
        # Logical decoding for Debezium (pgoutput); a cap on WAL a stuck slot may retain.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "max_slot_wal_keep_size": "'4GB'",
            "max_connections": "400",
            "shared_buffers": "'1GB'",
            "work_mem": "'8MB'",
            "wal_writer_delay": "'10ms'",
            "logging_collector": "off",
        }
        with open(conf, "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self._chown(conf)

    def launch(self) -> None:
        """Under supervisord (restarted if it dies), as the postgres user, in the foreground; SIGINT is
        PostgreSQL's fast shutdown."""
        supervisor.write_program(self.name, [str(PG_BIN / "postgres"), "-D", str(self.datadir), "-p",
                                             str(self.ports[0]), "-k", str(self.sockdir)],
                                 {"PGTZ": "UTC"}, self.root, self.log,
                                 user="postgres" if os.geteuid() == 0 else None, stopsignal="INT", stopwaitsecs=60)
        supervisor.start(self.name)

    def psql(self, sql: str, db: str = "postgres") -> str:
        psql = str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else "psql"
        return subprocess.run(as_postgres([psql,
                                           "-h", str(self.sockdir), "-p", str(self.ports[0]), "-U", "postgres",
                                           "-d", db, "-Atqc", sql]),
                              check=True, capture_output=True, text=True).stdout

    def bootstrap_roles(self) -> None:
        """Create the application role/database and FerretDB's database (idempotent)."""
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{config.PG_USER}'").strip():
            self.psql(f"CREATE ROLE {config.PG_USER} LOGIN REPLICATION PASSWORD '{config.PG_PASSWORD}'")
        for db in (config.PG_DB, config.FERRET_DB):
            if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip():
                self.psql(f"CREATE DATABASE {db} OWNER {config.PG_USER}")

    def health_check(self) -> bool:
        return subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", config.HOST, "-p", str(self.ports[0])]).returncode == 0


# --------------------------------------------------------------------------- Kafka + Connect

def java_argv(main: str, *args: str, heap: str, libs: pathlib.Path, name: str) -> list[str]:
    java = shutil.which("java") or "java"
    return [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={config.ROOT / 'infra' / 'conf' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={ensure_dir('logs')}", f"-Devently.component={name}",
            "-cp", f"{libs}/*", main, *args]


def kafka_properties() -> pathlib.Path:
    data = config.STACK / "data" / "kafka"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{config.HOST}:{config.port('kafka-controller')}",
        "listeners": f"PLAINTEXT://{config.HOST}:{config.port('kafka')},CONTROLLER://{config.HOST}:{config.port('kafka-controller')}",
        "advertised.listeners": f"PLAINTEXT://{config.HOST}:{config.port('kafka')}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "3",
        # Topics are created explicitly (projectors/topics.py and the connector's topic.creation.*).
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "-1",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    path = ensure_dir("conf") / "kafka.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def kafka_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid(), an id that starts with '-' is drawn again: the
    storage tool's argument parser would take it for an option (1 run in 64 failed so)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_setup() -> None:
    props = kafka_properties()
    data = config.STACK / "data" / "kafka"
    if (data / "meta.properties").exists():
        return
    cluster_id = kafka_cluster_id()
    say("==> kafka: formatting KRaft storage (first start)")
    subprocess.run(java_argv("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                             heap="256m", libs=install.KAFKA_LIBS, name="kafka-storage"),
                   check=True, stdout=subprocess.DEVNULL)


def kafka_health() -> bool:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": f"{config.HOST}:{config.port('kafka')}",
                      "log_level": 0}).list_topics(timeout=2)
    return bool(md.brokers)


def connect_properties() -> pathlib.Path:
    props = {
        "bootstrap.servers": f"{config.HOST}:{config.port('kafka')}",
        "group.id": "evently-connect",
        "listeners": f"http://{config.HOST}:{config.port('connect')}",
        "rest.advertised.host.name": config.HOST,
        "rest.advertised.port": str(config.port("connect")),
        "plugin.path": str(install.CONNECT_PLUGINS),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "config.storage.topic": "evently-connect-configs",
        "offset.storage.topic": "evently-connect-offsets",
        "status.storage.topic": "evently-connect-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        # Commit source offsets often: fewer redelivered events after a crash.
        "offset.flush.interval.ms": "1000",
        # One worker: a restarted worker must not wait out its dead predecessor's session (10 s by default)
        # nor a delayed rebalance (5 min for cooperative rebalancing) before it runs the connector again.
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "2000",
        "scheduled.rebalance.max.delay.ms": "0",
        # The producer settings the connector needs are the worker's own (Evently runs one connector), so no
        # connector may override client settings (a connector config could otherwise point its clients anywhere).
        "connector.client.config.override.policy": "None",
        "producer.linger.ms": "1",
        "producer.acks": "all",
        "producer.enable.idempotence": "true",
        # Connector configs read credentials from the environment: ${env:EVENTLY_CDC_PG_HOST}.
        "config.providers": "env",
        "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
    }
    path = ensure_dir("conf") / "connect-distributed.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def connect_health() -> bool:
    status, plugins = http_json(f"http://{config.HOST}:{config.port('connect')}/connector-plugins")
    return status == 200 and any(p["class"].endswith("PostgresConnector") for p in plugins)


# --------------------------------------------------------------------------- FerretDB

def ferretdb_health() -> bool:
    from pymongo import MongoClient

    with MongoClient(config.HOST, config.port("ferretdb"), serverSelectionTimeoutMS=1000) as c:
        return c.admin.command("ping")["ok"] == 1


def python_argv(module: str) -> list[str]:
    return [sys.executable, "-m", module]
