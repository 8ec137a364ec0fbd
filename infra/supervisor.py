"""supervisord runs every long-running component of the local stack and restarts it when it dies.

The stack manager (infra/stack.py) decides what runs, in which order, and when a component is healthy. supervisord
(the maintained ``supervisor`` package, pinned in pyproject.toml) owns the processes:
- it starts each one in its own process group, with umask 077;
- it restarts one that exits without being asked to, whatever its exit status (PostgreSQL's immediate shutdown
  exits 0, and a server that stops by itself is still down). If the restart dies again within ``startsecs``,
  it backs off 1 s, 2 s, 3 s... between attempts;
- it stops the whole group on ``make down``.

Files:
- ``.stack/conf/supervisord.conf``, with one program file per component in ``.stack/conf/supervisor.d/``;
- the control socket ``.stack/run/supervisor.sock`` (mode 0700);
- its own log, ``.stack/logs/supervisord.log``, where "exited: <name> (...)" lines count restarts (a stop that
  was asked for is "stopped: <name>").

supervisord itself starts with the caller's environment minus ``EVENTLY_*``. Each program gets its environment
written out in its program file, so only our own services see the caller's ``EVENTLY_*`` overrides.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from infra import config

RUNNING_STATES = {"STARTING", "RUNNING", "BACKOFF"}  # alive, or about to be again


def _paths() -> dict[str, Any]:
    p = config.paths()
    return {"conf": p["conf"] / "supervisord.conf", "programs": p["conf"] / "supervisor.d",
            "sock": p["run"] / "supervisor.sock", "pid": p["run"] / "supervisord.pid",
            "log": p["logs"] / "supervisord.log"}


def _rpc():
    return xmlrpc.client.ServerProxy("http://127.0.0.1",
                                     transport=SupervisorTransport(None, None, f"unix://{_paths()['sock']}"))


def daemon_running() -> bool:
    if not _paths()["sock"].exists():
        return False
    try:
        return _rpc().supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def _write_main_conf() -> None:
    p = _paths()
    for d in (p["programs"], p["sock"].parent, p["log"].parent):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    p["conf"].write_text(f"""[unix_http_server]
file={p['sock']}
chmod=0700

[supervisord]
logfile={p['log']}
logfile_maxbytes=10MB
logfile_backups=2
pidfile={p['pid']}
umask=077
nodaemon=false

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{p['sock']}

[include]
files={p['programs']}/*.conf
""")


def ensure_daemon() -> None:
    if daemon_running():
        return
    _write_main_conf()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLY_")}
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(_paths()["conf"])], env=env,
                   check=True, cwd=config.ROOT)
    deadline = time.monotonic() + 15
    while not daemon_running():
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not start; see {_paths()['log']}")
        time.sleep(0.1)


def _quote(value: str) -> str:
    return value.replace("%", "%%")


def write_program(name: str, argv: list[str], env: dict[str, str], cwd: os.PathLike, log: os.PathLike, *,
                  user: str | None = None, stopsignal: str = "TERM", stopwaitsecs: int = 20) -> None:
    environment = ",".join(f'{k}="{_quote(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in env.items())
    lines = [
        f"[program:{name}]",
        f"command={_quote(shlex.join(argv))}",
        f"directory={cwd}",
        f"environment={environment}",
        "autostart=false",
        "autorestart=true",
        "startsecs=2",
        "startretries=10",
        f"stopsignal={stopsignal}",
        f"stopwaitsecs={stopwaitsecs}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_quote(str(log))}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
    ]
    if user:
        lines.append(f"user={user}")
    _paths()["programs"].mkdir(parents=True, exist_ok=True, mode=0o700)
    (_paths()["programs"] / f"{name}.conf").write_text("\n".join(lines) + "\n")


def start(name: str) -> None:
    """(Re)load ``name``'s program file into supervisord and start it."""
    ensure_daemon()
    rpc = _rpc()
    added, changed, removed = rpc.supervisor.reloadConfig()[0]
    for group in removed:
        rpc.supervisor.stopProcessGroup(group)
        rpc.supervisor.removeProcessGroup(group)
    for group in changed:
        rpc.supervisor.stopProcessGroup(group)
        rpc.supervisor.removeProcessGroup(group)
        rpc.supervisor.addProcessGroup(group)
    for group in added:
        rpc.supervisor.addProcessGroup(group)
    try:
        rpc.supervisor.startProcess(name, False)
    except xmlrpc.client.Fault as f:
        if "ALREADY_STARTED" not in f.faultString:
            raise


def info(name: str) -> dict[str, Any] | None:
    if not daemon_running():
        return None
    try:
        return _rpc().supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault:
        return None


def stop(name: str) -> bool:
    """Stop ``name`` (its whole process group); False when it was not running."""
    i = info(name)
    if i is None or i["statename"] not in RUNNING_STATES:
        return False
    try:
        _rpc().supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as f:
        if "NOT_RUNNING" not in f.faultString:
            raise
    return True


def shutdown() -> None:
    if not daemon_running():
        return
    _rpc().supervisor.shutdown()
    deadline = time.monotonic() + 30
    while _paths()["sock"].exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def restarts(name: str) -> int:
    """How often supervisord restarted ``name`` since it started (its log's "exited: <name> (...)")."""
    try:
        text = _paths()["log"].read_text(errors="replace")
    except FileNotFoundError:
        return 0
    text = text.rsplit("supervisord started with pid", 1)[-1]
    return len(re.findall(rf"exited: {re.escape(name)} \(", text))
