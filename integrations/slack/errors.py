"""Slack's failures as grantflow's error hierarchy, and the one function that classifies them.

Retries — one policy in charge. The client is built with **no** retry handlers
(:func:`integrations.slack.client.build_slack_client`), so failures reach this module instead, and the
activity boundary turns them into ``ApplicationError``\\ s: transient → retryable with
``next_retry_delay=retry_after``; permanent → non-retryable. This module never retries and never talks to
Slack.

Error hierarchy::

    SlackError                    any failure talking to Slack. ``error`` is Slack's code when it sent
    │                             one, ``status`` the HTTP status when there was an answer.
    ├── SlackTransientError       may succeed if retried: 429 (``ratelimited``), 5xx, connection errors
    │                             and timeouts, Slack's ``fatal_error``/``internal_error``/
    │                             ``service_unavailable``/``request_timeout``. ``retry_after`` carries
    │                             Slack's ``Retry-After`` in seconds, if any.
    └── SlackPermanentError       will not change by retrying.
        ├── SlackAuthError        ``not_authed``, ``invalid_auth``, ``token_revoked``, ``missing_scope`` …:
        │                         the bot token is wrong or lacks a scope.
        ├── SlackNotFoundError    ``channel_not_found``, ``message_not_found``, ``user_not_found`` …
        └── SlackRejectedError    Slack refuses the request as sent (``invalid_blocks``, ``msg_too_long``,
                                  ``invalid_metadata_format`` …). ``details`` lists Slack's explanations.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from integrations.retry_after import parse_retry_after

_TRANSIENT_CODES = frozenset(
    {"ratelimited", "rate_limited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)
_AUTH_CODES = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "org_login_required",
        "ekm_access_denied",
    }
)
_NOT_FOUND_CODES = frozenset(
    {"channel_not_found", "message_not_found", "user_not_found", "users_not_found", "thread_not_found"}
)


class SlackError(Exception):
    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.status = status


class SlackTransientError(SlackError):
    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, error=error, status=status)
        self.retry_after = retry_after


class SlackPermanentError(SlackError):
    pass


class SlackAuthError(SlackPermanentError):
    pass


class SlackNotFoundError(SlackPermanentError):
    pass


class SlackRejectedError(SlackPermanentError):
    def __init__(
        self, message: str, *, error: str | None = None, status: int | None = None, details: list[str]
    ) -> None:
        super().__init__(message, error=error, status=status)
        self.details = details


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    return parse_retry_after(next((v for k, v in headers.items() if k.lower() == "retry-after"), None))


def slack_error(exc: BaseException, doing: str) -> SlackError:
    """The :class:`SlackError` for an exception raised while ``doing`` something (a phrase: "posting to
    D123"). Unknown Slack error codes are permanent: retrying an unknown refusal only repeats it."""
    if isinstance(exc, SlackError):
        return exc
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        headers = getattr(response, "headers", None)
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        status = int(status) if status is not None else None
        if status == 429 or (status is not None and status >= 500) or code in _TRANSIENT_CODES:
            what = code or f"HTTP {status}"
            return SlackTransientError(
                f"{doing}: Slack answered {what}",
                error=code,
                status=status,
                retry_after=_retry_after(headers),
            )
        if code is None:
            # an answer that is not Slack's JSON (a proxy's page, a truncated body): worth another try
            return SlackTransientError(f"{doing}: unexpected answer (HTTP {status})", status=status)
        details: list[str] = []
        if isinstance(data, dict):
            details = [str(m) for m in (data.get("response_metadata") or {}).get("messages") or []]
            details = details or [str(e) for e in data.get("errors") or []]
        message = f"{doing}: Slack refused with {code}" + (f" ({'; '.join(details)})" if details else "")
        if code in _AUTH_CODES:
            return SlackAuthError(message, error=code, status=status)
        if code in _NOT_FOUND_CODES:
            return SlackNotFoundError(message, error=code, status=status)
        return SlackRejectedError(message, error=code, status=status, details=details)
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError):
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SlackTransientError(f"{doing}: connection failed ({detail})")
    if isinstance(exc, SlackClientError):
        return SlackRejectedError(f"{doing}: {exc}", details=[str(exc)])
    return SlackError(f"{doing}: {type(exc).__name__}: {exc}")
