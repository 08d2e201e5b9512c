"""A small client of grantflow's REST API, used by the ``grantflow request`` commands.

Where it connects and as whom:

- URL: ``settings.api_url`` (``GRANTFLOW_API_URL``); else the URL ``grantflow dev`` recorded in
  ``<state_dir>/dev.json``; else ``settings.effective_public_url``.
- Token: ``settings.api_token`` (``GRANTFLOW_API_TOKEN``); else ``<state_dir>/admin.token``, written by
  ``grantflow dev``. Neither: :class:`ClientConfigError` saying how to get one.
- ``state_dir``, unless ``GRANTFLOW_STATE_DIR`` is set, is the nearest ``.grantflow/`` in the current folder
  or above it (:func:`configuration.settings.find_state_dir`), so the CLI finds the stack from any folder of
  the project; when there is none, the error says what was looked for and how to point the CLI.

Errors, as a tree::

    ClientConfigError     no token or no usable URL (before any HTTP call)
    ApiError              the API answered with an error, or could not be reached
                          (``status`` None: unreachable or timed out)

:attr:`ApiError.exit_code` is the CLI's exit code for it: 1 refused / conflict / not found / forbidden /
unauthenticated, 2 bad input (400, 422), 3 unreachable or 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from configuration.settings import STATE_DIR_NAME, Settings

DEFAULT_TIMEOUT = 60.0
CHANNEL_HEADER = "X-Grantflow-Channel"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


class ClientConfigError(Exception):
    """The CLI cannot talk to the API: no token or no URL. The message says what to set."""


class ApiError(Exception):
    """An error answer (``status``, ``code``, ``detail`` from the JSON body) or an unreachable API."""

    def __init__(
        self, status: int | None, code: str, detail: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}

    @property
    def exit_code(self) -> int:
        if self.status is None or self.status >= 500:
            return EXIT_UNAVAILABLE
        if self.status in (400, 422):
            return EXIT_BAD_INPUT
        return EXIT_REFUSED

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.code, "detail": self.detail, "status": self.status}
        for key, value in self.body.items():
            doc.setdefault(key, value)
        return doc


def resolve_api_url(settings: Settings) -> str:
    if settings.api_url:
        return settings.api_url
    recorded = settings.state_dir / "dev.json"
    if recorded.is_file():
        try:
            url = json.loads(recorded.read_text(encoding="utf-8")).get("api_url")
        except (OSError, ValueError, AttributeError):
            url = None
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return url.rstrip("/")
    return settings.effective_api_url


def resolve_token(settings: Settings) -> str:
    """``--user EMAIL``'s own token; else ``GRANTFLOW_API_TOKEN``; else the dev stack's admin token."""
    if settings.user:
        email = settings.user.strip().lower()
        return _token_file(
            settings,
            settings.state_dir / "people" / f"{email}.token",
            f"{email}'s token",
            f"no token for {email} in {settings.state_dir / 'people'}: `grantflow dev` writes one per person "
            "of the example organisation; elsewhere issue one with `grantflow token issue --email …` and "
            "set GRANTFLOW_API_TOKEN",
        )
    if settings.api_token is not None and settings.api_token.get_secret_value().strip():
        return settings.api_token.get_secret_value().strip()
    path: Path = settings.state_dir / "admin.token"
    return _token_file(
        settings,
        path,
        "the API token",
        "no API token: set GRANTFLOW_API_TOKEN (or api_token in the configuration file), or run "
        f"`grantflow dev`, which writes a local admin token to {path}",
    )


def _token_file(settings: Settings, path: Path, what: str, missing: str) -> str:
    """The token in ``path``; a missing or empty file is explained by ``missing`` (or by where the CLI
    looked for a ``grantflow dev`` stack, when it found none)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise ClientConfigError(f"cannot read {what} in {path}: {exc.strerror or exc}") from None
    if not token:
        raise ClientConfigError(stack_not_found(settings) or missing)
    return token


def stack_not_found(settings: Settings) -> str | None:
    """Why the CLI found no ``grantflow dev`` stack, what it looked for and how to point it at one; None
    when the state folder was set explicitly or exists (then the problem is elsewhere)."""
    if "state_dir" in settings.model_fields_set or settings.state_dir.is_dir():
        return None
    try:
        here = str(Path.cwd())
    except OSError:
        here = "the current folder"
    return (
        f"no grantflow dev stack found: looked for a {STATE_DIR_NAME}/ folder in {here} and every folder "
        "above it. Run the command inside the folder where `grantflow dev` runs (or any folder below it), "
        f"or point the CLI at a stack: GRANTFLOW_STATE_DIR=<that folder>/{STATE_DIR_NAME}, or, for a "
        "grantflow server, GRANTFLOW_API_URL=<its URL> with GRANTFLOW_API_TOKEN=<a token>"
    )


