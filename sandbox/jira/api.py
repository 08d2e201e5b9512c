"""What every route handler shares: the request context it gets and the error it raises for an answer.

A handler takes a :class:`Ctx` and returns ``(status, payload)``, or raises :class:`ApiError`, which the
server turns into Jira's error body ``{"errorMessages": [...], "errors": {field: message}}``. Handlers never
see HTTP objects, so they run under the stand-in's lock without awaiting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.jira.model import User


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        messages: Sequence[str] = (),
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, messages, errors)
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


@dataclass
class Ctx:
    """What a handler gets: the API version, path parameters, query, parsed body and the caller."""

    version: str
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any
    caller: User | None

    @property
    def v3(self) -> bool:
        return self.version == "3"

    def q(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def q_all(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def q_int(self, name: str, default: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, [f"The value '{raw}' is not valid for '{name}'."]) from None


@dataclass
class Outcome:
    status: int
    payload: Any
    headers: dict[str, str]
    drop: bool = False
    delay: float = 0.0  # seconds to hold the answer back (an injected timeout)


Handler = Callable[[Ctx], tuple[int, Any]]
