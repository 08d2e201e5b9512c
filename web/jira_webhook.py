"""Jira as an edge: ``POST /jira/webhook`` turns a person's transition of a request's ticket into a
decision, and an issue created in the intake project into a request.

Who is acting: the body must carry Jira's ``X-Hub-Signature`` (``sha256=<HMAC of the raw body with
settings.jira_webhook_secret>``); unsigned or wrongly signed deliveries get 401 and nothing happens. The
``user.accountId`` of the event is mapped to a directory person (see "People" below). Transitions made by
grantflow's own API user (its accountId from ``/myself``) are ignored: they mirror decisions already made.

People: an accountId becomes a directory person, in this order,

1. by the email Jira shows for it (``GET /user``; on Cloud most people hide it);
2. for a status change on a request's ticket, by user search among the people who could matter: the
   request's eligible approvers and its requester. Each candidate's accountId is learned by searching their
   exact email (Cloud finds a hidden email by its exact address; ``JiraTickets.account_id_for_email``, which
   caches what it finds) and compared with the actor's. At most ``CANDIDATE_LIMIT`` candidates are searched
   per event; an account whose display name could itself match the email searched is not taken (the search
   matches names too, so the match would prove nothing);
3. by the configured ``jira_account_ids`` mapping (email -> accountId), read backwards.

What Jira told (the shown email, or the one learned by search) is trusted for ``ACCOUNT_TTL`` seconds. The
person found must be an active person in the directory; whether they may decide is the service's to say.
For an intake issue the candidates are unknown (no request exists yet), so its reporter is mapped by the
shown email or the mapping only.

Decisions: a ``jira:issue_updated`` whose changelog moves a ticket labelled ``grantflow-<request id>``
into ``settings.jira_approve_status`` or ``jira_deny_status`` (matched against the status id first, then
its name: configure ids to survive renames) is ``RequestService.decide`` as that person on channel
``jira`` (a deny's reason is the comment made with the transition). While the request still awaits
decisions, the ticket must say so: after a refused attempt (not eligible, the requester, a second vote,
someone outside the directory) and after a counted approval that does not reach the quorum, the ticket is
moved back (by a transition leading to the status it came from, else the one configured as ``Reopen``)
with a comment saying why. Refusals are in the ledger (the service records them; this module records
those of people outside the directory, whom the service cannot know).

Intake: a ``jira:issue_created`` in ``settings.jira_intake_project`` is ``RequestService.create`` for its
reporter, with resource, role and duration read from ``settings.jira_intake_fields`` (field ids or names)
and the reason from the description. Success: the issue gets the label ``grantflow-<request id>`` (so its
later transitions decide, and the ticket mirror finds it) and a comment with the id and who must approve.
Bad fields: a comment naming every problem; nothing is started.

Redeliveries (Jira retries for ~30 minutes on errors and timeouts, with the same
``X-Atlassian-Webhook-Identifier``) are handled once, at two levels:

- in memory, a bounded LRU of identifiers handled by this process, and the in-flight task of each
  identifier being handled (a redelivery arriving meanwhile waits for that task instead of starting
  another): cheap, and enough for the usual case of a lost acknowledgement;
- in the ledger, for events that led to an action: a ``jira.webhook`` entry with idempotency key
  ``jira-webhook:<identifier>`` is written right after the decision or the request (subject: the request
  id; ``jira:<issue key>`` for intake), holding the outcome and the exact comment. It survives restarts
  and is shared by every instance; a redelivery that finds it only re-applies the Jira follow-up (moving
  the ticket back, the comment), which is idempotent. Events that lead to nothing (comments, edits, our
  own transitions) leave no trace in the ledger. Residual window: a crash between the decision and the
  entry makes a redelivery decide again; the service then refuses the second vote and says so.

Answers: 200 (handled, ignored or a duplicate) with ``{"status", "detail"}``; 202 when the work takes
longer than ``budget`` seconds (it goes on in the background; Jira must not wait); 401 bad signature; 400
a body that is not a JSON object; 503 when Temporal, the store or Jira failed transiently — nothing was
recorded, so Jira's redelivery tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import requests
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from jira import JIRA, JIRAError

from config.settings import Settings
from domain.approval import open_stage, votes_in_stage
from domain.durations import DurationError, parse_duration
from domain.identity import Actor, Person
from domain.requests import RequestStatus, RequestView, Verdict
from integrations.jira_tickets import (
    JiraError,
    JiraPermanentError,
    JiraTickets,
    JiraTransientError,
    StatusChange,
    build_jira,
    parse_status_change,
    translate_error,
    verify_webhook_signature,
)
from store import Store
from web.api import context_of
from web.bodies import JIRA_BODY_LIMIT, BodyTooLarge, read_body
from web.service import RequestService, ServiceError, Unavailable

log = logging.getLogger("grantflow.web.jira")

JIRA_WEBHOOK_PATH = "/jira/webhook"
CHANNEL = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
MARKER_KIND = "jira.webhook"
WEBHOOK_BUDGET = 8.0
"""Seconds a delivery is worked on before Jira gets its answer (the work then goes on regardless)."""
SEEN_LIMIT = 10_000
"""Identifiers remembered in memory; about 30 minutes of Jira's redelivery window at a busy site."""
ACCOUNT_TTL = 3600.0
"""How long an accountId → email answer from Jira is trusted (emails change, rarely)."""
CANDIDATE_LIMIT = 50
"""At most this many of a request's people are searched in Jira to identify one event's actor."""

