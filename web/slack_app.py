"""Slack as an edge: approvers decide with the buttons of grantflow's Slack messages, engineers ask for
access with a slash command. A Bolt ``AsyncApp`` serves ``POST /slack/events`` (through Bolt's Starlette
adapter, inside the FastAPI app; the route is :mod:`web.slack_router`) and, with an app-level token,
Socket Mode (started and stopped by :func:`web.app.serve`); both deliver to the same handlers.

Who is acting: Bolt checks Slack's request signature (``X-Slack-Signature`` over the timestamp and the raw
body; older than five minutes or altered → 401, and no handler runs; a second copy of an interaction
inside that window — a replay — → 409, and no handler runs either; Socket Mode needs no signature: the
WebSocket was opened with the app token). The Slack user is then mapped to a directory person by email
(``users.info`` → email → the store); a Slack account that is not an active person in the directory is
told so and nothing is decided. The directory id, never the email, is what the decision carries.

Handlers stay thin: they acknowledge at once (Slack gives three seconds), map the person, call
:class:`~web.service.RequestService` and tell the person the outcome in an ephemeral message (through the
interaction's ``response_url``, or ``chat.postEphemeral`` after a modal). Refusals are the service's: it
records them in the ledger and its sentence is shown as is. Parsing the slash command's text is the pure
function :func:`parse_access_command`.

- ``grantflow_approve`` (button ``value`` ``"<request id>"`` or ``"<request id>|<stage>"``, read by
  ``domain.channels.parse_button_value``, which the messages' writer shares) → approve.
- ``grantflow_deny`` → the deny modal (``templates/slack/deny_modal.json.j2``; its ``private_metadata``
  carries the request id, the stage and the message clicked); its submission (``DENY_CALLBACK_ID``) →
  deny with the typed reason. Problems found before the modal closes are shown inline on the reason field.
- ``settings.slack_access_command`` (``/access``): ``/access <resource> [<role>] <duration> <reason…>``.
- the campaign digests' Keep / Revoke buttons: :mod:`web.slack_campaign`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import (
    AsyncSlackRequestHandler,
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.responses import Response

from configuration.settings import Settings
from domain.approval import Stage, approvals_counted, open_stage
from domain.channels import parse_button_value
from domain.durations import format_duration
from domain.identity import Actor
from domain.requests import RequestStatus, RequestView, Verdict
from integrations.slack import (
    APPROVE_ACTION,
    DENY_ACTION,
    DENY_CALLBACK_ID,
    DENY_REASON_ACTION,
    DENY_REASON_BLOCK,
    OPEN_ACTION,
    MessageRef,
    SlackChannel,
    SlackError,
    build_slack_client,
    render_view,
)
from integrations.vendor_setup import slack_api_base
from store import Store
from web.bodies import SLACK_BODY_LIMIT, BodyTooLarge, read_body
from web.service import MAX_REASON, BadInput, RequestService, ServiceError
from web.slack_campaign import CampaignActions

log = logging.getLogger("grantflow.web.slack")

SLACK_EVENTS_PATH = "/slack/events"
CHANNEL = "slack"

REPLAY_WINDOW_SECONDS = 5 * 60 + 60
"""How long a delivered interaction is remembered: slack_sdk's ``SignatureVerifier`` refuses a timestamp
more than five minutes off (either way), so an older copy of a request never passes the signature check;
a minute more covers clock skew."""
MAX_REMEMBERED = 100_000

# ----------------------------------------------------------------------------------- pure parsing

_DURATION_LIKE = re.compile(r"^(?:[-+]?\d|P(?:T?\d))", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AccessCommand:
    """What ``/access <resource> [<role>] <duration> <reason…>`` asks for (not yet validated against the
    policies: the service does that)."""

    resource: str
    role: str | None
    duration: str
    reason: str


class CommandError(ValueError):
    """The slash command's text cannot be read; ``str()`` says what is wrong, followed by the usage."""


def usage(command: str = "/access") -> str:
    return (
        f"Usage: `{command} <resource> [<role>] <duration> <reason…>`, "
        f"e.g. `{command} pg-prod admin 2h INC-1234 fix the orders table`"
    )


