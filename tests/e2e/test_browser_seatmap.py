"""The seat-map page (GET / on the query service) in a real Chromium: a hold and a checkout made through the
command API show up on the page live, over SSE.

tests/e2e/browser/seatmap.mjs drives the browser (playwright-core + Debian's /usr/bin/chromium, both installed
by ``python -m infra.install browser``, which ``make test`` runs). It speaks JSON lines: it prints
``{"ready": true}`` once the page has loaded, then answers each ``wait`` command read from stdin.
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import subprocess
import threading
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e

BROWSER_DIR = pathlib.Path(__file__).parent / "browser"
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000  # liveness bound for one change to reach the page, not a speed assertion


class SeatMapPage:
    """The node driver as a subprocess; every read from it is bounded."""

    def __init__(self, url: str, out: pathlib.Path) -> None:
        self.stderr_path = out / "seatmap-node.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            ["node", str(BROWSER_DIR / "seatmap.mjs"), "--url", url, "--out", str(out), "--executable", CHROMIUM],
            cwd=BROWSER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # EOF

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if line is None:
                    self.fail({"error": f"the driver exited (code {self.proc.poll()})"})
                if line.lstrip().startswith("{"):
                    return json.loads(line)
        except queue.Empty:
            self.fail({"error": f"no answer from the driver within {timeout:.0f}s"})

    def fail(self, msg: dict[str, Any]) -> None:
        console = "\n    ".join(msg.get("console") or ["(nothing)"])
        stderr = self.stderr_path.read_text(errors="replace")[-3000:] if self.stderr_path.exists() else ""
        raise AssertionError(
            f"seat map page: {msg.get('error')}\n"
            f"  waited for {msg.get('selector')} = {msg.get('expected')!r}, it shows {msg.get('actual')!r}; "
            f"connection status: {msg.get('conn')!r}\n"
            f"  screenshot: {msg.get('screenshot')}\n  browser console:\n    {console}\n"
            f"  driver stderr:\n{stderr}")

    def ready(self) -> None:
        msg = self.reply(timeout=90)  # Chromium start-up + page load (the driver bounds each at 60 s / 30 s)
        if not msg.get("ready"):
            self.fail(msg)

    def wait_attr(self, selector: str, attr: str, value: str, timeout_ms: int = WAIT_MS) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": "wait", "selector": selector, "attr": attr, "value": value,
                                          "timeout_ms": timeout_ms}) + "\n")
        self.proc.stdin.flush()
        msg = self.reply(timeout=timeout_ms / 1000 + 30)  # the driver's own timeout, plus a screenshot
        if not msg.get("ok"):
            self.fail(msg)
        return msg

    def eval(self, js: str) -> Any:
        self.proc.stdin.write(json.dumps({"cmd": "eval", "js": js}) + "\n")
        self.proc.stdin.flush()
        msg = self.reply(timeout=30)
        if not msg.get("ok"):
            self.fail(msg)
        return msg["value"]

    def seat(self, seat_id: str, status: str) -> dict[str, Any]:
        return self.wait_attr(f'[data-seat="{seat_id}"]', "data-status", status)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()  # the driver closes Chromium on SIGTERM
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        finally:
            self._stderr.close()


@pytest.fixture(scope="session")
def browser_tools() -> None:
    missing = [what for what, ok in [
        (CHROMIUM, os.path.exists(CHROMIUM)),
        ("node", shutil.which("node") is not None),
        ("playwright-core", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
    ] if not ok]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `.venv/bin/python -m infra.install browser` "
                    "(`make test` does)", pytrace=False)


@pytest.fixture
def query_url(settings) -> str:
    return f"http://{settings.query_host}:{settings.query_port}"


def test_the_seat_map_page_shows_a_hold_and_a_checkout_live(browser_tools, api, organizer, buyer, query_url,
                                                            tmp_path):
    ev = api.event(organizer[1], rows=2, seats_per_row=8, ga=20)
    event_id = ev["id"]
    _, buyer_token = buyer

    # The page reads the read model: open it once the projector has the event's seat map.
    def projected() -> bool:
        r = httpx.get(f"{query_url}/api/v1/events/{event_id}/seats", timeout=10)
        return r.status_code == 200 and any(s["id"] == "A-1-1" and s["status"] == "available"
                                            for s in r.json()["seats"])

    eventually(projected, timeout=60, interval=0.2)

    page = SeatMapPage(f"{query_url}/?event={event_id}", tmp_path)
    try:
        page.ready()
        page.seat("A-1-1", "available")
        page.wait_attr('[data-seat="A-1-3"]', "data-price", "5000")  # seats carry their number and price
        page.wait_attr("#conn", "data-state", "live")

        hold = api.hold(buyer_token, event_id, ["A-1-1"])
        page.seat("A-1-1", "held")

        ga_hold = api.hold(buyer_token, event_id, section="GA", quantity=3)
        page.wait_attr('[data-section="GA"]', "data-available", "17")

        api.order(buyer_token, hold["id"])
        page.seat("A-1-1", "sold")
        page.seat("A-1-2", "available")  # its neighbour never changed

        api.release(buyer_token, ga_hold["id"])
        page.wait_attr('[data-section="GA"]', "data-available", "20")
    finally:
        page.close()


def test_the_page_says_an_unknown_event_is_not_found(browser_tools, query_url, tmp_path):
    """An unknown id is not a connection problem: the page says so instead of reconnecting forever."""
    page = SeatMapPage(f"{query_url}/?event=00000000-0000-4000-8000-000000000000", tmp_path)
    try:
        page.ready()
        page.wait_attr("#conn", "data-state", "not found")
    finally:
        page.close()


def test_a_browser_eventsource_reset_once_then_stays_live(browser_tools, api, organizer, buyer, query_url, tmp_path):
    """A position the server cannot resume from gets one ``event: reset`` that carries a fresh ``id``, and the
    stream goes on. A browser EventSource (which reconnects by itself with its last id) is therefore not reset
    again and again with the same bad id: it sees exactly one reset, then live frames."""
    ev = api.event(organizer[1], rows=1, seats_per_row=4)
    eventually(lambda: httpx.get(f"{query_url}/api/v1/events/{ev['id']}/seats", timeout=10).status_code == 200,
               timeout=60, interval=0.2)
    page = SeatMapPage(f"{query_url}/", tmp_path)
    try:
        page.ready()
        page.eval("""(() => {
            window.__frames = [];
            const es = new EventSource(`/api/v1/events/%s/seats/stream?last_event_id=99999999999999-0`);
            es.addEventListener("reset", (m) => window.__frames.push(["reset", m.lastEventId]));
            es.addEventListener("seats", (m) => window.__frames.push(["seats", m.lastEventId, m.data]));
            es.onerror = () => window.__frames.push(["error", es.readyState]);
            return true; })()""" % ev["id"])
        eventually(lambda: page.eval("window.__frames.length") >= 1, timeout=30, interval=0.2)
        api.hold(buyer[1], ev["id"], ["A-1-2"])
        frames = eventually(lambda: (f := page.eval("window.__frames")) and any(x[0] == "seats" for x in f) and f,
                            timeout=30, interval=0.2)
        kinds = [f[0] for f in frames]
        assert kinds.count("reset") == 1 and kinds[0] == "reset", frames
        assert frames[0][1], "the reset frame carries an id to resume from"
        seats = next(f for f in frames if f[0] == "seats")
        assert "A-1-2" in seats[2] and seats[1] != frames[0][1]
    finally:
        page.close()
