"""Every response the e2e tests receive from the two services is checked against that service's own
``/openapi.json`` (openapi-core), so the generated documents are tested on real traffic, not only on their shape.

``record`` wraps ``httpx.Client.send``: a response from a service port whose path and method the document
describes is validated there and then (status documented, headers and body matching its schema); a path or
method the document does not describe is left alone (the tests that probe unknown routes and 405s), as are
streamed bodies (SSE) that the test reads itself. Mismatches are collected and fail the session at teardown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = bytes(request.content) if request.content else None
        self.content_type = request.headers.get("content-type", "application/json").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(request.url.params.multi_items()),
            header=Headers(list(request.headers.items())), cookie=ImmutableMultiDict())


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").lower()
        self.headers = Headers(list(response.headers.items()))
        self.data = response.content


@dataclass
class Conformance:
    documents: dict[str, dict[str, Any]]  # "127.0.0.1:8001" -> that service's OpenAPI document
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    _specs: dict[str, OpenAPI] = field(default_factory=dict)

    def check(self, response: httpx.Response) -> None:
        netloc = response.request.url.netloc.decode()
        if netloc not in self.documents or "text/event-stream" in response.headers.get("content-type", ""):
            return
        spec = self._specs.get(netloc) or self._specs.setdefault(netloc, OpenAPI.from_dict(self.documents[netloc]))
        request = _Request(response.request)
        try:
            spec.validate_response(request, _Response(response))
        except (PathNotFound, OperationNotFound):
            return
        except Exception as exc:  # noqa: BLE001 - every mismatch is reported at the end
            detail = "; ".join(str(e)[:300] for e in getattr(exc, "schema_errors", []) or [exc.__cause__ or exc])
            self.failures.append(f"{request.method.upper()} {request.path} -> {response.status_code}: "
                                 f"{type(exc).__name__}: {detail} | body {response.content[:300]!r}")
            return
        self.checked += 1


def record(monkeypatch, conformance: Conformance) -> None:
    original = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original(self, request, **kwargs)
        if not kwargs.get("stream"):
            conformance.check(response)
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
