"""``HoopClient``: hoop's HTTP API (``<hoop>/api``) on ``httpx`` — authentication, the one translation of
answers into ``integrations.gateway`` errors, and hoop's two ways of paging.

Errors: 429, 5xx, 408, timeouts and dropped connections → ``GatewayTransientError`` (``retry_after`` from
``Retry-After``, seconds or HTTP-date); 400 → ``GatewayRefusedError`` with hoop's message; 401/403 →
``GatewayAuthError``; 404 → ``GatewayNotFoundError``; other 4xx (and an unexpected 2xx) →
``GatewayPermanentError``; a body that is not JSON → ``GatewayTransientError``.

Paging: ``{pages, data}`` listings (connections, attributes, access-request rules) by ``page``/``page_size``;
sessions by ``limit``/``offset`` (hoop refuses ``offset`` > 10000, so a larger result raises instead of
silently truncating; a row repeated because a session was created meanwhile is skipped).

This module never retries and holds no grant, review or session logic: the mixins built on it
(``grants``, ``sessions``, ``connections``) do. It also holds the three single reads every concern shares
(one session, one review, one user).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from integrations.gateway import (
    GatewayAuthError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewayRefusedError,
    GatewayTransientError,
    GatewayUser,
)
from integrations.hoop.records import user_from_body
from integrations.retry_after import parse_retry_after

PAGE_SIZE = 100  # hoop's maximum ``limit``
MAX_OFFSET = 10_000  # hoop refuses larger offsets
DEFAULT_TIMEOUT = 10.0


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


def seg(value: str) -> str:
    """One URL path segment (emails keep their ``@``)."""
    return quote(value, safe="@")


class HoopClient:
    """One hoop API key's HTTP connection. Create one per worker, close it with ``aclose``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        auth_header: Literal["bearer", "api-key"] = "bearer",
    ) -> None:
        """``base_url``: hoop's URL, with or without the ``/api`` suffix. ``auth_header``: ``bearer`` for a
        named API key (``Authorization: Bearer hpk_…``), ``api-key`` for the legacy org key header."""
        root = base_url.rstrip("/")
        if not root.endswith("/api"):
            root += "/api"
        headers = {"Accept": "application/json", "User-Agent": "grantflow"}
        if auth_header == "bearer":
            headers["Authorization"] = f"Bearer {api_key}"
        else:
            headers["Api-Key"] = api_key
        self._client = httpx.AsyncClient(
            base_url=root, headers=headers, timeout=timeout, transport=transport, follow_redirects=False
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ the reads every concern shares

    async def get_user(self, email_or_id: str) -> GatewayUser:
        return user_from_body(self._json(await self._request("GET", f"/users/{seg(email_or_id)}")))

    async def _get_session(self, session_id: str) -> dict[str, Any]:
        return self._object(await self._request("GET", f"/sessions/{seg(session_id)}"), "session", session_id)

    async def _get_review(self, review_id: str) -> dict[str, Any]:
        return self._object(await self._request("GET", f"/reviews/{seg(review_id)}"), "review", review_id)

    # ------------------------------------------------------------------ HTTP and errors

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        where = f"hoop {method} {path}"
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise GatewayPermanentError(f"{where}: bad hoop URL: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTransientError(f"{where} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise GatewayTransientError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in ok:
            return response
        message = _message(response)
        detail = f"{where} answered {status}: {message}"
        if status in (408, 429) or status >= 500:
            raise GatewayTransientError(
                detail, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status in (401, 403):
            raise GatewayAuthError(
                f"{detail} (check grantflow's hoop API key and its groups: it needs admin and the "
                "force-approval groups of the connections and access-request rules it decides for)",
                status=status,
            )
        if status == 404:
            raise GatewayNotFoundError(detail, status=status)
        if status == 400:
            raise GatewayRefusedError(message, status=status)
        if 200 <= status < 300:
            raise GatewayPermanentError(f"{where} answered an unexpected {status}", status=status)
        raise GatewayPermanentError(detail, status=status)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayTransientError(
                f"hoop {response.request.method} {response.request.url.path} answered with non-JSON",
                status=response.status_code,
            ) from exc

    @classmethod
    def _object(cls, response: httpx.Response, noun: str, key: str) -> dict[str, Any]:
        body = cls._json(response)
        if not isinstance(body, dict):
            raise GatewayTransientError(f"hoop returned a malformed {noun} {key}")
        return body

    # ------------------------------------------------------------------ paging

    async def _paged(self, path: str) -> list[dict[str, Any]]:
        """Every item of a ``{pages, data}`` listing (``page``/``page_size``, at most 100 a page); a gateway
        that ignores paging and answers a bare array is read in one go."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._json(await self._request("GET", path, params={"page": page, "page_size": PAGE_SIZE}))
            data = body.get("data") if isinstance(body, dict) else body
            items.extend(d for d in data or [] if isinstance(d, dict))
            total = (body.get("pages") or {}).get("total") if isinstance(body, dict) else None
            if not data or not isinstance(total, int) or len(items) >= total:
                return items
            page += 1

    async def _session_rows(self, params: dict[str, str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        offset = 0
        while True:
            query: dict[str, Any] = {**params, "limit": PAGE_SIZE, "offset": offset, "count": "none"}
            body = self._json(await self._request("GET", "/sessions", params=query))
            data = body.get("data") or []
            for row in data:
                # pages are positional: a session created meanwhile shifts rows, so skip repeats
                if row.get("id") not in seen:
                    seen.add(row.get("id"))
                    rows.append(row)
            if not body.get("has_next_page") or not data:
                return rows
            offset += len(data)
            if offset > MAX_OFFSET:
                raise GatewayPermanentError(
                    f"more than {MAX_OFFSET} hoop sessions match {params}; hoop cannot page further"
                )