class ApiClient:
    """Synchronous client of ``/api/v1``: methods return the decoded JSON answer or raise ApiError."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        channel: str = "cli",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {token}", CHANNEL_HEADER: channel},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ApiClient:
        return cls(resolve_api_url(settings), resolve_token(settings), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls -------------------------------------------------------------------------------------

    def create(
        self,
        *,
        resource: str,
        duration: str,
        reason: str,
        role: str | None = None,
        requester: str | None = None,
        break_glass: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"resource": resource, "duration": duration, "reason": reason}
        if role is not None:
            body["role"] = role
        if requester is not None:
            body["requester"] = requester
        if break_glass:
            body["break_glass"] = True
        return self._call("POST", "/requests", json=body)

    def decide(
        self, request_id: str, verdict: str, *, reason: str = "", as_: str | None = None
    ) -> dict[str, Any]:
        if verdict not in ("approve", "deny"):
            raise ValueError(f"verdict {verdict!r} is not approve or deny")
        return self._call("POST", f"/requests/{_seg(request_id)}/{verdict}", json=_body(reason, as_))

    def extend(self, request_id: str, by: str, *, reason: str = "", as_: str | None = None) -> dict[str, Any]:
        return self._call(
            "POST", f"/requests/{_seg(request_id)}/extend", json={"by": by, **_body(reason, as_)}
        )

    def act(
        self, request_id: str, action: str, *, reason: str = "", as_: str | None = None
    ) -> dict[str, Any]:
        """``relinquish``, ``cancel`` or ``revoke``."""
        if action not in ("relinquish", "cancel", "revoke"):
            raise ValueError(f"unknown action {action!r}")
        return self._call("POST", f"/requests/{_seg(request_id)}/{action}", json=_body(reason, as_))

    def show(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/requests/{_seg(request_id)}")

    def list(
        self, *, statuses: list[str] | None = None, requester: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", s) for s in statuses or []]
        if requester:
            params.append(("requester", requester))
        return self._call("GET", "/requests", params=params)

    # --- campaigns

    def launch_campaign(self, spec: str, *, dry_run: bool, source: str) -> dict[str, Any]:
        return self._call("POST", "/campaigns", json={"spec": spec, "dry_run": dry_run, "source": source})

    def schedule_campaign(self, spec: str, *, source: str) -> dict[str, Any]:
        return self._call("POST", "/campaigns/schedules", json={"spec": spec, "source": source})

    def register_campaign_trigger(self, spec: str, *, source: str) -> dict[str, Any]:
        return self._call("POST", "/campaigns/triggers", json={"spec": spec, "source": source})

    def campaign_triggers(self) -> dict[str, Any]:
        return self._call("GET", "/campaigns/triggers")

    def remove_campaign_trigger(self, trigger_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/campaigns/triggers/{_seg(trigger_id)}")

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        return self._call("GET", f"/campaigns/{_seg(campaign_id)}")

    def campaigns(self) -> dict[str, Any]:
        return self._call("GET", "/campaigns")

    def campaign_evidence(self, campaign_id: str) -> dict[str, Any]:
        return self._call("GET", f"/campaigns/{_seg(campaign_id)}/evidence")

    def campaign_preview(self, campaign_id: str) -> dict[str, Any]:
        return self._call("GET", f"/campaigns/{_seg(campaign_id)}/preview")

    def campaign_items(
        self, campaign_id: str, *, reviewer: str | None = None, after: str = "", limit: int = 200
    ) -> dict[str, Any]:
        params: dict[str, str | int] = {"after": after, "limit": limit}
        if reviewer:
            params["reviewer"] = reviewer
        return self._call("GET", f"/campaigns/{_seg(campaign_id)}/items", params=params)

    def decide_campaign_items(
        self,
        campaign_id: str,
        decisions: Sequence[dict[str, str]],
        *,
        as_: str | None = None,
        stage: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"decisions": list(decisions)}
        if as_:
            body["as"] = as_
        if stage is not None:
            body["stage"] = stage
        return self._call("POST", f"/campaigns/{_seg(campaign_id)}/decisions", json=body)

    def delegate_campaign_items(
        self,
        campaign_id: str,
        to: str,
        items: Sequence[str] = (),
        *,
        reason: str = "",
        as_: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"to": to, "items": list(items), "reason": reason}
        if as_:
            body["as"] = as_
        return self._call("POST", f"/campaigns/{_seg(campaign_id)}/delegate", json=body)

    def campaign_command(self, campaign_id: str, command: str, **body: Any) -> dict[str, Any]:
        """``cancel``, ``extend`` (``by=``), ``end-stage`` or ``apply``."""
        if command not in ("cancel", "extend", "end-stage", "apply"):
            raise ValueError(f"unknown campaign command {command!r}")
        payload = {k if k != "as_" else "as": v for k, v in body.items() if v not in (None, "")}
        return self._call("POST", f"/campaigns/{_seg(campaign_id)}/{command}", json=payload)

    def sync(self, *, dry_run: bool, full: bool) -> dict[str, Any]:
        return self._call("POST", "/sync", json={"dry_run": dry_run, "full": full})

    def verify_ledger(self) -> dict[str, Any]:
        return self._call("GET", "/ledger/verify")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if "json" in kwargs:
            # Escaped to ASCII: text the command line could not decode (lone surrogates) still reaches the
            # API, which refuses it naming the field, instead of failing to encode here.
            kwargs["content"] = json.dumps(kwargs.pop("json"), ensure_ascii=True).encode("ascii")
            kwargs["headers"] = {**kwargs.get("headers", {}), "Content-Type": "application/json"}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(None, "unreachable", f"{self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise ApiError(None, "unreachable", f"cannot reach grantflow at {self.base_url}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            if not isinstance(data, dict):
                raise ApiError(
                    response.status_code, "bad_answer", f"{method} {path} answered with no JSON object"
                )
            return data
        if isinstance(data, dict) and isinstance(data.get("detail"), str):
            code = str(data.get("error") or "http_error")
            extra = {k: v for k, v in data.items() if k not in ("error", "detail")}
            raise ApiError(response.status_code, code, data["detail"], extra)
        text = response.text.strip()[:200] or response.reason_phrase
        raise ApiError(
            response.status_code, "http_error", f"{method} {path}: HTTP {response.status_code}: {text}"
        )


def _body(reason: str, as_: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": reason}
    if as_:
        body["as"] = as_
    return body


def _seg(value: str) -> str:
    """A path segment: request ids never contain '/', but a typo must not reach another route."""
    from urllib.parse import quote

    return quote(value.strip(), safe="", errors="backslashreplace")  # undecodable bytes: not found