def parse_access_command(text: str, command: str = "/access") -> AccessCommand:
    """Read ``<resource> [<role>] <duration> <reason…>``. The role may be left out: the word after the
    resource is the duration when it looks like one (starts with a digit, a sign or ISO 8601's ``P``),
    else the role. The reason is the rest of the text, as typed. Raises :class:`CommandError`."""
    words = text.split()
    if not words or (len(words) == 1 and words[0].lower() in ("help", "-h", "--help", "?")):
        raise CommandError(f"Say what you need. {usage(command)}")
    resource = words[0]
    if len(words) < 2:
        raise CommandError(f"The duration and the reason are missing. {usage(command)}")
    role: str | None
    if _DURATION_LIKE.match(words[1]):
        role, duration, rest_at = None, words[1], 2
    else:
        if len(words) < 3:
            raise CommandError(
                f"The duration is missing after the role {words[1]!r} (30m, 2h, 1d …). {usage(command)}"
            )
        role, duration, rest_at = words[1], words[2], 3
        if not _DURATION_LIKE.match(duration):
            raise CommandError(
                f"{duration!r} is not a duration: give one such as 30m, 2h or 1d after the role. "
                f"{usage(command)}"
            )
    reason = _rest_after(text, rest_at).strip()
    if not reason:
        raise CommandError(
            f"The reason is missing: say why you need the access (a ticket or incident id). {usage(command)}"
        )
    return AccessCommand(resource=resource, role=role, duration=duration, reason=reason)


def _rest_after(text: str, words: int) -> str:
    """``text`` after its first ``words`` whitespace-separated words, spacing and newlines kept."""
    match = re.match(r"\s*(?:\S+\s+){" + str(words) + "}", text)
    return text[match.end() :] if match else ""


# ----------------------------------------------------------------------------------- the edge


class NotInDirectory(Exception):
    """The Slack user cannot be mapped to an active directory person; ``str()`` is the sentence to show.
    ``refusal`` is False when Slack could not be asked: that is an outage, not an attempt to record."""

    def __init__(self, sentence: str, *, refusal: bool = True) -> None:
        super().__init__(sentence)
        self.refusal = refusal


