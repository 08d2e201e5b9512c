"""Check HTTP exchanges with hoop against its OpenAPI 3.0.3 spec, as frozen in ``tests/contracts/hoop.json``
(from ``../shared/specs/hoop-openapiv3.json``; ``tests/contracts/regenerate.py`` writes it).

``SpecValidator(spec, differences).check(exchange)`` returns the problems of one exchange: an operation the
spec lacks, a query parameter it does not declare (or of the wrong type), a request or response body that
does not match its schema, a status it does not list. Schemas are made *strict*: an object that declares its
properties accepts no others, so a renamed or invented field is drift too. OpenAPI 3.0's ``nullable`` becomes
a JSON-schema ``null`` type; ``$ref``s are expanded inline (each property schema is tagged with ``x-field``
``"<component>.<property>"`` so an error can be traced to the field it concerns). An operation the spec has
but the frozen file does not (``tests/contracts``) is reported as such.

Known differences between the running gateway and its spec are data (``KnownDifference``); an error is
forgiven only when a difference names exactly it, and ``used`` records which differences were needed, so a
difference that no longer happens can be noticed and removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from tests.contracts import NOT_FROZEN, NOT_FROZEN_HINT, load_contract

API_PREFIX = "/api"

Kind = Literal["status", "undeclared_status", "nullable", "enum", "response_schema", "auth", "behaviour"]


@dataclass(frozen=True)
class KnownDifference:
    """One place where the running gateway (and so the stand-in) departs from the spec.

    kind            what is forgiven
    status          ``operation`` answers ``status`` where the spec says ``spec_status``: validate the body
                    against the schema of ``spec_status``
    undeclared_status  ``operation`` answers ``status``, which the spec does not list: validate the body
                    against ``schema`` (a component name)
    nullable        ``field`` (``"<component>.<property>"``) may be null
    enum            ``field`` may also take ``values``
    response_schema ``operation`` answers with component ``schema`` when the query has any of ``when_query``
    auth            the request authenticates with an API key, which no security scheme declares
    behaviour       a rule the spec's prose states differently; checked by a test of its own
    """

    key: str
    kind: Kind
    why: str
    operation: str | None = None  # "POST /sessions/provision"
    status: int | None = None
    spec_status: int | None = None
    schema: str | None = None
    field: str | None = None
    values: tuple[Any, ...] = ()
    when_query: tuple[str, ...] = ()


@dataclass
class Exchange:
    method: str
    path: str  # without the query string, with the /api prefix
    query: list[tuple[str, str]]
    headers: dict[str, str]
    request_json: Any
    status: int
    response_json: Any
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def injected(self) -> bool:
        """Faults injected by the stand-in (``fail_next``) are test artefacts, not hoop behaviour."""
        return self.response_headers.get("x-sandbox-fault") == "injected"

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''} → {self.status}"


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests to a real transport and keeps every exchange, bodies parsed."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, exchanges: list[Exchange] | None = None
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = exchanges if exchanges is not None else []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                query=list(request.url.params.multi_items()),
                headers={k.lower(): v for k, v in request.headers.items()},
                request_json=_loads(body),
                status=response.status_code,
                response_json=_loads(content),
                response_headers={k.lower(): v for k, v in response.headers.items()},
            )
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _loads(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def load_spec() -> dict[str, Any]:
    """hoop's spec, as frozen in ``tests/contracts/hoop.json``."""
    return load_contract("hoop")


_FORMATS = FormatChecker(["uuid", "email"])


