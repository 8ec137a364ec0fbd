"""Evently's local stack manager: ``python -m infra.stack up|down|status|logs|reset|env|exec``.

``make up`` / ``make down`` / ``make status`` / ``make logs`` / ``make reset`` are thin wrappers.
The stack runs the real components on loopback, without Docker:

    PostgreSQL 15 -> Debezium (Kafka Connect, distributed) -> Kafka 4 (KRaft) -> projectors -> FerretDB
    command service (aiohttp) and query service (starlette) on top.

See infra/README.md for ports, logs and fallbacks.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from infra import components as c
from infra import config, connector, install, supervisor
from infra.progress import StepFailed, say, wait_for


def _service_env() -> dict[str, str]:
    return {**config.service_env(), "PYTHONUNBUFFERED": "1"}


POSTGRES = c.Postgres("postgres", ["postgres"], start_timeout=60)
POSTGRES.health = POSTGRES.health_check

REDIS = c.ProcessComponent(
    "redis", ["redis"], start_timeout=30,
    argv=lambda: ["redis-server", "--bind", config.HOST, "--port", str(config.port("redis")),
                  "--dir", str(c.ensure_dir("data") / "redis"), "--appendonly", "yes", "--appendfsync", "everysec",
                  "--save", "", "--protected-mode", "yes", "--daemonize", "no", "--maxclients", "20000"],
    setup=lambda: (c.ensure_dir("data") / "redis").mkdir(exist_ok=True, mode=0o700) or
    (config.STACK / "data" / "redis").chmod(0o700),  # the AOF holds every seat lock and the revocation list
)
REDIS.health = lambda: subprocess.run(["redis-cli", "-h", config.HOST, "-p", str(config.port("redis")), "ping"],
                                      capture_output=True, text=True, timeout=3).stdout.strip() == "PONG"

KAFKA = c.ProcessComponent(
    "kafka", ["kafka", "kafka-controller"], start_timeout=90, health=c.kafka_health, setup=c.kafka_setup,
    argv=lambda: c.java_argv("kafka.Kafka", str(config.STACK / "conf" / "kafka.properties"),
                             heap="1g", libs=install.KAFKA_LIBS, name="kafka"),
)

CONNECT = c.ProcessComponent(
    "connect", ["connect"], start_timeout=120, health=c.connect_health,
    setup=lambda: c.connect_properties(),
    argv=lambda: c.java_argv("org.apache.kafka.connect.cli.ConnectDistributed",
                             str(config.STACK / "conf" / "connect-distributed.properties"),
                             heap="768m", libs=install.KAFKA_LIBS, name="connect"),
    # Connect reads only the CDC connection settings (EnvVarConfigProvider): it never gets the JWT secret.
    env=lambda: {k: v for k, v in _service_env().items() if k.startswith("EVENTLY_CDC_")},
)

FERRETDB = c.ProcessComponent(
    "ferretdb", ["ferretdb", "ferretdb-debug"], start_timeout=60, health=c.ferretdb_health,
    argv=lambda: [str(install.FERRETDB_BIN), "--handler=postgresql",
                  f"--postgresql-url=postgres://{config.PG_USER}:{config.PG_PASSWORD}@{config.HOST}:"
                  f"{config.port('postgres')}/{config.FERRET_DB}",
                  f"--listen-addr={config.HOST}:{config.port('ferretdb')}",
                  f"--debug-addr={config.HOST}:{config.port('ferretdb-debug')}",
                  f"--state-dir={config.STACK / 'data' / 'ferretdb'}",
                  "--telemetry=disable", "--log-level=warn"],
    setup=lambda: (config.STACK / "data" / "ferretdb").mkdir(parents=True, exist_ok=True),
)


MAILPIT = c.ProcessComponent(
    "mailpit", ["smtp", "mailpit"], start_timeout=30,
    health=lambda: c.http_ok(f"http://{config.HOST}:{config.port('mailpit')}/readyz"),
    argv=lambda: [str(install.MAILPIT_BIN), "--smtp", f"{config.HOST}:{config.port('smtp')}",
                  "--listen", f"{config.HOST}:{config.port('mailpit')}",
                  "--database", str(config.STACK / "data" / "mailpit" / "mailpit.db"),
                  "--max", "0", "--disable-version-check", "--quiet"],
    setup=lambda: (config.STACK / "data" / "mailpit").mkdir(parents=True, exist_ok=True),
)


def _evently(name: str, module: str, port_name: str) -> c.ProcessComponent:
    return c.ProcessComponent(
        name, [port_name], start_timeout=60, argv=lambda: c.python_argv(module), env=_service_env, evently=True,
        health=lambda: c.http_ok(f"http://{config.HOST}:{config.port(port_name)}/health"),
    )


COMMAND = _evently("command-service", "command_service.entrypoints.app", "command")
PROJECTOR = _evently("projector", "projectors.worker", "projector")
NOTIFIER = _evently("notifier", "projectors.notifier", "notifier")  # mail, inbox, notification stream
QUERY = _evently("query-service", "query_service.app", "query")
DEVPAY = _evently("devpay", "infra.devpay.app", "devpay")  # the payment provider: not Evently, but ours to run

# Start order; stop runs it backwards.
COMPONENTS = [POSTGRES, REDIS, KAFKA, FERRETDB, CONNECT, MAILPIT, DEVPAY, COMMAND, PROJECTOR, NOTIFIER, QUERY]


def _run_migrations() -> None:
    say("==> migrations: alembic upgrade head")
    subprocess.run([sys.executable, "-m", "command_service.migrate"], check=True, cwd=config.ROOT,
                   env={**os.environ, **_service_env()})


def _create_topics() -> None:
    from projectors.topics import ensure_topics

    created = ensure_topics(f"{config.HOST}:{config.port('kafka')}")
    if created:
        say(f"==> kafka: created topics {', '.join(created)}")


def up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    install.ensure_all()
    for comp in COMPONENTS:
        if comp is CONNECT:
            _create_topics()
        t0 = time.monotonic()
        outcome = comp.ensure()
        say(f"[{outcome:>7}] {comp.name:<16} port {','.join(map(str, comp.ports)):<12} "
            f"pid {comp.pid()}  ({time.monotonic() - t0:.1f}s)")
        if comp is POSTGRES:
            POSTGRES.bootstrap_roles()
            _run_migrations()  # the connector's filtered publication needs the outbox table
        if comp is CONNECT:
            url = config.service_env()["EVENTLY_CONNECT_URL"]
            say(f"==> debezium: connector {connector.spec()['name']} {connector.register(url)} (idempotent PUT)")
            wait_for("debezium connector RUNNING", lambda: connector.running(url), timeout=90, log=CONNECT.log)
    say(f"stack up in {time.monotonic() - started:.1f}s — `make status` lists components, logs in {config.paths()['logs']}")
    say(f"    seat map: http://{config.HOST}:{config.port('query')}/   mail inbox (Mailpit): "
        f"http://{config.HOST}:{config.port('mailpit')}/ (API /api/v1/messages)")
    return 0


def down(args: argparse.Namespace) -> int:
    for comp in reversed(COMPONENTS):
        if comp.stop():
            say(f"[stopped] {comp.name}")
    leftovers = [comp.name for comp in COMPONENTS if comp.running()]
    if leftovers:
        say(f"still running: {', '.join(leftovers)}")
        return 1
    supervisor.shutdown()
    say("stack down")
    return 0


def status(args: argparse.Namespace) -> int:
    say(f"{'component':<16} {'port':<12} {'pid':<8} {'health':<10} restarts")
    bad = 0
    for comp in COMPONENTS:
        pid = comp.pid() if comp.running() else None
        health = "healthy" if comp.healthy() else ("unhealthy" if pid else "stopped")
        bad += health != "healthy"
        say(f"{comp.name:<16} {','.join(map(str, comp.ports)):<12} {pid or '-':<8} {health:<10} {comp.restarts()}")
    conn = "-"
    if CONNECT.healthy():
        try:
            conn = "RUNNING" if connector.running(config.service_env()["EVENTLY_CONNECT_URL"]) else "not running"
        except Exception as e:  # noqa: BLE001
            conn = f"error: {str(e).splitlines()[0]}"
    say(f"{'debezium':<16} {'(connector)':<12} {'-':<8} {conn}")
    say(f"(supervisord restarts every component that dies; its log: {config.paths()['logs'] / 'supervisord.log'})")
    return 1 if bad or conn != "RUNNING" else 0


def logs(args: argparse.Namespace) -> int:
    by_name = {comp.name: comp for comp in COMPONENTS}
    unknown = [n for n in args.components if n not in by_name]
    if unknown:
        say(f"unknown component(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
        return 2
    files = [str(by_name[n].log) for n in (args.components or by_name) if by_name[n].log.exists()]
    if not files:
        say("no logs yet")
        return 1
    return subprocess.call(["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), *files])


def reset(args: argparse.Namespace) -> int:
    down(args)
    for key in ("data", "logs", "run", "conf"):
        shutil.rmtree(config.paths()[key], ignore_errors=True)
    shutil.rmtree(POSTGRES.root, ignore_errors=True)
    say("stack data wiped (downloads under .stack/cache kept); `make up` starts afresh")
    return 0


def restart(args: argparse.Namespace) -> int:
    """Stop and start the named components (the stack's own processes, e.g. after a code change)."""
    by_name = {comp.name: comp for comp in COMPONENTS}
    unknown = [n for n in args.components if n not in by_name]
    if unknown or not args.components:
        say(f"name one or more of: {', '.join(by_name)}")
        return 2
    for name in args.components:
        comp = by_name[name]
        comp.stop()
        say(f"[{comp.ensure():>7}] {comp.name:<16} pid {comp.pid()}")
    return 0


def env(args: argparse.Namespace) -> int:
    for k, v in config.service_env().items():
        print(f"export {k}={v}")
    return 0


def exec_(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return subprocess.call(cmd, env={**os.environ, **config.service_env()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing, start every component, wait until healthy").set_defaults(fn=up)
    sub.add_parser("down", help="stop everything the stack started").set_defaults(fn=down)
    sub.add_parser("status", help="each component with its port, PID and health").set_defaults(fn=status)
    lg = sub.add_parser("logs", help="tail component logs")
    lg.add_argument("components", nargs="*")
    lg.add_argument("-n", "--lines", type=int, default=40)
    lg.add_argument("-f", "--follow", action="store_true")
    lg.set_defaults(fn=logs)
    sub.add_parser("reset", help="stop and wipe all stack data").set_defaults(fn=reset)
    rs = sub.add_parser("restart", help="stop and start the named components")
    rs.add_argument("components", nargs="*")
    rs.set_defaults(fn=restart)
    sub.add_parser("env", help="print the EVENTLY_* environment of the stack").set_defaults(fn=env)
    ex = sub.add_parser("exec", help="run a command with the stack's environment")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(fn=exec_)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except StepFailed as e:
        say(f"\nERROR: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