P = ParamSpec("P")
T = TypeVar("T")


class _Transient(Exception):
    """Something failed that may work on redelivery: answer 503 and remember nothing."""


@dataclass(frozen=True, slots=True)
class _Account:
    """What Jira told of an accountId: its email (None when hidden, or not yet learned by search) and display
    name (None when Jira would not tell), and when it was asked."""

    email: str | None
    display_name: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # counted, refused, created, rejected, ignored, duplicate
    detail: str

    def body(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


def _jira(doing: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except (JIRAError, requests.RequestException) as exc:
        raise translate_error(exc, doing) from exc


class JiraEdge:
    """Handles Jira's webhooks for one service. ``connect`` builds the ``jira`` client (on first use, in a
    worker thread: the client talks to Jira when it is built)."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: RequestService,
        store: Store,
        connect: Callable[[], JIRA],
        budget: float = WEBHOOK_BUDGET,
    ) -> None:
        secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else ""
        if not secret:
            raise ValueError("the Jira edge needs settings.jira_webhook_secret")
        self.settings = settings
        self.service = service
        self.store = store
        self.budget = budget
        self._secret = secret
        self._connect = connect
        self._client: JIRA | None = None
        self._tickets: JiraTickets | None = None
        self._client_lock = threading.Lock()
        self._myself: str | None = None
        self._fields: dict[str, str] | None = None  # lower-cased field name or id -> field id
        self._accounts: dict[str, _Account] = {}  # accountId -> what Jira told of it
        self._by_account = {aid: email for email, aid in settings.jira_account_ids.items()}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}

    # ------------------------------------------------------------------ the client

    def _ensure_client(self) -> tuple[JIRA, JiraTickets]:
        with self._client_lock:
            if self._client is None or self._tickets is None:
                client = self._connect()
                self._tickets = JiraTickets(
                    client,
                    project_key=self.settings.jira_project,
                    issue_type=self.settings.jira_issue_type,
                    transition_names=self.settings.jira_transitions,
                    account_ids=self.settings.jira_account_ids,
                    adopted_projects=[self.settings.jira_intake_project],
                )
                self._client = client
            return self._client, self._tickets

    async def _run(self, fn: Callable[[], T]) -> T:
        """A blocking Jira step off the event loop; transient failures become :class:`_Transient`."""
        try:
            return await asyncio.to_thread(fn)
        except JiraTransientError as exc:
            raise _Transient(exc.message) from exc

    def close_client(self) -> None:
        with self._client_lock:
            client, self._client, self._tickets = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def aclose(self) -> None:
        """Let deliveries under way finish (up to ``budget`` seconds), then close the client."""
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.budget)
        await asyncio.to_thread(self.close_client)

    # ------------------------------------------------------------------ delivery

    async def receive(self, raw: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """Verify, deduplicate and handle one delivery; the HTTP status and JSON body to answer with."""
        if not verify_webhook_signature(self._secret, raw, headers.get(SIGNATURE_HEADER)):
            return 401, {
                "error": "unauthenticated",
                "detail": f"{SIGNATURE_HEADER} is missing or does not match the body; nothing was done",
            }
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return 400, {"error": "bad_input", "detail": "the body is not a JSON object; nothing was done"}
        identifier = headers.get(IDENTIFIER_HEADER) or "sha256:" + hashlib.sha256(raw).hexdigest()
        if identifier in self._seen:
            self._seen.move_to_end(identifier)
            return 200, Outcome("duplicate", f"delivery {identifier} was handled already").body()
        task = self._inflight.get(identifier)
        if task is None:
            task = asyncio.ensure_future(self._handle(payload, identifier))
            self._inflight[identifier] = task
            task.add_done_callback(lambda done: self._finished(identifier, done))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), timeout=self.budget)
        except TimeoutError:
            return 202, {"status": "accepted", "detail": "still being handled; Jira need not send it again"}
        except _Transient as exc:
            return 503, {"error": "unavailable", "detail": f"{exc}; nothing was recorded, send it again"}
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

    async def _handle(self, payload: dict[str, Any], identifier: str) -> Outcome:
        event = str(payload.get("webhookEvent") or "")
        if event not in ("jira:issue_updated", "jira:issue_created"):
            return Outcome("ignored", f"event {event or '(none)'} is not one grantflow acts on")
        if event == "jira:issue_created":
            return await self._intake(payload, identifier)
        return await self._status_change(payload, identifier)

    async def _by_ourselves(self, payload: Mapping[str, Any]) -> bool:
        """Whether grantflow's own API user made the event (the mirror of a decision already made)."""
        account_id = str((payload.get("user") or {}).get("accountId") or "")
        return bool(account_id) and account_id == await self._own_account_id()

    async def _own_account_id(self) -> str:
        if self._myself is None:

            def ask() -> str:
                client, _ = self._ensure_client()
                return str(_jira("asking Jira who grantflow is", client.myself)["accountId"])

            self._myself = await self._run(ask)
        return self._myself

    # ------------------------------------------------------------------ people

    async def person_for_account(
        self,
        account_id: str | None,
        candidates: Callable[[], Awaitable[Iterable[str]]] | None = None,
    ) -> Person | None:
        """The active directory person behind a Jira accountId: the email Jira shows for it, else the one of
        the ``candidates`` (emails, loaded only when needed) whose accountId user search finds to be this
        one, else the configured ``jira_account_ids`` mapping read backwards; None when none knows. Without
        candidates (intake) only the shown email and the mapping are used."""
        if not account_id:
            return None
        account = await self._account(account_id)
        email = account.email
        if not email and candidates is not None and account.display_name is not None:
            email = await self._search_candidates(account_id, account.display_name, await candidates())
            if email:
                self._accounts[account_id] = _Account(email, account.display_name, account.at)
        email = email or self._by_account.get(account_id)
        if not email:
            return None
        person = await asyncio.to_thread(self.store.find_person_by_email, email)
        return person if person is not None and person.active else None

    async def _account(self, account_id: str) -> _Account:
        """The accountId's shown email and display name (cached for ``ACCOUNT_TTL`` seconds); a display name
        of None when Jira would not tell (unknown, or not visible to the API user)."""
        cached = self._accounts.get(account_id)
        if cached is not None and time.monotonic() - cached.at < ACCOUNT_TTL:
            return cached

        def ask() -> _Account:
            client, _ = self._ensure_client()
            try:
                user = _jira(f"looking up Jira user {account_id}", client.user, account_id)
            except JiraPermanentError:
                return _Account(None, None, time.monotonic())
            email = str(user.raw.get("emailAddress") or "") or None
            return _Account(email, str(user.raw.get("displayName") or ""), time.monotonic())

        account = await self._run(ask)
        self._accounts[account_id] = account
        return account

    async def _search_candidates(
        self, account_id: str, display_name: str, emails: Iterable[str]
    ) -> str | None:
        """The email among ``emails`` whose accountId (by user search, cached by ``JiraTickets``) is this
        one, or None. The search matches display names as well as emails: an account whose display name
        could match the email searched is not taken on the search's word."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        if len(wanted) > CANDIDATE_LIMIT:
            log.warning(
                "%d people could have moved a ticket; only the first %d are searched in Jira",
                len(wanted),
                CANDIDATE_LIMIT,
            )
            wanted = wanted[:CANDIDATE_LIMIT]
        names = [display_name.lower(), *display_name.lower().split()]
        wanted = [e for e in wanted if not any(n.startswith(e) for n in names)]
        if not wanted:
            return None

        def search() -> str | None:
            _, tickets = self._ensure_client()
            for email in wanted:
                try:
                    found = tickets.account_id_for_email(email)
                except JiraPermanentError as exc:  # e.g. the API user may not browse users
                    log.warning("could not search Jira's users for %s: %s", email, exc.message)
                    return None
                if found == account_id:
                    return email
            return None

        return await self._run(search)

    async def _candidates(self, request_id: str) -> list[str]:
        """The emails of those who could move a request's ticket as a decision: its eligible approvers and
        its requester (who is told why they may not); none for a request the service does not know."""
        try:
            view = await self.service.show(request_id)
        except Unavailable as exc:
            raise _Transient(exc.detail) from exc
        except ServiceError as exc:
            if type(exc) is ServiceError:
                raise _Transient(exc.detail) from exc
            return []
        return [p.email for p in view.eligible_approvers] + [view.requester.email]

    # ------------------------------------------------------------------ markers (durable dedupe)

    async def _marker(self, subject: str, identifier: str) -> dict[str, Any] | None:
        key = f"jira-webhook:{identifier}"
        try:
            entries = await asyncio.to_thread(self.store.ledger_entries, subject=subject)
        except Exception as exc:
            raise _Transient(f"the store could not be read ({type(exc).__name__})") from exc
        return next((dict(e.data) for e in entries if e.idempotency_key == key), None)

    async def _mark(self, subject: str, identifier: str, actor: str, data: dict[str, Any]) -> None:
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

    # ------------------------------------------------------------------ decisions

    def _verdict(self, change: StatusChange) -> Verdict | None:
        def matches(configured: str) -> bool:
            wanted = configured.strip().lower()
            return bool(wanted) and wanted in (
                change.to_status_id.lower(),
                (change.to_status_name or "").lower(),
            )

        if matches(self.settings.jira_approve_status):
            return Verdict.APPROVE
        if matches(self.settings.jira_deny_status):
            return Verdict.DENY
        return None

    async def _status_change(self, payload: dict[str, Any], identifier: str) -> Outcome:
        try:
            change = parse_status_change(payload, identifier)
        except ValueError as exc:
            return Outcome("ignored", str(exc))
        if change is None:
            return Outcome("ignored", "no status change")
        verdict = self._verdict(change)
        if verdict is None:
            return Outcome("ignored", f"{change.issue_key} moved to {change.to_status_name}: not a decision")
        _, tickets = await self._run(self._ensure_client)
        request_id = tickets.grantflow_id(change.labels)
        if request_id is None:
            return Outcome("ignored", f"{change.issue_key} is not a grantflow ticket")
        if await self._by_ourselves(payload):
            return Outcome("ignored", "moved by grantflow's own Jira user")

        marker = await self._marker(request_id, identifier)
        if marker is not None:
            await self._follow_up(change, marker)
            return Outcome(
                "duplicate", f"delivery {identifier} was handled already ({marker.get('outcome')})"
            )

        who = change.actor_display_name or change.actor_account_id or "someone"
        person = await self.person_for_account(change.actor_account_id, lambda: self._candidates(request_id))
        counted: RequestView | None = None
        if person is None:
            sentence = (
                f"the Jira account of {who} is not linked to an active person in the directory; "
                "nothing was recorded"
            )
            await self._record_unknown(request_id, change, verdict, sentence)
            actor_name = f"jira user {change.actor_account_id}"
        else:
            actor = Actor(person=person.ref, channel=CHANNEL, channel_user_id=change.actor_account_id)
            actor_name = person.email
            reason = _comment_text(payload) if verdict is Verdict.DENY else ""
            try:
                counted = await self.service.decide(request_id, actor, verdict, reason)
                sentence = ""
            except Unavailable as exc:
                raise _Transient(exc.detail) from exc
            except ServiceError as exc:
                if type(exc) is ServiceError:  # unexpected: let Jira try again
                    raise _Transient(exc.detail) from exc
                sentence = exc.detail

        view = counted or await self._view(request_id)
        move_back = view is not None and open_stage(view) is not None
        word = "approval" if verdict is Verdict.APPROVE else "denial"
        back_to = change.from_status_name or "the status it came from"
        if counted is None:
            comment = (
                f"{who} moved this ticket to {change.to_status_name}, but grantflow refused the {word}: "
            )
            comment += sentence.rstrip(".") + "."
            comment += f" The ticket is back in {back_to}; the request did not change." if move_back else ""
            outcome = Outcome("refused", sentence)
        else:
            comment = ""
            if move_back:
                comment = f"grantflow counted the {word} of {actor_name} ({_tally(counted)}); the ticket is "
                comment += f"back in {back_to} until enough approvers have approved."
            outcome = Outcome(
                "counted", f"{verdict.value} by {actor_name} on {request_id}: {counted.status.value}"
            )
        if change.timestamp is not None:
            comment = comment and f"{comment} ({change.timestamp:%Y-%m-%d %H:%M:%S} UTC)"
        data = {
            "event": "jira:issue_updated",
            "issue": change.issue_key,
            "account_id": change.actor_account_id,
            "verdict": verdict.value,
            "outcome": outcome.status,
            "detail": outcome.detail,
            "move_back": move_back,
            "from_status": change.from_status_id,
            "to_status": change.to_status_id,
            "comment": comment,
        }
        await self._mark(request_id, identifier, actor_name, data)
        await self._follow_up(change, data)
        return outcome

    async def _view(self, request_id: str) -> RequestView | None:
        try:
            return await self.service.show(request_id)
        except ServiceError:
            return None

    async def _record_unknown(
        self, request_id: str, change: StatusChange, verdict: Verdict, sentence: str
    ) -> None:
        """The service records refusals of people it knows; this one it cannot know."""
        try:
            if await asyncio.to_thread(self.store.get_request, request_id) is None:
                return
            await asyncio.to_thread(
                self.store.append_ledger,
                kind="decision.refused",
                subject=request_id,
                actor=f"jira user {change.actor_account_id}",
                channel=CHANNEL,
                data={"verdict": verdict.value, "reason_given": "", "refusal": sentence},
                idempotency_key=f"jira-webhook:{change.webhook_id}:refused",
            )
        except Exception as exc:
            raise _Transient(f"the refused attempt could not be recorded ({type(exc).__name__})") from exc

    async def _follow_up(self, change: StatusChange, data: Mapping[str, Any]) -> None:
        """Bring the ticket in line after a decision attempt: move it back while the request still waits,
        and comment. Safe to repeat: a ticket no longer where the person put it is left alone, and
        ``JiraTickets.comment`` never posts the same text twice."""
        key, comment = change.issue_key, str(data.get("comment") or "")
        client, tickets = await self._run(self._ensure_client)
        moved = False
        if data.get("move_back"):
            try:
                moved = await self._run(lambda: self._move_back(client, tickets, change, comment))
            except JiraPermanentError as exc:
                log.warning("could not move %s back: %s", key, exc.message)
                comment += (
                    f" grantflow could not move the ticket back ({exc.message}): whatever its status says, "
                    "the request is still waiting for decisions."
                )
        if comment and not moved:
            await self._run(lambda: tickets.comment(key, comment))

    def _move_back(self, client: JIRA, tickets: JiraTickets, change: StatusChange, comment: str) -> bool:
        """Move the ticket from the status the person put it in back to the one it came from, with the
        comment, in one request. False (nothing done) when it is no longer where the person put it."""
        key = change.issue_key
        if tickets.status(key).id != change.to_status_id:
            return False
        offered = _jira(f"listing the transitions of {key}", client.transitions, key)
        reopen = next((n for n in self.settings.jira_transitions if n.lower() == "reopen"), "Reopen")
        chosen = next(
            (t for t in offered if str((t.get("to") or {}).get("id")) == change.from_status_id), None
        )
        chosen = chosen or next(
            (t for t in offered if str(t.get("name", "")).lower() == reopen.lower()), None
        )
        if chosen is None:
            names = ", ".join(str(t.get("name")) for t in offered) or "none"
            raise JiraPermanentError(
                f"no transition leads from {change.to_status_name} back to {change.from_status_name} "
                f"(offered: {names})"
            )
        _jira(
            f"moving {key} back",
            client.transition_issue,
            key,
            str(chosen["id"]),
            comment=comment or None,
        )
        return True

    # ------------------------------------------------------------------ intake

    async def _intake(self, payload: dict[str, Any], identifier: str) -> Outcome:
        issue = payload.get("issue") or {}
        fields = issue.get("fields") or {}
        key = str(issue.get("key") or "")
        project = str((fields.get("project") or {}).get("key") or "")
        intake = self.settings.jira_intake_project
        if not intake or not key or project.upper() != intake.upper():
            return Outcome("ignored", f"{key or 'the issue'} is not in the intake project")
        _, tickets = await self._run(self._ensure_client)
        labels = [str(label) for label in fields.get("labels") or []]
        if tickets.grantflow_id(labels) is not None:
            return Outcome("ignored", f"{key} already belongs to a grantflow request")
        if await self._by_ourselves(payload):
            return Outcome("ignored", "created by grantflow's own Jira user")
        subject = f"jira:{key}"
        marker = await self._marker(subject, identifier)
        if marker is not None:
            await self._intake_follow_up(key, marker)
            return Outcome(
                "duplicate", f"delivery {identifier} was handled already ({marker.get('outcome')})"
            )

        reporter = str((fields.get("reporter") or {}).get("accountId") or "")
        reporter = reporter or str((payload.get("user") or {}).get("accountId") or "")
        asked, problems = await self._read_intake(fields)
        # no request yet, so no candidates to search among: the shown email or the configured mapping
        person = await self.person_for_account(reporter)
        if person is None:
            problems.insert(
                0, "the reporter's Jira account is not linked to an active person in the directory"
            )
        request_id: str | None = None
        if problems:
            comment = "grantflow did not start a request: " + "; ".join(problems) + "."
            outcome = Outcome("rejected", "; ".join(problems))
        else:
            assert person is not None
            actor = Actor(person=person.ref, channel=CHANNEL, channel_user_id=reporter)
            try:
                created = await self.service.create(actor, **asked, jira_key=key)
            except Unavailable as exc:
                raise _Transient(exc.detail) from exc
            except ServiceError as exc:
                if type(exc) is ServiceError:
                    raise _Transient(exc.detail) from exc
                comment = f"grantflow did not start a request: {exc.detail.rstrip('.')}."
                outcome = Outcome("rejected", exc.detail)
            else:
                request_id = created.id
                comment = _created_comment(created)
                outcome = Outcome("created", f"request {created.id} is {created.status.value}")
        if request_id is None:
            comment += " Create a new issue with the fields filled in to try again."
        data = {
            "event": "jira:issue_created",
            "issue": key,
            "account_id": reporter,
            "outcome": outcome.status,
            "detail": outcome.detail,
            "request_id": request_id,
            "comment": comment,
        }
        await self._mark(subject, identifier, person.email if person else f"jira user {reporter}", data)
        await self._intake_follow_up(key, data)
        return outcome

    async def _read_intake(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The request an intake issue asks for, and every problem with its fields."""
        ids = await self._field_ids()
        configured = self.settings.jira_intake_fields
        values: dict[str, str] = {}
        problems: list[str] = []
        for name in ("resource", "role", "duration"):
            label = configured.get(name, name.title())
            field_id = ids.get(label.lower(), label)
            values[name] = _field_text(fields.get(field_id))
            if name != "role" and not values[name]:
                problems.append(f"the {label} field is empty")
        reason = _field_text(fields.get("description"))
        if not reason:
            problems.append("the description is empty: it is the reason, say why the access is needed")
        if values["duration"]:
            try:
                parse_duration(values["duration"])
            except DurationError as exc:
                problems.append(str(exc))
        if values["resource"]:
            try:
                self.service.policies.role(values["resource"], values["role"] or None)
            except LookupError as exc:
                problems.append(
                    str(exc.args[0] if exc.args else exc).replace("with --role", "in the Role field")
                )
        asked = {
            "resource": values["resource"],
            "role": values["role"] or None,
            "duration": values["duration"],
            "reason": reason,
        }
        return asked, problems

    async def _field_ids(self) -> dict[str, str]:
        """Jira's field names and ids, lower-cased, to the field id (read once)."""
        if self._fields is None:

            def ask() -> dict[str, str]:
                client, _ = self._ensure_client()
                listed = _jira("listing Jira's fields", client.fields)
                out: dict[str, str] = {}
                for f in listed:
                    out[str(f["name"]).lower()] = str(f["id"])
                    out[str(f["id"]).lower()] = str(f["id"])
                return out

            self._fields = await self._run(ask)
        return self._fields

    async def _intake_follow_up(self, key: str, data: Mapping[str, Any]) -> None:
        client, tickets = await self._run(self._ensure_client)
        request_id = data.get("request_id")
        if request_id:
            label = tickets.jira_label(str(request_id))

            def add_label() -> None:
                issue = _jira(f"reading the labels of {key}", client.issue, key, fields="labels")
                labels = list(issue.raw.get("fields", {}).get("labels") or [])
                if label not in labels:
                    _jira(f"labelling {key}", issue.update, fields={"labels": [*labels, label]})

            await self._run(add_label)
        comment = str(data.get("comment") or "")
        if comment:
            await self._run(lambda: tickets.comment(key, comment))


# ----------------------------------------------------------------------------------- helpers


def _tally(view: RequestView) -> str:
    stage = open_stage(view)
    if stage is None:
        return view.status.value
    approvals = {d.approver.id for d in votes_in_stage(view, stage) if d.verdict is Verdict.APPROVE}
    return f"{len(approvals)} of {view.policy.min_approvals} approvals"


def _created_comment(view: RequestView) -> str:
    head = f"grantflow request {view.id} is {view.status.value}"
    if view.status is RequestStatus.PENDING:
        who = ", ".join(p.email for p in view.eligible_approvers if p.id != view.requester.id)
        needs = view.policy.describe_approvers()
        return f"{head}: it needs {needs}" + (f" ({who} can approve)." if who else ".")
    if view.status is RequestStatus.ACTIVE:
        return f"{head}: access is granted" + (
            f" until {view.expires_at:%Y-%m-%d %H:%M} UTC." if view.expires_at else "."
        )
    return f"{head}" + (f": {view.failure_reason}" if view.failure_reason else "") + "."


def _comment_text(payload: Mapping[str, Any]) -> str:
    comment = payload.get("comment")
    return _field_text(comment.get("body")) if isinstance(comment, Mapping) else ""


def _field_text(value: Any) -> str:
    """A Jira field value as text: strings, numbers, options ``{"value"}``, named objects, lists (the
    first), and Atlassian Document Format (its text)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return _field_text(value[0]) if value else ""
    if isinstance(value, Mapping):
        if value.get("type") == "doc":
            return _adf_text(value).strip()
        for key in ("value", "name", "key"):
            if isinstance(value.get(key), str):
                return str(value[key]).strip()
    return ""


def _adf_text(node: Any) -> str:
    if isinstance(node, Mapping):
        if node.get("type") == "text":
            return str(node.get("text") or "")
        inner = "".join(_adf_text(c) for c in node.get("content") or [])
        return inner + ("\n" if node.get("type") in ("paragraph", "heading") else "")
    return ""


# ----------------------------------------------------------------------------------- HTTP and building

router = APIRouter(tags=["jira"])


@router.post(JIRA_WEBHOOK_PATH, include_in_schema=False)
async def jira_webhook(request: Request) -> JSONResponse:
    """Jira's webhooks: signed, deduplicated, answered quickly."""
    edge = context_of(request).jira
    if edge is None:
        return JSONResponse({"error": "not_found", "detail": "Jira is not configured"}, status_code=404)
    try:
        raw = await read_body(request, JIRA_BODY_LIMIT)
    except BodyTooLarge as exc:
        return JSONResponse({"error": "too_large", "detail": str(exc)}, status_code=413)
    status, body = await edge.receive(raw, request.headers)
    return JSONResponse(body, status_code=status)


def build_jira_edge(settings: Settings, service: RequestService, store: Store) -> JiraEdge | None:
    """The Jira edge when Jira is configured (URL, API user, API token and webhook secret); None otherwise.
    The client connects on the first delivery, so a Jira outage does not stop the web app starting."""
    token = settings.jira_api_token.get_secret_value() if settings.jira_api_token else ""
    if not (settings.jira_url and settings.jira_email and token):
        return None
    if settings.jira_webhook_secret is None or not settings.jira_webhook_secret.get_secret_value():
        log.warning("Jira is configured without GRANTFLOW_JIRA_WEBHOOK_SECRET: its webhooks are refused")
        return None

    def connect() -> JIRA:
        try:
            return build_jira(settings.jira_url, settings.jira_email, token, timeout=10.0)
        except JiraError as exc:
            if isinstance(exc, JiraTransientError):
                raise
            raise JiraTransientError(exc.message) from exc  # e.g. Jira down at start: try on redelivery

    return JiraEdge(settings=settings, service=service, store=store, connect=connect)
