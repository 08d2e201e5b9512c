"""Which deliveries of ``POST /jira/webhook`` are Jira's, and handling each of them once.

Authenticity: the body must carry Jira's ``X-Hub-Signature`` (``sha256=<HMAC of the raw body with
settings.jira_webhook_secret>``); unsigned or wrongly signed deliveries get 401 and nothing happens.

Redeliveries (Jira retries for ~30 minutes on errors and timeouts, with the same
``X-Atlassian-Webhook-Identifier``) are handled once. The identifier header is not signed, so an issue
update is known by its signed changelog id (:func:`event_key`) and the header serves only events without
one (an issue created). Both levels below use that key:

- :class:`Deliveries`, in memory: a bounded LRU of identifiers handled by this process, and the in-flight
  task of each identifier being handled (a redelivery arriving meanwhile waits for that task instead of
  starting another): cheap, and enough for the usual case of a lost acknowledgement;
- :class:`Markers`, in the ledger, for events that led to an action: a ``jira.webhook`` entry with
  idempotency key ``jira-webhook:<key>`` is written right after the decision or the request
  (subject: the request id; ``jira:<issue key>`` for intake), holding the outcome and the exact comment.
  It survives restarts and is shared by every instance; a redelivery that finds it only re-applies the
  Jira follow-up (moving the ticket back, the comment), which is idempotent. Events that lead to nothing
  (comments, edits, our own transitions) leave no trace in the ledger. Residual window: a crash between
  the decision and the entry makes a redelivery decide again; the service then refuses the second vote
  and says so.

Answers: 200 (handled, ignored or a duplicate) with ``{"status", "detail"}``; 202 when the work takes
longer than ``budget`` seconds (it goes on in the background; Jira must not wait); 401 bad signature; 400
a body that is not a JSON object, or one not shaped as Jira's events (:class:`Malformed`); 503 when
Temporal, the store or Jira failed transiently — nothing was recorded, so Jira's redelivery tries again.
What a delivery means is never decided here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from integrations.jira_tickets import verify_webhook_signature
from store import Store
from web.jira.connection import CHANNEL, Malformed, Outcome, Transient

log = logging.getLogger("grantflow.web.jira")

SIGNATURE_HEADER = "X-Hub-Signature"
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
MARKER_KIND = "jira.webhook"
WEBHOOK_BUDGET = 8.0
"""Seconds a delivery is worked on before Jira gets its answer (the work then goes on regardless)."""
SEEN_LIMIT = 10_000
"""Identifiers remembered in memory; about 30 minutes of Jira's redelivery window at a busy site."""

Handler = Callable[[dict[str, Any], str], Coroutine[Any, Any, Outcome]]
"""Handles one verified delivery: its JSON object and its identifier."""


class Deliveries:
    """Verifies deliveries and hands each identifier to the handler once per process."""

    def __init__(self, secret: str, budget: float = WEBHOOK_BUDGET) -> None:
        self.budget = budget
        self._secret = secret
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}

    async def receive(
        self, raw: bytes, headers: Mapping[str, str], handle: Handler
    ) -> tuple[int, dict[str, str]]:
        """Verify, deduplicate and handle one delivery; the HTTP status and JSON body to answer with."""
        if not verify_webhook_signature(self._secret, raw, headers.get(SIGNATURE_HEADER)):
            return 401, {
                "error": "unauthenticated",
                "detail": f"{SIGNATURE_HEADER} is missing or does not match the body; nothing was done",
            }
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
            payload = None
        if not isinstance(payload, dict):
            return 400, {"error": "bad_input", "detail": "the body is not a JSON object; nothing was done"}
        identifier = headers.get(IDENTIFIER_HEADER) or "sha256:" + hashlib.sha256(raw).hexdigest()
        seen = event_key(payload) or identifier
        if seen in self._seen:
            self._seen.move_to_end(seen)
            return 200, Outcome("duplicate", f"delivery {identifier} was handled already").body()
        task = self._inflight.get(seen)
        if task is None:
            task = asyncio.ensure_future(handle(payload, identifier))
            self._inflight[seen] = task
            task.add_done_callback(lambda done: self._finished(seen, done))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), timeout=self.budget)
        except TimeoutError:
            return 202, {"status": "accepted", "detail": "still being handled; Jira need not send it again"}
        except Transient as exc:
            return 503, {"error": "unavailable", "detail": f"{exc}; nothing was recorded, send it again"}
        except Malformed as exc:
            return 400, {"error": "bad_input", "detail": f"{exc}; nothing was done"}
        except Exception as exc:
            log.exception("Jira webhook %s failed", identifier)
            return 500, {
                "error": "internal",
                "detail": f"an unexpected error occurred ({type(exc).__name__})",
            }
        return 200, outcome.body()

    def _finished(self, identifier: str, task: asyncio.Future[Outcome]) -> None:
        self._inflight.pop(identifier, None)
        if task.cancelled() or task.exception() is not None:
            return  # not remembered: a redelivery tries again
        self._seen[identifier] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    async def settle(self) -> None:
        """Let deliveries under way finish (up to ``budget`` seconds)."""
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.budget)


def event_key(payload: Mapping[str, Any]) -> str | None:
    """What a delivery is about, from the signed body: ``changelog:<issue id>:<changelog id>`` for an issue
    update (Jira gives every change of an issue its own changelog id, repeated in every delivery of the
    event), ``comment:<issue id>:<comment id>`` for a comment without a changelog, None for events without
    either (an issue created: its deliveries share only the header).
    The header identifier alone is not enough: it is outside the signature, so a replayed body may come
    with any identifier."""
    issue = payload.get("issue")
    issue_id = (issue.get("id") or issue.get("key")) if isinstance(issue, Mapping) else None
    changelog = payload.get("changelog")
    change_id = changelog.get("id") if isinstance(changelog, Mapping) else None
    if change_id is not None and not isinstance(change_id, bool) and str(change_id).strip() != "":
        return f"changelog:{issue_id or '-'}:{change_id}"
    # a comment alone (``issue_commented``) has no changelog; its comment id names it as well
    comment = payload.get("comment")
    comment_id = comment.get("id") if isinstance(comment, Mapping) else None
    if comment_id is not None and not isinstance(comment_id, bool) and str(comment_id).strip() != "":
        return f"comment:{issue_id or '-'}:{comment_id}"
    return None


class Markers:
    """The ledger entries that make a delivery's action happen once across restarts and instances."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, subject: str, identifier: str) -> dict[str, Any] | None:
        """The data of the delivery's marker under ``subject``, or None when it led to no action yet."""
        key = f"jira-webhook:{identifier}"
        try:
            entries = await asyncio.to_thread(self.store.ledger_entries, subject=subject)
        except Exception as exc:
            raise Transient(f"the store could not be read ({type(exc).__name__})") from exc
        return next((dict(e.data) for e in entries if e.idempotency_key == key), None)

    async def write(self, subject: str, identifier: str, actor: str, data: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self.store.append_ledger,
                kind=MARKER_KIND,
                subject=subject,
                actor=actor,
                channel=CHANNEL,
                data={"webhook_id": identifier, **data},
                idempotency_key=f"jira-webhook:{identifier}",
            )
        except Exception:
            # the decision stands; only a redelivery could repeat it, and the service would refuse it
            log.exception("could not record Jira webhook %s in the ledger", identifier)
