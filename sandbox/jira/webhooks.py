"""Webhooks: the events issue changes raise, their signed delivery with Atlassian's retries, and the admin
webhook registration route.

Cloud admin webhooks: when an issue is created (``jira:issue_created``), edited, transitioned or commented on
(``jira:issue_updated``, with ``issue_event_type_name`` ``issue_generic``/``issue_assigned``/
``issue_updated``/``issue_commented``), through the API or by a person (``transition_as``, ``comment_as``),
the stand-in POSTs the payload (``timestamp``, ``webhookEvent``, ``issue{id,key,self,fields}``, ``user``,
``changelog{id, items[{field, fieldtype, fieldId, from, fromString, to, toString}]}``, ``comment``) to
``webhook_url`` from a background thread, so the call that caused it returns at once. Headers:
``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` when a secret is set,
``X-Atlassian-Webhook-Identifier`` (the same for every delivery of one event), ``X-Atlassian-Webhook-Retry:
n`` on the n-th redelivery, ``X-Atlassian-Webhook-Flow: Primary``. Redelivery follows Atlassian's published
policy: on **408, 409, 425, 429, 5xx** and connection failures (``webhook_retry_statuses`` changes the set),
at most ``len(webhook_retry_delays)`` times (Cloud: 5 times over up to ~30 minutes; here after short delays).
Other answers (2xx, and 4xx such as a 401 for a bad signature) end the delivery. ``redeliver(identifier)``
sends an event again on demand, as a lost acknowledgement would make Jira do.

Events are recorded in ``events`` whether or not a URL is set; every attempt in ``deliveries``. Deliveries
never run under the stand-in's lock (the receiver may call back into the stand-in).
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.model import Comment, Issue, User
from sandbox.jira.render import JiraRendering

# Atlassian's published redelivery policy: these answers (and connection failures) are retried
ATLASSIAN_RETRY_STATUSES = frozenset({408, 409, 425, 429, *range(500, 600)})
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)  # Cloud: 5 retries over up to ~30 minutes
WEBHOOKS_API = "/rest/webhooks/1.0"  # admin webhooks live outside /rest/api
WEBHOOKS_VERSION = "webhooks/1.0"  # the "version" of a call under WEBHOOKS_API, in JiraCall


@dataclass(frozen=True)
class WebhookEvent:
    """One webhook event: the same body (and so the same signature) goes out on every delivery."""

    identifier: str
    event: str  # jira:issue_created, jira:issue_updated
    type_name: str  # issue_event_type_name: issue_created, issue_generic, issue_assigned, ...
    issue_key: str
    payload: dict[str, Any]
    body: bytes
    url: str | None
    secret: str | None

    @property
    def signature(self) -> str | None:
        if self.secret is None:
            return None
        return "sha256=" + hmac.new(self.secret.encode(), self.body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver an event. ``retry`` is 0 for the first attempt, else the value sent in
    ``X-Atlassian-Webhook-Retry``. ``status`` is None when the connection failed (``error`` says how)."""

    identifier: str
    event: str
    retry: int
    status: int | None
    error: str | None
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(order=True)
class PendingDelivery:
    due: float
    seq: int
    event: WebhookEvent = field(compare=False)
    retry: int = field(compare=False)
    chain: bool = field(compare=False)  # keep retrying on failure (False for an on-demand redelivery)


