"""A small SSE client for tests: reads a text/event-stream in a thread and queues parsed frames."""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx


@dataclass
class Frame:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


class SseClient:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.frames: queue.Queue[Frame | Exception] = queue.Queue()
        self.comments = 0
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=60.0))
        self._opened = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(15):
            raise AssertionError(f"SSE {url}: no response within 15 s")

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as r:
                self._response = r
                self.status = r.status_code
                self._opened.set()
                if r.status_code != 200:
                    self.frames.put(AssertionError(f"SSE {self.url} -> {r.status_code} {r.read()!r}"))
                    return
                frame = Frame()
                for line in r.iter_lines():
                    if line == "":
                        if frame.data or frame.event != "message":
                            self.frames.put(frame)
                        elif frame.comments:
                            self.comments += 1
                        frame = Frame()
                    elif line.startswith(":"):
                        frame.comments.append(line[1:].strip())
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            frame.event = value
                        elif name == "id":
                            frame.id = value
                        elif name == "data":
                            frame.data = f"{frame.data}\n{value}" if frame.data else value
                self.frames.put(EOFError("stream ended"))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self._opened.set()
            self.frames.put(exc)

    def next(self, timeout: float = 30.0) -> Frame:
        try:
            item = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"SSE {self.url}: no frame within {timeout}s") from None
        if isinstance(item, Exception):
            raise item
        return item

    def until(self, pred: Callable[[Frame], bool], timeout: float = 30.0) -> list[Frame]:
        """Frames up to and including the first that satisfies ``pred`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"SSE {self.url}: condition not met within {timeout}s; saw {seen}")
            f = self.next(left)
            seen.append(f)
            if pred(f):
                return seen

    def close(self) -> None:
        """Disconnect for real (shut the socket down, so the server sees the client go at once)."""
        stream = self._response.extensions.get("network_stream") if self._response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._client.close()

    def __enter__(self) -> "SseClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def seat_changes(frames: list[Frame]) -> dict[str, str]:
    """seat -> last status over seat frames."""
    out: dict[str, str] = {}
    for f in frames:
        if f.event == "seats":
            for ch in f.json()["changes"]:
                if "seat" in ch:
                    out[ch["seat"]] = ch["status"]
    return out
