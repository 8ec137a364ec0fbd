"""OpenAPI 3.1 documents generated from the code, and the Swagger UI page that browses them (both services).

Each route declares an :class:`Operation` next to its handler, naming the same pydantic models the handler
validates its input with (request body, query string) and whose shapes its responses have. :func:`build_document`
turns the operations into the document served at ``/openapi.json``; nothing is written by hand, so the document
cannot drift from the code, and tests/e2e validate every real response of the e2e suite against it.

Rules every operation gets without saying so (CONTRACT "Common rules"):
- 400 ``VALIDATION_ERROR`` when it takes a body, a query string or a path parameter;
- 401 (and the bearer security requirement) when it needs a token;
- 413 when it takes a body; 405, 429 (with ``Retry-After``) and 503 (``DEPENDENCY_UNAVAILABLE``) always.
A 500 is never documented: malformed input must never produce one.
"""
from __future__ import annotations

import json
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from contracts.errors import ErrorBody
from contracts.vocabulary import HealthStatus

REF = "#/components/schemas/{model}"
MEDIA_TYPES = ("application/json", "text/event-stream", "text/html", "text/plain", "text/csv", "image/svg+xml",
               "image/png")
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified (the ETag still matches)",
               400: "Invalid input: `details` names each bad field", 401: "Missing, invalid, expired or revoked token",
               403: "Not allowed for this caller", 404: "No such resource", 405: "Method not allowed (see `Allow`)",
               409: "Conflict with the current state", 410: "Gone", 413: "Body too large",
               429: "Rate limited: retry after `Retry-After` seconds",
               503: "A dependency is unavailable (`details.dependency`); retry after `Retry-After` seconds"}


# --- response models: the shapes both services' responses are documented (and checked) with -------------------
def _optional_is_not_nullable(schema: dict[str, Any]) -> None:
    """An optional field (``x: T = None``, no ``| None``) is absent when it does not apply, never ``null``:
    drop the ``default: null`` pydantic writes, which would contradict the field's type."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and "anyOf" not in prop:
            del prop["default"]


class ResponseModel(BaseModel):
    """Base of every response body model. ``extra="forbid"``: the document says ``additionalProperties: false``,
    so a field a handler sends but no model declares fails the e2e conformance check."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=_optional_is_not_nullable)


class Health(ResponseModel):
    """Both services' /health body (200 when every dependency answers, else 503)."""
    status: HealthStatus
    checks: Annotated[dict[str, HealthStatus],
                      Field(description="one entry per dependency (command service: `postgresql`, `redis`; query "
                                        "service: `mongodb`, `redis`); why one is unavailable goes to the log")]


Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                description="ISO 8601 instant in UTC, e.g. 2027-03-01T20:00:00.000Z")]
Money = Annotated[int, Field(description="minor units of `currency`")]
Count = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class Param:
    """A header (or cookie) parameter; query parameters come from a model, path parameters from the path."""
    name: str
    location: Literal["header", "query", "cookie"]
    description: str = ""
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tags: tuple[str, ...] = ()
    auth: bool = False                       # bearer token required
    body: type[BaseModel] | None = None      # application/json request body
    query: type[BaseModel] | None = None     # each field is a query parameter
    headers: tuple[Param, ...] = ()
    responses: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    # model -> its JSON schema; a media type from MEDIA_TYPES -> a body of that type; None -> no body
    description: str = ""
    body_exclude: tuple[str, ...] = ()       # body-model fields that are not in the body (path ids, context)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).strip("/").replace("api/v1/", "")
        return f"{self.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', words) or 'root'}".strip("_")