class SpecValidator:
    def __init__(self, spec: dict[str, Any], differences: Sequence[KnownDifference]) -> None:
        self.spec = spec
        self.differences = list(differences)
        self.used: set[str] = set()
        self._components: dict[str, Any] = spec["components"]["schemas"]
        self._expanded: dict[str, Any] = {}
        templates = sorted(spec["paths"], key=lambda p: (p.count("{"), -len(p)))
        self._routes = [(t, re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", t) + "$")) for t in templates]

    # -------------------------------------------------------------- schemas

    def component(self, name: str) -> dict[str, Any]:
        """A component schema, converted to strict JSON schema with ``$ref``s expanded inline."""
        if name not in self._components:
            raise KeyError(
                f"component {name!r} is not in the spec, or not frozen: see tests/contracts/regenerate.py"
            )
        if name not in self._expanded:
            self._expanded[name] = self._convert(self._components[name], owner=name, stack=(name,))
        return self._expanded[name]

    def _convert(self, node: Any, *, owner: str | None, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [self._convert(n, owner=None, stack=stack) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in stack:
                raise ValueError(f"cyclic $ref {' -> '.join((*stack, name))}")
            return self._convert(self._components[name], owner=name, stack=(*stack, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("example", "x-enum-varnames", "readOnly", "default", "description", "nullable"):
                continue
            if key == "properties":
                out[key] = {
                    prop: {
                        **self._convert(schema, owner=None, stack=stack),
                        **({"x-field": f"{owner}.{prop}"} if owner else {}),
                    }
                    for prop, schema in value.items()
                }
            elif key == "additionalProperties" and isinstance(value, dict):
                out[key] = self._convert(value, owner=None, stack=stack)
            else:
                out[key] = self._convert(value, owner=None, stack=stack)
        if node.get("nullable"):
            if "type" in out:
                out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    def _media_schema(self, holder: dict[str, Any] | None) -> dict[str, Any] | None:
        if not holder:
            return None
        content = holder.get("content", {}).get("application/json")
        if content is None or "schema" not in content:
            return None
        return self._convert(content["schema"], owner=None, stack=())

    # -------------------------------------------------------------- checking

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The spec's (template, operation object) for a request path, with or without ``/api``."""
        if path.startswith(API_PREFIX + "/"):
            path = path[len(API_PREFIX) :]
        for template, pattern in self._routes:
            if pattern.match(path):
                op = self.spec["paths"][template].get(method.lower())
                if op is not None:
                    return template, op
        return None

    def check(self, exchange: Exchange) -> list[str]:
        found = self.operation(exchange.method, exchange.path)
        if found is None:
            return [f"{exchange}: no such operation in the spec"]
        template, op = found
        name = f"{exchange.method} {template}"
        if op.get(NOT_FROZEN):
            return [f"{exchange}: {name} {NOT_FROZEN_HINT}"]
        problems = self._check_query(name, op, exchange)
        if exchange.request_json is not None:
            schema = self._media_schema(op.get("requestBody"))
            if schema is None:
                problems.append(f"{exchange}: sent a body the spec does not declare")
            else:
                problems += self._validate(f"{exchange} request", schema, exchange.request_json)
        problems += self._check_response(name, op, exchange)
        return problems

    def check_auth(self, exchange: Exchange, api_keys: Iterable[str]) -> list[str]:
        """The request authenticates with one of grantflow's API keys; the spec must declare that, or a
        difference must say it does not."""
        headers = exchange.headers
        sent = {headers.get("api-key"), headers.get("authorization", "").removeprefix("Bearer ")}
        if not sent & set(api_keys):
            return [f"{exchange}: does not authenticate with an API key"]
        schemes = self.spec["components"].get("securitySchemes", {}).values()
        if any(s.get("type") == "apiKey" for s in schemes):
            return []
        for diff in self._of_kind("auth"):
            self.used.add(diff.key)
            return []
        return [f"{exchange}: API-key auth, but the spec declares only {[s.get('type') for s in schemes]}"]

    def _of_kind(self, kind: Kind) -> Iterable[KnownDifference]:
        return (d for d in self.differences if d.kind == kind)

    def _check_query(self, name: str, op: dict[str, Any], exchange: Exchange) -> list[str]:
        declared = {
            p["name"]: p.get("schema", {}) for p in op.get("parameters", []) if p.get("in") == "query"
        }
        problems = []
        for key, value in exchange.query:
            if key not in declared:
                problems.append(f"{exchange}: query parameter {key!r} is not declared for {name}")
                continue
            schema = declared[key]
            if schema.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                problems.append(f"{exchange}: query parameter {key}={value!r} is not an integer")
            if "enum" in schema and value not in schema["enum"]:
                problems.append(f"{exchange}: query parameter {key}={value!r} not in {schema['enum']}")
        return problems

    def _check_response(self, name: str, op: dict[str, Any], exchange: Exchange) -> list[str]:
        responses: dict[str, Any] = op.get("responses", {})
        status = exchange.status
        schema: dict[str, Any] | None = None
        query_keys = {k for k, _ in exchange.query}
        override = next(
            (
                d
                for d in self._of_kind("response_schema")
                if d.operation == name and query_keys & set(d.when_query) and status == 200
            ),
            None,
        )
        if override is not None and override.schema is not None:
            self.used.add(override.key)
            schema = self.component(override.schema)
        elif str(status) in responses:
            schema = self._media_schema(responses[str(status)])
        else:
            moved = next(
                (d for d in self._of_kind("status") if d.operation == name and d.status == status), None
            )
            undeclared = next(
                (d for d in self._of_kind("undeclared_status") if d.operation == name and d.status == status),
                None,
            )
            if moved is not None and str(moved.spec_status) in responses:
                self.used.add(moved.key)
                schema = self._media_schema(responses[str(moved.spec_status)])
            elif undeclared is not None and undeclared.schema is not None:
                self.used.add(undeclared.key)
                schema = self.component(undeclared.schema)
            else:
                return [f"{exchange}: status {status} is not among {sorted(responses)} for {name}"]
        if schema is None:
            if exchange.response_json is not None:
                return [f"{exchange}: answered a body where the spec declares none"]
            return []
        return self._validate(f"{exchange} response", schema, exchange.response_json)

    def validate_component(self, name: str, instance: Any) -> list[str]:
        return self._validate(name, self.component(name), instance)

    def _validate(self, label: str, schema: dict[str, Any], instance: Any) -> list[str]:
        problems = []
        for error in Draft4Validator(schema, format_checker=_FORMATS).iter_errors(instance):
            diff = self._forgiving(schema, error)
            if diff is not None:
                self.used.add(diff.key)
                continue
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            problems.append(f"{label}: at {where}: {error.message}")
        return problems

    def _forgiving(self, root: dict[str, Any], error: ValidationError) -> KnownDifference | None:
        fields = _fields_along(root, error.absolute_schema_path)
        if not fields:
            return None
        nearest = fields[-1]
        for diff in self.differences:
            if diff.field != nearest:
                continue
            if diff.kind == "nullable" and error.validator == "type" and error.instance is None:
                return diff
            if diff.kind == "enum" and error.validator == "enum" and error.instance in diff.values:
                return diff
        return None


def _fields_along(root: Any, path: Iterable[Any]) -> list[str]:
    """The ``x-field`` tags of the schemas on the way to a failing keyword."""
    tags: list[str] = []
    node = root
    for step in path:
        if isinstance(node, dict) and "x-field" in node:
            tags.append(node["x-field"])
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return tags
