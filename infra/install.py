"""Install what the stack needs and the machine lacks, each from its own registry.

- Redis: Debian's apt.
- Kafka broker + Kafka Connect, and the Debezium PostgreSQL connector: jars resolved by mvn from
  Maven Central (infra/maven/*.xml) into .stack/cache.
- FerretDB and Mailpit (the local SMTP server and inbox): source from the Go module proxy, built with the local Go
  toolchain into .stack/cache/bin.
- The browser test's tools (``python -m infra.install browser``, run by ``make test``): Chromium from
  Debian's apt, and playwright-core (pinned in tests/e2e/browser/package-lock.json) from the npm registry.

Each step is skipped when its output is already there, so a warm ``make up`` installs nothing.
A failed step says which registry route failed and shows the tail of its log.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra import config
from infra.progress import StepFailed, run_step, say

CACHE = config.STACK / "cache"
KAFKA_LIBS = CACHE / f"kafka-{config.KAFKA_VERSION}" / "libs"
CONNECT_PLUGINS = CACHE / f"connect-plugins-{config.DEBEZIUM_VERSION}"
FERRETDB_BIN = CACHE / "bin" / f"ferretdb-{config.FERRETDB_VERSION}"
STRIPE_MOCK_BIN = CACHE / "bin" / f"stripe-mock-{config.STRIPE_MOCK_VERSION}"
MAILPIT_BIN = CACHE / "bin" / f"mailpit-{config.MAILPIT_VERSION}"
MAVEN = config.ROOT / "infra" / "maven"
CHROMIUM = "/usr/bin/chromium"
BROWSER_TEST_DIR = config.ROOT / "tests" / "e2e" / "browser"


def ensure_all() -> None:
    config.STACK.mkdir(parents=True, exist_ok=True)
    (CACHE / "logs").mkdir(parents=True, exist_ok=True)
    ensure_redis()
    ensure_kafka()
    ensure_debezium()
    ensure_ferretdb()
    ensure_mailpit()


def _need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StepFailed(f"'{tool}' is not on PATH: {hint}")
    return path


def ensure_redis() -> None:
    if shutil.which("redis-server"):
        return
    if os.geteuid() != 0:
        raise StepFailed("redis-server is missing and installing it needs root: run `sudo apt-get install redis-server`")
    log = CACHE / "logs" / "apt-redis.log"
    run_step("apt: updating package lists", ["apt-get", "update"], log,
             route="Debian apt (apt-get update)")
    run_step("apt: installing redis-server", ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
             log, route="Debian apt (redis-server)", env={"DEBIAN_FRONTEND": "noninteractive"})


def _maven_copy(pom: str, out, what: str) -> None:
    marker = out / ".complete"
    if marker.exists():
        return
    _need("mvn", "install Maven (apt-get install maven)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log = CACHE / "logs" / f"mvn-{out.name}.log"
    run_step(
        f"mvn: resolving {what} from Maven Central into {out.relative_to(config.ROOT) if out.is_relative_to(config.ROOT) else out}",
        ["mvn", "-B", "-ntp", "-f", str(MAVEN / pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={out}", "-DincludeScope=runtime"],
        log, route=f"Maven Central ({what})",
    )
    marker.write_text("ok\n")


def ensure_kafka() -> None:
    _maven_copy("kafka-pom.xml", KAFKA_LIBS, f"Apache Kafka {config.KAFKA_VERSION} broker + Connect")


def ensure_debezium() -> None:
    # Connect's plugin.path holds one directory per plugin; the connector's jars live in it.
    _maven_copy("debezium-pom.xml", CONNECT_PLUGINS / "debezium-connector-postgres",
                f"Debezium {config.DEBEZIUM_VERSION} PostgreSQL connector")


def _go_module_source(name: str, module: str, version: str, log: Path) -> Path:
    """A writable copy of ``module@version`` from the Go module proxy. `go install module@version` refuses here:
    it also asks the proxy for the module's version list (for deprecation notices), which the proxy this machine
    reaches does not serve. So: download the exact version, then build it in a copy."""
    go = _need("go", "install Go >= 1.22")
    out = run_step(f"go: downloading {name} {version} from the Go module proxy",
                   [go, "mod", "download", "-json", f"{module}@{version}"], log, route=f"Go module proxy ({name})",
                   env=GO_ENV)
    info = json.loads(out[out.index("{"):out.rindex("}") + 1])
    src = CACHE / "src" / f"{name.lower()}-{version}"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(info["Dir"], src)
    for d in [src, *src.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    return src


GO_ENV = {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}


def ensure_ferretdb() -> None:
    if FERRETDB_BIN.exists():
        return
    log = CACHE / "logs" / "go-ferretdb.log"
    src = _go_module_source("FerretDB", "github.com/FerretDB/FerretDB", config.FERRETDB_VERSION, log)
    # FerretDB's release builds write this file from `git describe`; the module zip has it empty.
    (src / "build" / "version" / "version.txt").write_text(config.FERRETDB_VERSION + "\n")
    FERRETDB_BIN.parent.mkdir(parents=True, exist_ok=True)
    run_step("go: building FerretDB (first run only, ~1-2 min)",
             [_need("go", "install Go >= 1.22"), "build", "-trimpath", "-o", str(FERRETDB_BIN), "./cmd/ferretdb"],
             log, route="Go module proxy (FerretDB dependencies) + local go build", env=GO_ENV, cwd=src)


def ensure_mailpit() -> None:
    """Mailpit's server from the Go module proxy. The module carries no built web UI (its JavaScript is built with
    npm in Mailpit's own release process), so the inbox page at :8025 is bare; its REST API, which the tests and
    the README use (``/api/v1/messages``), and SMTP are whole."""
    if MAILPIT_BIN.exists():
        return
    log = CACHE / "logs" / "go-mailpit.log"
    src = _go_module_source("Mailpit", "github.com/axllent/mailpit", config.MAILPIT_VERSION, log)
    MAILPIT_BIN.parent.mkdir(parents=True, exist_ok=True)
    run_step("go: building Mailpit (first run only, ~40 s)",
             [_need("go", "install Go >= 1.22"), "build", "-trimpath", "-o", str(MAILPIT_BIN), "."], log,
             route="Go module proxy (Mailpit dependencies) + local go build", env=GO_ENV, cwd=src)


def ensure_stripe_mock() -> Path:
    """Stripe's mock API server, for the Stripe adapter's tests (not part of `make up`: devpay is the local
    provider). Built from the Go module proxy like FerretDB."""
    if STRIPE_MOCK_BIN.exists():
        return STRIPE_MOCK_BIN
    log = CACHE / "logs" / "go-stripe-mock.log"
    src = _go_module_source("stripe-mock", "github.com/stripe/stripe-mock", config.STRIPE_MOCK_VERSION, log)
    STRIPE_MOCK_BIN.parent.mkdir(parents=True, exist_ok=True)
    run_step("go: building stripe-mock (first test run only, ~30 s)",
             [_need("go", "install Go >= 1.22"), "build", "-trimpath", "-o", str(STRIPE_MOCK_BIN), "."], log,
             route="Go module proxy (stripe-mock dependencies) + local go build", env=GO_ENV, cwd=src)
    return STRIPE_MOCK_BIN


def ensure_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    if os.geteuid() != 0:
        raise StepFailed("chromium is missing and installing it needs root: run `sudo apt-get install chromium`")
    log = CACHE / "logs" / "apt-chromium.log"
    run_step("apt: updating package lists", ["apt-get", "update"], log,
             route="Debian apt (apt-get update)")
    run_step("apt: installing chromium (browser test)",
             ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-dejavu-core"],
             log, route="Debian apt (chromium)", env={"DEBIAN_FRONTEND": "noninteractive"})


def ensure_playwright() -> None:
    """``npm ci`` of tests/e2e/browser (playwright-core only; it drives Debian's Chromium, downloads no browser)."""
    pinned = json.loads((BROWSER_TEST_DIR / "package.json").read_text())["dependencies"]["playwright-core"]
    installed = BROWSER_TEST_DIR / "node_modules" / "playwright-core" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == pinned:
        return
    node = _need("node", "install Node.js >= 20 with npm")
    major = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        raise StepFailed(f"playwright-core {pinned} needs Node.js >= 20; {node} is v{major}")
    npm = _need("npm", "install npm (it comes with Node.js)")
    run_step(f"npm: installing playwright-core {pinned} into {BROWSER_TEST_DIR.relative_to(config.ROOT)}",
             [npm, "ci", "--no-audit", "--no-fund"], CACHE / "logs" / "npm-browser.log",
             route="npm registry (playwright-core)", cwd=BROWSER_TEST_DIR,
             env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})


def ensure_browser() -> None:
    (CACHE / "logs").mkdir(parents=True, exist_ok=True)
    ensure_chromium()
    ensure_playwright()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.install", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["stack", "browser"],
                   help="stack: what `make up` needs; browser: what the browser e2e test needs")
    args = p.parse_args(argv)
    try:
        {"stack": ensure_all, "browser": ensure_browser}[args.what]()
    except StepFailed as e:
        say(f"\nERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