def _error(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": STATUS_TEXT.get(status, "Error"),
                           "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}
    if status in (429, 503):
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    if status == 405:
        out["headers"] = {"Allow": {"schema": {"type": "string"}, "description": "the methods this path accepts"}}
    return out


def build_document(title: str, version: str, description: str, operations: Iterable[Operation]) -> dict[str, Any]:
    operations = list(operations)
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(ErrorBody, "serialization")]
    for op in operations:
        for model, mode in ((op.body, "validation"), (op.query, "validation")):
            if model is not None:
                models.append((model, mode))
        models += [(m, "serialization") for shapes in op.responses.values()
                   for m in (shapes if isinstance(shapes, tuple) else (shapes,)) if isinstance(m, type)]
    models = list(dict.fromkeys(models))
    refs, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for schema in schemas.values():  # request models too: an omitted optional field is absent, not null
        _optional_is_not_nullable(schema)

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for p in op.path_params]
        if op.query is not None:
            qs = schemas.get(op.query.__name__) or ref(op.query, "validation")
            required = set(qs.get("required", []))
            for name, prop in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required,
                               "description": prop.get("description", ""),
                               "schema": {k: v for k, v in prop.items() if k != "description"}})
        params += [{"name": h.name, "in": h.location, "required": h.required, "description": h.description,
                    "schema": h.schema} for h in op.headers]
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": list(op.tags),
                                 "parameters": params, "responses": {}}
        if op.description:
            entry["description"] = op.description
        if op.auth:
            entry["security"] = [{"bearerAuth": []}]
        if op.body is not None:
            body_ref = ref(op.body, "validation")
            exclude = set(op.body_exclude) | set(op.path_params)
            if exclude:  # the body is the model minus what the server fills in
                name = body_ref["$ref"].rsplit("/", 1)[1]
                schema = schemas[name]
                schema["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in exclude}
                if "required" in schema:
                    schema["required"] = [r for r in schema["required"] if r not in exclude]
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_ref}}}
        responses = entry["responses"]
        for status, shapes in sorted(op.responses.items()):
            if shapes is ErrorBody:
                responses[str(status)] = _error(status)
                continue
            content: dict[str, Any] = {}
            for shape in shapes if isinstance(shapes, tuple) else (shapes,):  # a tuple: alternative media types
                if isinstance(shape, type) and issubclass(shape, BaseModel):
                    content["application/json"] = {"schema": ref(shape, "serialization")}
                elif isinstance(shape, str):
                    assert shape in MEDIA_TYPES, shape
                    # an image or a CSV file is bytes, not a JSON value: no schema (OpenAPI 3.1's "any content")
                    content[shape] = ({} if shape.startswith("image/") or shape == "text/csv" else
                                      {"schema": {"type": "object"} if shape == "application/json" else {"type": "string"}})
            responses[str(status)] = {"description": STATUS_TEXT.get(status, "OK")}
            if content:
                responses[str(status)]["content"] = content
        automatic = {405, 429, 503}
        if op.body is not None or op.query is not None or op.path_params:
            automatic.add(400)
        if op.auth:
            automatic.add(401)
        if op.body is not None:
            automatic.add(413)
        for status in sorted(automatic - {int(s) for s in responses}):
            responses[str(status)] = _error(status)
        entry["responses"] = dict(sorted(responses.items()))
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(_referenced(paths, schemas).items())),
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def _referenced(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The component schemas the paths reach (a field the server fills in, like the token's actor, is dropped from
    its body and must not leave its type behind)."""
    seen: set[str] = set()
    todo = [paths]
    while todo:
        for name in re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(todo.pop())):
            if name not in seen and name in schemas:
                seen.add(name)
                todo.append(schemas[name])
    return {k: v for k, v in schemas.items() if k in seen}


# --- Swagger UI, from the pinned swagger-ui-bundle package's files (no CDN) ---------------------------------
@dataclass(frozen=True)
class DocsPage:
    html: str
    assets_dir: Path
    assets_url: str
    files: tuple[str, ...]


def swagger_ui(openapi_url: str = "/openapi.json", *, title: str = "API", assets: str = "/docs/assets") -> DocsPage:
    import swagger_ui_bundle  # the pinned package ships the built assets

    assets_dir = Path(swagger_ui_bundle.swagger_ui_path)
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{openapi_url}", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"}});
</script>
</body></html>"""
    return DocsPage(html, assets_dir, assets, ("swagger-ui.css", "swagger-ui-bundle.js",
                                                "swagger-ui-standalone-preset.js"))