class JiraWebhooks(JiraRendering):
    """Webhook events and their delivery thread; the admin webhook routes."""

    webhook_url: str | None
    webhook_secret: str | None
    webhook_retry_delays: tuple[float, ...]
    webhook_retry_statuses: frozenset[int]
    webhook_timeout: float
    events: list[WebhookEvent]
    deliveries: list[WebhookDelivery]
    _retry_counts: dict[str, int]
    # a heap of due deliveries, worked off by one thread
    _wh_cond: threading.Condition
    _wh_heap: list[PendingDelivery]
    _wh_seq: itertools.count[int]
    _wh_inflight: int
    _wh_stop: bool
    _wh_thread: threading.Thread | None

    def _init_webhooks(
        self,
        url: str | None,
        secret: str | None,
        retry_delays: Sequence[float],
        retry_statuses: Iterable[int],
        timeout: float,
    ) -> None:
        self.webhook_url = url
        self.webhook_secret = secret
        self.webhook_retry_delays = tuple(retry_delays)
        self.webhook_retry_statuses = frozenset(retry_statuses)
        self.webhook_timeout = timeout
        self.events = []
        self.deliveries = []
        self._retry_counts = {}
        self._wh_cond = threading.Condition()
        self._wh_heap = []
        self._wh_seq = itertools.count()
        self._wh_inflight = 0
        self._wh_stop = False
        self._wh_thread = None

    def _start_webhooks(self) -> None:
        """Start the webhook sender (once serving)."""
        with self._wh_cond:
            self._wh_stop = False
        self._wh_thread = threading.Thread(target=self._webhook_worker, name="jira-webhooks", daemon=True)
        self._wh_thread.start()

    def _stop_webhooks(self) -> None:
        """Deliveries still waiting are dropped."""
        with self._wh_cond:
            self._wh_stop = True
            self._wh_cond.notify_all()
        if self._wh_thread is not None:
            self._wh_thread.join(self.webhook_timeout + 1)
            self._wh_thread = None

    def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        """Where (and with which secret) events from now on are sent; None stops sending."""
        with self._lock:
            self.webhook_url = url
            self.webhook_secret = secret

    def event(self, identifier: str) -> WebhookEvent:
        with self._lock:
            for event in self.events:
                if event.identifier == identifier:
                    return event
        raise KeyError(identifier)

    def deliveries_of(self, identifier: str) -> list[WebhookDelivery]:
        with self._lock:
            return [d for d in self.deliveries if d.identifier == identifier]

    def redeliver(self, identifier: str) -> None:
        """Send an event once more (with the next ``X-Atlassian-Webhook-Retry``), as Jira does when it did not
        see an acknowledgement. One attempt: a failure is recorded, not retried."""
        event = self.event(identifier)
        if event.url is None:
            raise ValueError(f"event {identifier} had no webhook URL")
        with self._lock:
            retry = self._retry_counts.get(identifier, 0) + 1
            self._retry_counts[identifier] = retry
        self._schedule(event, retry, delay=0.0, chain=False)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no delivery is due or under way (retries included). Raises ``TimeoutError``."""
        with self._wh_cond:
            if not self._wh_cond.wait_for(lambda: not self._wh_heap and self._wh_inflight == 0, timeout):
                raise TimeoutError(f"webhook deliveries still pending after {timeout}s")

    def _schedule(self, event: WebhookEvent, retry: int, *, delay: float, chain: bool) -> None:
        with self._wh_cond:
            heapq.heappush(
                self._wh_heap,
                PendingDelivery(time.monotonic() + delay, next(self._wh_seq), event, retry, chain),
            )
            self._wh_cond.notify_all()

    def _webhook_worker(self) -> None:
        with httpx.Client(timeout=self.webhook_timeout, follow_redirects=False) as client:
            while True:
                with self._wh_cond:
                    while not self._wh_stop:
                        if self._wh_heap and self._wh_heap[0].due <= time.monotonic():
                            break
                        wait = self._wh_heap[0].due - time.monotonic() if self._wh_heap else None
                        self._wh_cond.wait(wait)
                    if self._wh_stop:
                        self._wh_heap.clear()
                        self._wh_cond.notify_all()
                        return
                    pending = heapq.heappop(self._wh_heap)
                    self._wh_inflight += 1
                try:
                    self._deliver(client, pending)
                finally:
                    with self._wh_cond:
                        self._wh_inflight -= 1
                        self._wh_cond.notify_all()

    def _deliver(self, client: httpx.Client, pending: PendingDelivery) -> None:
        event = pending.event
        assert event.url is not None
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": event.identifier,
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if event.signature is not None:
            headers["X-Hub-Signature"] = event.signature
        if pending.retry:
            headers["X-Atlassian-Webhook-Retry"] = str(pending.retry)
        status: int | None = None
        error: str | None = None
        try:
            status = client.post(event.url, content=event.body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.deliveries.append(
                WebhookDelivery(event.identifier, event.event, pending.retry, status, error, headers)
            )
            retryable = status is None or status in self.webhook_retry_statuses
            if not (pending.chain and retryable) or pending.retry >= len(self.webhook_retry_delays):
                return
            retry = self._retry_counts.get(event.identifier, 0) + 1
            self._retry_counts[event.identifier] = retry
            delay = self.webhook_retry_delays[pending.retry]
        self._schedule(event, retry, delay=delay, chain=True)

    def _emit(
        self,
        event_name: str,
        type_name: str,
        issue: Issue,
        actor: User,
        *,
        changelog: list[dict[str, Any]] | None = None,
        comment: Comment | None = None,
    ) -> WebhookEvent:
        """Record an event and, with a webhook URL set, queue its delivery (under the lock)."""
        payload: dict[str, Any] = {
            "timestamp": int(self.now().timestamp() * 1000),
            "webhookEvent": event_name,
            "issue_event_type_name": type_name,
            "user": self._render_user(actor, full=False),
            "issue": self._render_issue(issue, "2", None, with_expand=False),
            "matchedWebhookIds": [1],
        }
        if changelog:
            payload["changelog"] = {"id": issue.histories[-1]["id"], "items": copy.deepcopy(changelog)}
        if comment is not None:
            payload["comment"] = self._render_comment(issue, comment, "2")
        event = WebhookEvent(
            identifier=str(uuid.uuid4()),
            event=event_name,
            type_name=type_name,
            issue_key=issue.key,
            payload=payload,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            url=self.webhook_url,
            secret=self.webhook_secret,
        )
        self.events.append(event)
        if event.url is not None:
            self._schedule(event, 0, delay=0.0, chain=True)
        return event

    def _require_site_admin(self, ctx: Ctx) -> User:
        caller = self._caller(ctx)
        if caller.email not in self.site_admins:
            # admin webhooks need the "Administer Jira" global permission
            raise ApiError(403, ["You do not have permission to register or list webhooks."])
        return caller

    def _h_list_webhooks(self, ctx: Ctx) -> tuple[int, Any]:
        self._require_site_admin(ctx)
        return 200, [self._render_webhook(w) for w in self._webhooks.values()]

    def _h_register_webhook(self, ctx: Ctx) -> tuple[int, Any]:
        """``POST /rest/webhooks/1.0/webhook`` (Atlassian's "Webhooks" page, "Registering a webhook via the
        REST API"): name, url, events, ``filters["issue-related-events-section"]`` (JQL), excludeBody and,
        for admin webhooks, a ``secret`` with which every delivery is signed (``X-Hub-Signature``). From then
        on this stand-in delivers its events there."""
        self._require_site_admin(ctx)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        errors = {
            k: f"{k} is required" for k in ("name", "url") if not isinstance(body.get(k), str) or not body[k]
        }
        events = body.get("events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            errors["events"] = "events must be a list of event names"
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            errors["secret"] = "secret must be a string"
        if errors:
            raise ApiError(400, [], errors)
        webhook = {
            "id": self._new_id(),
            "name": body["name"],
            "url": body["url"],
            "events": list(events),
            "filters": dict(body.get("filters") or {}),
            "excludeBody": bool(body.get("excludeBody", False)),
            "secret": secret,
            "lastUpdated": int(self.now().timestamp() * 1000),
        }
        self._webhooks[webhook["id"]] = webhook
        self.set_webhook(webhook["url"], secret)
        return 201, self._render_webhook(webhook)

    def _render_webhook(self, webhook: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in webhook.items() if k not in ("id", "secret")}  # the secret is never shown
        return {"self": f"{self._base_url}{WEBHOOKS_API}/webhook/{webhook['id']}", "enabled": True, **shown}