class SlackEdge:
    """The Bolt app and its handlers, bound to one service. ``handler`` serves HTTP (None without a
    signing secret: Socket Mode only); ``start_socket_mode``/``stop_socket_mode`` run Socket Mode."""

    def __init__(
        self,
        *,
        service: RequestService,
        store: Store,
        client: AsyncWebClient,
        signing_secret: str | None,
        app_token: str | None = None,
        command: str = "/access",
    ) -> None:
        self.service = service
        self.store = store
        self.client = client
        self.channel = SlackChannel(client)
        self.command = command
        self.app_token = app_token
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret or "",
            logger=logging.getLogger("grantflow.web.slack.bolt"),
            # without a signing secret every HTTP request would fail verification; Socket Mode skips it
            request_verification_enabled=bool(signing_secret),
        )
        self.handler = AsyncSlackRequestHandler(self.app) if signing_secret else None
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._delivered: OrderedDict[str, float] = OrderedDict()  # interaction id -> when it arrived
        self._socket: AsyncSocketModeHandler | None = None
        self.app.action(APPROVE_ACTION)(self._on_approve)
        self.app.action(DENY_ACTION)(self._on_deny_click)
        self.app.action(OPEN_ACTION)(self._on_open_link)
        self.app.view(DENY_CALLBACK_ID)(self._on_deny_submitted)
        self.app.command(command)(self._on_command)
        self.campaign_actions = CampaignActions(self, NotInDirectory)  # campaign digests' buttons

    # ------------------------------------------------------------------ transports

    async def handle_http(self, request: Request) -> Response:
        """A bounded body, its signature checked over the raw bytes *before* anything parses it (Bolt's
        Starlette adapter decodes and parses first, so garbage would answer 500), then Bolt."""
        if self.handler is None or self._verifier is None:
            return JSONResponse(
                {
                    "error": "not_found",
                    "detail": "Slack events over HTTP are off: set GRANTFLOW_SLACK_SIGNING_SECRET",
                },
                status_code=404,
            )
        try:
            body = await read_body(request, SLACK_BODY_LIMIT)
        except BodyTooLarge as exc:
            return JSONResponse({"error": "too_large", "detail": str(exc)}, status_code=413)
        # slack_sdk's SignatureVerifier, as Bolt uses it: v0 HMAC of "v0:{timestamp}:{body}", 5 minutes
        try:
            signed = self._verifier.is_valid(
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
            )
        except UnicodeDecodeError:  # it decodes the body to sign it: no Slack request is anything but UTF-8
            return JSONResponse({"error": "bad_request", "detail": "the body is not UTF-8"}, status_code=400)
        if not signed:
            return JSONResponse(
                {
                    "error": "unauthenticated",
                    "detail": "X-Slack-Signature is missing, older than five minutes or does not match "
                    "the body; nothing was done",
                },
                status_code=401,
            )
        problem = request_problem(body, request.headers.get("content-type") or "")
        if problem is not None:  # signed, but not what Slack sends: Bolt would fail on it (a 500)
            return JSONResponse(
                {"error": "bad_request", "detail": f"{problem}; nothing was done"}, status_code=400
            )
        replayed = self._seen_before(body, request.headers.get("x-slack-signature") or "")
        if replayed is not None:
            # Slack never sends an interaction twice: a second copy inside the signing window is a replay
            # of a captured request, and must not act (nor be recorded as its person's attempt) again.
            return JSONResponse(
                {
                    "error": "replayed",
                    "detail": f"this Slack request ({replayed}) was delivered already; nothing was done",
                },
                status_code=409,
            )
        try:
            bolt_request = to_async_bolt_request(request, body)
        except (UnicodeDecodeError, ValueError):
            return JSONResponse(
                {"error": "bad_request", "detail": "the body is not a Slack payload"}, status_code=400
            )
        answer = await self.app.async_dispatch(bolt_request)
        if answer.status == 404:  # Bolt's bare "unhandled request": no listener for this action or type
            return JSONResponse(
                {"error": "not_found", "detail": "grantflow has no handler for this Slack request"},
                status_code=404,
            )
        return to_starlette_response(answer)

    def _seen_before(self, body: bytes, signature: str) -> str | None:
        """The id of this interaction when it was delivered before within the signing window, else None
        (and it is remembered). The id is Slack's ``trigger_id`` (unique to each click, submission and slash
        command), or the signature for a request without one. Remembered in this process: a replay sent
        to another instance of the web app is not caught here."""
        interaction = _interaction_id(body) or f"signature {signature}"
        now = time.monotonic()
        while self._delivered and (
            len(self._delivered) >= MAX_REMEMBERED
            or next(iter(self._delivered.values())) < now - REPLAY_WINDOW_SECONDS
        ):
            self._delivered.popitem(last=False)
        if interaction in self._delivered:
            return interaction
        self._delivered[interaction] = now
        return None

    async def start_socket_mode(self) -> None:
        """Connect over Socket Mode (needs the ``xapp-`` token); returns once connected."""
        if self.app_token is None:
            raise RuntimeError("Socket Mode needs an app-level token (GRANTFLOW_SLACK_APP_TOKEN)")
        if self._socket is None:
            self._socket = AsyncSocketModeHandler(self.app, self.app_token, web_client=self.client)
            await self._socket.connect_async()

    async def stop_socket_mode(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close_async()

    async def aclose(self) -> None:
        await self.stop_socket_mode()
        await self.channel.aclose()

    # ------------------------------------------------------------------ who is acting

    async def actor(self, user_id: str) -> Actor:
        """The directory person behind a Slack user, as an :class:`Actor` on the Slack channel.
        Raises :class:`NotInDirectory` with the sentence to show."""
        try:
            email = await self.channel.email_for_user(user_id)
        except SlackError as exc:
            raise NotInDirectory(
                f"grantflow could not look up your Slack account ({exc.message}); nothing was recorded, "
                "try again in a moment",
                refusal=False,
            ) from exc
        if not email:
            raise NotInDirectory(
                "your Slack account has no email address grantflow can see, so it cannot be matched to "
                "the directory; nothing was recorded"
            )
        person = await asyncio.to_thread(self.store.find_person_by_email, email)
        if person is None:
            raise NotInDirectory(
                f"your Slack account ({email}) is not in the directory; nothing was recorded"
            )
        if not person.active:
            raise NotInDirectory(
                f"your Slack account ({email}) is not an active person in the directory; nothing was recorded"
            )
        return Actor(person=person.ref, channel=CHANNEL, channel_user_id=user_id)

    async def _record_unknown(
        self, request_id: str, user_id: str, verdict: Verdict, unknown: NotInDirectory
    ) -> None:
        """An attempt by someone outside the directory is a refused attempt too: auditors see it."""
        if not unknown.refusal:
            return
        sentence = str(unknown)
        try:
            if not request_id or await asyncio.to_thread(self.store.get_request, request_id) is None:
                return
            await asyncio.to_thread(
                self.store.append_ledger,
                kind="decision.refused",
                subject=request_id,
                actor=f"slack user {user_id}",
                channel=CHANNEL,
                data={"verdict": verdict.value, "reason_given": "", "refusal": sentence},
            )
        except Exception:
            log.exception("could not record the refused attempt of Slack user %s on %s", user_id, request_id)

    # ------------------------------------------------------------------ telling people

    async def _tell(self, respond: AsyncRespond | None, body: dict[str, Any], text: str) -> None:
        """An ephemeral message to whoever acted: through the interaction's response URL when there is
        one, else ``chat.postEphemeral`` in the conversation the click came from (or their DM)."""
        user_id = str((body.get("user") or {}).get("id") or body.get("user_id") or "")
        try:
            if respond is not None and respond.response_url:
                await respond(text=text, response_type="ephemeral", replace_original=False)
                return
            channel = _conversation_of(body) or await self.channel.open_dm(user_id)
            await self.channel.post_ephemeral(channel, user_id, text)
        except Exception:  # best effort: the outcome is in the request and the ledger either way
            log.exception("could not tell Slack user %s: %s", user_id, text)

    # ------------------------------------------------------------------ handlers

    async def _on_open_link(self, ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL, grantflow has nothing to do

    async def _on_approve(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        request_id, stage = parse_button_value(_action_value(body))
        user_id = str(body["user"]["id"])
        try:
            actor = await self.actor(user_id)
        except NotInDirectory as exc:
            await self._record_unknown(request_id, user_id, Verdict.APPROVE, exc)
            await self._tell(respond, body, str(exc))
            return
        try:
            view = await self.service.decide(request_id, actor, Verdict.APPROVE, "", stage=stage)
        except ServiceError as exc:
            await self._tell(respond, body, _refusal(exc))
            return
        except Exception as exc:
            log.exception("approving %s from Slack failed", request_id)
            await self._tell(
                respond, body, f"grantflow could not record your approval ({type(exc).__name__})"
            )
            return
        await self._tell(respond, body, decided_sentence(view, actor, Verdict.APPROVE))

    async def _on_deny_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        request_id, stage = parse_button_value(_action_value(body))
        user_id = str(body["user"]["id"])
        try:
            await self.actor(user_id)
        except NotInDirectory as exc:
            await self._record_unknown(request_id, user_id, Verdict.DENY, exc)
            await self._tell(respond, body, str(exc))
            return
        try:
            view = await self.service.show(request_id)
        except ServiceError as exc:
            await self._tell(respond, body, _refusal(exc))
            return
        open_now = open_stage(view)
        if open_now is None:
            await self._tell(
                respond, body, f"request {view.id} is {view.status.value}; there is nothing to deny"
            )
            return
        container = body.get("container") or {}
        origin = None
        if container.get("channel_id") and container.get("message_ts"):
            origin = MessageRef(channel=str(container["channel_id"]), ts=str(container["message_ts"]))
        modal = render_view("deny_modal", view=view, origin=origin)
        meta = json.loads(modal["private_metadata"])
        # the stage the person saw: a deny meant for the request must not land on a later extension
        meta["stage"] = stage or open_now.value
        modal["private_metadata"] = json.dumps(meta, separators=(",", ":"))
        try:
            await self.channel.open_modal(str(body["trigger_id"]), modal)
        except SlackError as exc:
            log.warning("could not open the deny modal for %s: %s", request_id, exc)
            await self._tell(
                respond, body, f"grantflow could not open the deny form ({exc.message}); click Deny again"
            )

    async def _on_deny_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = _modal_metadata(view.get("private_metadata"))
        request_id, stage = meta.get("request_id", ""), meta.get("stage")
        reason = _typed_reason(view).strip()
        user_id = str(body["user"]["id"])
        if not reason:
            await ack(response_action="errors", errors={DENY_REASON_BLOCK: "Say why: the requester sees it"})
            return
        if len(reason) > MAX_REASON:
            await ack(
                response_action="errors",
                errors={DENY_REASON_BLOCK: f"Keep the reason under {MAX_REASON} characters"},
            )
            return
        try:
            actor = await self.actor(user_id)
        except NotInDirectory as exc:
            await self._record_unknown(request_id, user_id, Verdict.DENY, exc)
            await ack(response_action="errors", errors={DENY_REASON_BLOCK: _clip(str(exc), 150)})
            return
        await ack()  # closes the modal; the decision may take longer than Slack's three seconds
        where = {"user": {"id": user_id}, "channel_id": meta.get("channel")}
        try:
            decided = await self.service.decide(request_id, actor, Verdict.DENY, reason, stage=stage)
        except ServiceError as exc:
            await self._tell(None, where, _refusal(exc))
            return
        except Exception as exc:
            log.exception("denying %s from Slack failed", request_id)
            await self._tell(None, where, f"grantflow could not record your denial ({type(exc).__name__})")
            return
        await self._tell(None, where, decided_sentence(decided, actor, Verdict.DENY))

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        name = str(command.get("command") or self.command)
        try:
            asked = parse_access_command(str(command.get("text") or ""), name)
        except CommandError as exc:
            await ack(text=str(exc), response_type="ephemeral")
            return
        if asked.role is None and (several := self._roles_if_several(asked.resource)):
            await ack(
                text=f"{asked.resource} has several roles ({', '.join(several)}): name one after the "
                f"resource. {usage(name)}",
                response_type="ephemeral",
            )
            return
        access = f"{asked.resource}{' ' + asked.role if asked.role else ''}"
        await ack(text=f"Asking for {access} for {asked.duration}…", response_type="ephemeral")
        body = {"user_id": command.get("user_id"), "channel_id": command.get("channel_id")}
        try:
            actor = await self.actor(str(command["user_id"]))
        except NotInDirectory as exc:
            await self._tell(respond, body, str(exc))
            return
        try:
            created = await self.service.create(
                actor,
                resource=asked.resource,
                role=asked.role,
                duration=asked.duration,
                reason=asked.reason,
            )
        except BadInput as exc:
            await self._tell(respond, body, f"{exc.detail}; nothing was requested. {usage(name)}")
            return
        except ServiceError as exc:
            await self._tell(respond, body, f"{exc.detail}; nothing was requested")
            return
        except Exception as exc:
            log.exception("creating a request from Slack failed")
            await self._tell(respond, body, f"grantflow could not create the request ({type(exc).__name__})")
            return
        await self._tell(respond, body, created_sentence(created))

    def _roles_if_several(self, resource: str) -> list[str]:
        found = self.service.policies.resources.get(resource)
        return sorted(found.roles) if found is not None and len(found.roles) > 1 else []


# ----------------------------------------------------------------------------------- sentences


def _refusal(exc: ServiceError) -> str:
    return exc.detail if exc.detail.endswith(".") else f"{exc.detail}."


def decided_sentence(view: RequestView, actor: Actor, verdict: Verdict) -> str:
    """What the approver is told once their vote is in."""
    done = "approved" if verdict is Verdict.APPROVE else "denied"
    head = f"You {done} request {view.id} ({view.requester.email}: {view.resource} / {view.role})"
    if view.status is RequestStatus.PENDING:
        stage = open_stage(view)
        if stage is not None:
            counted = approvals_counted(view, stage)
            return f"{head}: {counted} of {view.policy.min_approvals} approvals so far."
        return f"{head}."
    if view.status is RequestStatus.ACTIVE and view.expires_at is not None and verdict is Verdict.APPROVE:
        return f"{head}: access is ACTIVE until {view.expires_at:%Y-%m-%d %H:%M} UTC."
    tail = f" ({view.failure_reason})" if view.failure_reason else ""
    return f"{head}: it is now {view.status.value}{tail}."


def created_sentence(view: RequestView) -> str:
    """What a requester is told after ``/access``: the id, and who must approve."""
    head = (
        f"Request `{view.id}` for {view.resource} / {view.role} "
        f"({format_duration(view.requested_duration)}) is {view.status.value}"
    )
    if view.status is RequestStatus.ACTIVE:
        until = f" until {view.expires_at:%Y-%m-%d %H:%M} UTC" if view.expires_at else ""
        how = "approved automatically" if view.auto_approved else "granted"
        return f"{head}: {how}{until}."
    if view.status is not RequestStatus.PENDING:
        tail = f": {view.failure_reason}" if view.failure_reason else ""
        return f"{head}{tail}."
    needs = view.policy.describe_approvers()
    if not view.approvers_resolved:
        return f"{head}: it needs {needs}."
    who = ", ".join(p.email for p in view.eligible_approvers if p.id != view.requester.id)
    return f"{head}: it needs {needs}; " + (
        f"they can approve: {who}." if who else "nobody can approve it yet."
    )


# ----------------------------------------------------------------------------------- payload helpers


_HANDLED_INTERACTIONS = frozenset({"block_actions", "view_submission"})


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
        return None
    return doc if isinstance(doc, dict) else None


def request_problem(body: bytes, content_type: str) -> str | None:
    """Why a signed body is not a request Slack sends grantflow, or None when it is one. Slack's shapes
    (api.slack.com "Handling user interaction" and "Slash commands"): an interaction is a form field
    ``payload`` holding a JSON object with a ``type``, a ``user`` object with an ``id`` and, for
    ``block_actions``, a non-empty list of ``actions`` each naming its ``action_id`` (``view_submission``:
    a ``view`` object with its ``type`` and ``callback_id``); a slash command is form fields with
    ``command`` and ``user_id``; the Events API posts a JSON object with a ``type``. Checked before Bolt,
    which assumes these shapes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    # Bolt reads a JSON body as the Events API, anything else as a form (slack_bolt.request.internals)
    if content_type.startswith("application/json") or text.startswith("{"):
        event = _json_object(text)
        if event is None or not isinstance(event.get("type"), str):
            return "the JSON body is not a Slack event (an object with a type)"
        return None
    fields = parse_qs(text, keep_blank_values=True)
    if "payload" in fields:
        payload = _json_object(fields["payload"][0])
        if payload is None:
            return "payload is not a JSON object (or is nested too deeply)"
        kind = payload.get("type")
        if kind not in _HANDLED_INTERACTIONS:
            return f"interactions of type {str(kind)[:40]!r} are not ones grantflow handles"
        user = payload.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
            return "payload.user.id is missing: Slack names who acted"
        actions = payload.get("actions")
        if kind == "block_actions" and not (
            isinstance(actions, list)
            and actions
            and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
        ):
            return "payload.actions is not a list of actions with their action_id"
        view = payload.get("view")
        if kind == "view_submission" and not (
            isinstance(view, dict)
            and isinstance(view.get("type"), str)
            and isinstance(view.get("callback_id"), str)
        ):
            return "payload.view is not a view with its type and callback_id: a submission carries its view"
        return None
    if "command" in fields:
        if not (fields.get("user_id") or [""])[0]:
            return "the slash command names no user_id"
        return None
    return "the body is neither an interaction (payload=…) nor a slash command"


def _interaction_id(body: bytes) -> str | None:
    """``trigger_id`` of a form-encoded Slack request: a field of a slash command, inside ``payload`` (JSON)
    for clicks and modal submissions; None when there is none or the body cannot be read."""
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
        trigger = (fields.get("trigger_id") or [""])[0]
        if not trigger and fields.get("payload"):
            payload = json.loads(fields["payload"][0])
            trigger = str(payload.get("trigger_id") or "") if isinstance(payload, dict) else ""
    except (UnicodeDecodeError, ValueError):
        return None
    return f"trigger_id {trigger}" if trigger else None


def _action_value(body: dict[str, Any]) -> str:
    actions = body.get("actions") or [{}]
    return str(actions[0].get("value") or "")


def _conversation_of(body: dict[str, Any]) -> str | None:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id") or body.get("channel_id")
    return str(channel) if channel else None


def _modal_metadata(raw: Any) -> dict[str, Any]:
    """The deny modal's ``private_metadata``: JSON with ``request_id`` (and ``stage``, ``channel``, ``ts``);
    a bare request id is accepted too."""
    text = str(raw or "").strip()
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if isinstance(meta, dict):
        out = {k: str(v) for k, v in meta.items() if v is not None}
        if out.get("stage") not in {s.value for s in Stage}:
            out.pop("stage", None)
        return out
    request_id, stage = parse_button_value(text)
    return {"request_id": request_id, **({"stage": stage} if stage else {})}


def _typed_reason(view: dict[str, Any]) -> str:
    found: Any = view
    for key in ("state", "values", DENY_REASON_BLOCK, DENY_REASON_ACTION, "value"):
        found = found.get(key) if isinstance(found, dict) else None  # a submission of another shape: ""
    return found if isinstance(found, str) else ""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------- building


def build_slack_edge(settings: Settings, service: RequestService, store: Store) -> SlackEdge | None:
    """The Slack edge when Slack is configured (a bot token, and a signing secret or an app token for
    Socket Mode); None otherwise."""
    if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
        return None
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    if not secret and not app_token:
        log.warning(
            "Slack has a bot token but neither a signing secret (HTTP) nor an app token (Socket Mode): "
            "buttons and %s are off",
            settings.slack_access_command,
        )
        return None
    client = build_slack_client(
        settings.slack_bot_token.get_secret_value(), slack_api_base(settings.slack_api_url), max_retries=2
    )
    return SlackEdge(
        service=service,
        store=store,
        client=client,
        signing_secret=secret or None,
        app_token=app_token or None,
        command=settings.slack_access_command,
    )
