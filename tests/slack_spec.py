"""Check Slack Web API calls, as the Slack stand-in records them, against Slack's frozen Web API spec
(``../shared/specs/slack-web-openapi-v2.json``: slackapi/slack-api-specs v1.7.0, Swagger 2.0, 2020-10-06),
read from the part of it that ``tests/contracts/slack.json`` keeps (``tests/contracts/regenerate.py``).

The spec is frozen and wrong in places (it lists ``views.open`` as GET), so it is used for *names only*:
the method must be one of its paths, every argument sent must be a parameter it declares for that method,
and every top-level field of a successful answer (HTTP 200 with ``"ok": true``) must be a property of its
200 schema. The HTTP verb, types and values are not checked. Whatever Slack added after 2020 that grantflow
uses is allowed by name in the lists below, each with its reason; nothing else is, so a misspelt argument
(``chanel``) or a field the stand-in invents is reported. ``SlackSpecChecker.used`` records which allowances
were needed, so one that is no longer needed can be noticed and removed. A method the spec has but
``tests/contracts/slack.json`` does not keep is reported as not frozen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack import Call
from tests.contracts import NOT_FROZEN, NOT_FROZEN_HINT, load_contract


@dataclass(frozen=True)
class NewerMethod:
    """A Web API method the frozen spec lacks, with the names Slack's current method page documents."""

    why: str
    params: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset({"ok"})


# Methods newer than the spec that grantflow calls (api.slack.com/methods/<method>).
KNOWN_NEWER_METHODS: dict[str, NewerMethod] = {
    # Socket Mode (2021): the app-level token (sent as the bearer token, not an argument) gets a WebSocket
    # URL; Slack documents no other arguments and answers {"ok": true, "url": "wss://…"}.
    "apps.connections.open": NewerMethod(
        why="Socket Mode, introduced in 2021, after the spec was frozen",
        fields=frozenset({"ok", "url"}),
    ),
}

# Arguments newer than the spec, per method, that grantflow sends.
KNOWN_NEWER_PARAMS: dict[str, dict[str, str]] = {
    "chat.postMessage": {
        # message metadata (2022): post_once keys each message with {event_type, event_payload}
        "metadata": "message metadata (2022); grantflow stores its idempotency key in it",
    },
    "conversations.history": {
        # (2022) without it Slack leaves each message's metadata out of the history
        "include_all_metadata": "added with message metadata (2022); find_posted needs the metadata back",
    },
}

# Top-level fields of successful answers that Slack sends and the spec's 200 schema does not list.
KNOWN_NEWER_FIELDS: dict[str, dict[str, str]] = {
    "conversations.history": {
        # the spec declares the ``cursor`` argument but not the ``response_metadata.next_cursor`` feeding it
        "response_metadata": "cursor paging: Slack's page documents response_metadata.next_cursor",
    },
    "views.open": {
        # the spec's 200 schema for views.* is a stub ({ok} and additionalProperties)
        "view": "Slack answers the opened view (its id, hash, state); the spec's schema is a stub",
    },
}


def load_spec() -> dict[str, Any]:
    """Slack's Web API spec, as frozen in ``tests/contracts/slack.json``."""
    return load_contract("slack")


@dataclass
class SlackSpecChecker:
    """Checks recorded calls against ``spec``; see the module docstring for what is checked."""

    spec: Mapping[str, Any]
    newer_methods: Mapping[str, NewerMethod] = field(default_factory=lambda: KNOWN_NEWER_METHODS)
    newer_params: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: KNOWN_NEWER_PARAMS)
    newer_fields: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: KNOWN_NEWER_FIELDS)
    used: set[str] = field(default_factory=set)  # "method", "method param=x", "method field=x"

    def operations(self, method: str) -> list[Mapping[str, Any]]:
        """The spec's operations for a method, whatever their HTTP verb (empty when it has none)."""
        path = self.spec.get("paths", {}).get(f"/{method}") or {}
        return [op for verb, op in path.items() if verb != "parameters" and isinstance(op, Mapping)]

    def declared_params(self, method: str) -> set[str]:
        path = self.spec.get("paths", {}).get(f"/{method}") or {}
        shared = path.get("parameters", [])
        return {
            str(self._resolve(p)["name"])
            for op in self.operations(method)
            for p in [*shared, *op.get("parameters", [])]
        }

    def declared_fields(self, method: str) -> set[str]:
        names: set[str] = set()
        for op in self.operations(method):
            ok = (op.get("responses") or {}).get("200") or {}
            schema = self._resolve(self._resolve(ok).get("schema") or {})
            names |= set(schema.get("properties") or {})
        return names

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            target: Any = self.spec
            for part in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def check(self, call: Call) -> list[str]:
        """The problems of one call (none when every name is the spec's or allowed)."""
        method = call.method
        if any(op.get(NOT_FROZEN) for op in self.operations(method)):
            return [f"{method} {NOT_FROZEN_HINT}"]
        if self.operations(method):
            params, fields = self.declared_params(method), self.declared_fields(method)
        elif method in self.newer_methods:
            self.used.add(method)
            params, fields = set(self.newer_methods[method].params), set(self.newer_methods[method].fields)
        else:
            return [f"{method}: no such method in the spec"]
        problems = []
        newer = self.newer_params.get(method, {})
        for name in sorted(call.params):
            if name in params:
                continue
            if name in newer:
                self.used.add(f"{method} param={name}")
                continue
            problems.append(f"{method}: argument {name!r} is not declared by the spec (has {sorted(params)})")
        response = call.response
        if call.status == 200 and isinstance(response, dict) and response.get("ok") is True:
            newer = self.newer_fields.get(method, {})
            for name in sorted(response):
                if name in fields:
                    continue
                if name in newer:
                    self.used.add(f"{method} field={name}")
                    continue
                problems.append(f"{method}: answer field {name!r} is not in the spec (has {sorted(fields)})")
        return problems

    def check_all(self, calls: Iterable[Call]) -> list[str]:
        return [problem for call in calls for problem in self.check(call)]

    def allowances(self) -> set[str]:
        """Every allowance, named as in ``used``."""
        return (
            set(self.newer_methods)
            | {f"{m} param={p}" for m, names in self.newer_params.items() for p in names}
            | {f"{m} field={f}" for m, names in self.newer_fields.items() for f in names}
        )


def spec_problems(calls: Iterable[Call], spec: Mapping[str, Any] | None = None) -> list[str]:
    """The problems of ``calls`` against the spec (the frozen one unless given)."""
    return SlackSpecChecker(spec if spec is not None else load_spec()).check_all(calls)
