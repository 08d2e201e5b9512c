"""``SlackDriver`` plays Slack's part towards grantflow: what Slack sends when a person clicks a button,
submits a modal or types a slash command, over signed HTTP or (through the stand-in) over Socket Mode.

Requests are signed as Slack's "Verifying requests from Slack" docs (and slack_sdk's ``SignatureVerifier``)
describe. The driver only builds and sends; it never changes the stand-in's messages itself.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from sandbox.slack.socket_mode import SocketEnvelope
from sandbox.slack.workspace import APP_ID, BOT_ID, TEAM_DOMAIN, TEAM_ID

if TYPE_CHECKING:
    from sandbox.slack.server import SlackStandIn

# Slack refuses a request signed more than five minutes ago (a replay); ``stale=True`` goes past that.
SIGNATURE_MAX_AGE = 60 * 5


class SlackDriver:
    """Plays Slack's part towards grantflow: what Slack sends when a person clicks, submits a modal or
    types a slash command. Over HTTP the requests are signed as Slack signs them
    (``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``, ``X-Slack-Request-Timestamp``);
    ``stale=True`` dates the request six minutes back, ``tampered=True`` changes the body after signing.

    With ``slack`` (the stand-in) attached, the driver behaves like Slack around its own messages: a click
    must name a button present in the stored message (``value`` and ``block_id`` are taken from it when
    not given), trigger ids and response URLs are issued by the stand-in (so ``views.open`` and
    ``respond()`` work), and a submission fills in the opened view's ``callback_id``/``private_metadata``.
    Payload builders are public, so the same events can go over Socket Mode:
    ``slack.deliver_socket("interactive", driver.block_actions_payload(...))``.
    """

    def __init__(
        self,
        signing_secret: str,
        target_url: str | None = None,
        *,
        slack: SlackStandIn | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._secret = signing_secret
        self._verifier = SignatureVerifier(signing_secret)
        self.target_url = target_url
        self.slack = slack
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ payloads

    def _user(self, user_id: str) -> dict[str, Any]:
        name = user_id.lower()
        if self.slack is not None:
            name = self.slack.workspace.user_handle(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}

    def _trigger(self, user_id: str) -> str:
        if self.slack is not None:
            return self.slack.issue_trigger_id(user_id)
        return f"{int(time.time())}.{secrets.token_hex(4)}.{secrets.token_hex(16)}"

    def _response_url(self, channel: str, message_ts: str | None, user_id: str) -> str:
        if self.slack is not None:
            return self.slack.issue_response_url(channel, message_ts, user_id)
        return (
            f"https://hooks.slack.com/actions/{TEAM_ID}/{secrets.randbelow(10**12)}/{secrets.token_hex(12)}"
        )

    def block_actions_payload(
        self,
        user_id: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        *,
        block_id: str | None = None,
        response_url: str | None = None,
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user_id`` clicks button ``action_id``."""
        message: dict[str, Any] | None = None
        button: dict[str, Any] | None = None
        if self.slack is not None:
            message = self.slack.message(channel, message_ts)
            message.pop("channel", None)
            message.pop("metadata", None)  # Slack leaves metadata out of interaction payloads
            for block in message.get("blocks", []):
                if block_id is not None and block.get("block_id") != block_id:
                    continue
                elements = block.get("elements", []) if block.get("type") == "actions" else []
                if block.get("type") == "section" and block.get("accessory"):
                    elements = [block["accessory"]]
                for el in elements:
                    if el.get("type") == "button" and el.get("action_id") == action_id:
                        button, block_id = el, block.get("block_id")
                        break
                if button is not None:
                    break
            if button is None:
                raise LookupError(f"message {message_ts} in {channel} has no button {action_id!r} to click")
            if value is None:
                value = button.get("value")
        if block_id is None:
            raise ValueError("block_id is needed when the driver has no stand-in to look the button up in")
        text = (button or {}).get("text") or {"type": "plain_text", "text": action_id, "emoji": True}
        action = {
            "action_id": action_id,
            "block_id": block_id,
            "text": text,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": self._trigger(user_id),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else channel},
            "state": {"values": {}},
            "response_url": response_url or self._response_url(channel, message_ts, user_id),
            "actions": [action],
        }
        if message is not None:
            payload["message"] = message
        return payload

    def view_submission_payload(
        self,
        user_id: str,
        *,
        view_id: str | None = None,
        values: Mapping[str, Mapping[str, str]] | None = None,
        callback_id: str | None = None,
        private_metadata: str | None = None,
    ) -> dict[str, Any]:
        """The ``view_submission`` payload for a modal: ``values`` maps block_id → action_id → typed text.
        With the stand-in attached the view is the one ``view_id`` names (default: the newest opened for
        ``user_id``) and every value must name one of its input blocks."""
        view: dict[str, Any] = {
            "id": view_id or f"V{secrets.token_hex(5).upper()}",
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": [],
            "private_metadata": private_metadata or "",
            "callback_id": callback_id or "",
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        if self.slack is not None:
            opened = [v for v in self.slack.views(user_id) if view_id in (None, v["id"])]
            if not opened:
                raise LookupError(f"no view {view_id or '(any)'} was opened for {user_id}")
            stored = opened[-1]
            stored.pop("user_id", None)
            view = {**stored, "hash": view["hash"]}
            if callback_id is not None:
                view["callback_id"] = callback_id
            if private_metadata is not None:
                view["private_metadata"] = private_metadata
        state: dict[str, dict[str, Any]] = {}
        blocks = view.get("blocks", [])
        inputs = {b.get("block_id"): b.get("element", {}) for b in blocks if b.get("type") == "input"}
        for block_id, element in inputs.items():
            if element.get("action_id") and element.get("initial_value") is not None:
                state.setdefault(str(block_id), {})[element["action_id"]] = {
                    "type": element.get("type"),
                    "value": element["initial_value"],
                }
        for block_id, by_action in (values or {}).items():
            for action_id, typed in by_action.items():
                if self.slack is not None:
                    element = inputs.get(block_id)
                    if element is None or element.get("action_id") != action_id:
                        raise LookupError(f"the view has no input {block_id}/{action_id}")
                    kind = element.get("type", "plain_text_input")
                else:
                    kind = "plain_text_input"
                state.setdefault(block_id, {})[action_id] = {"type": kind, "value": typed}
        view["state"] = {"values": state}
        return {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "trigger_id": self._trigger(user_id),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def slash_command_payload(
        self, user_id: str, command: str = "/access", text: str = "", *, channel_id: str | None = None
    ) -> dict[str, str]:
        """The fields of a slash command (form fields over HTTP, the payload over Socket Mode)."""
        if channel_id is None:
            channel_id = self.slack.dm_channel(user_id) if self.slack is not None else "D00000000"
        user = self._user(user_id)
        return {
            "token": "sandbox-verification-token",
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": "directmessage" if channel_id.startswith("D") else channel_id,
            "user_id": user_id,
            "user_name": user["name"],
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url(channel_id, None, user_id),
            "trigger_id": self._trigger(user_id),
        }

    # ------------------------------------------------------------------ signed HTTP

    def signed_headers(self, body: str, *, timestamp: int | None = None) -> dict[str, str]:
        """Slack's request headers for ``body`` (form-encoded), signed with the signing secret."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._verifier.generate_signature(timestamp=ts, body=body)
        assert signature is not None  # None only without a secret
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    def post_signed(
        self, body: str, *, url: str | None = None, stale: bool = False, tampered: bool = False
    ) -> httpx.Response:
        target = url or self.target_url
        if target is None:
            raise ValueError("no target_url: give one to SlackDriver or to this call")
        timestamp = int(time.time()) - (SIGNATURE_MAX_AGE + 60 if stale else 0)
        headers = self.signed_headers(body, timestamp=timestamp)
        if tampered:
            body += "&tampered=1"  # signed before the change: the signature no longer matches
        return self._http.post(target, content=body.encode(), headers=headers)

    def click_button(
        self,
        user_id: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        *,
        block_id: str | None = None,
        response_url: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        payload = self.block_actions_payload(
            user_id, channel, message_ts, action_id, value, block_id=block_id, response_url=response_url
        )
        return self.post_signed(urlencode({"payload": json.dumps(payload)}), stale=stale, tampered=tampered)

    def submit_view(
        self,
        user_id: str,
        *,
        view_id: str | None = None,
        values: Mapping[str, Mapping[str, str]] | None = None,
        callback_id: str | None = None,
        private_metadata: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        payload = self.view_submission_payload(
            user_id,
            view_id=view_id,
            values=values,
            callback_id=callback_id,
            private_metadata=private_metadata,
        )
        return self.post_signed(urlencode({"payload": json.dumps(payload)}), stale=stale, tampered=tampered)

    def slash_command(
        self,
        user_id: str,
        command: str = "/access",
        text: str = "",
        *,
        channel_id: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        fields = self.slash_command_payload(user_id, command, text, channel_id=channel_id)
        return self.post_signed(urlencode(fields), stale=stale, tampered=tampered)

    # ------------------------------------------------------------------ Socket Mode

    def deliver_socket(
        self, envelope_type: str, payload: Mapping[str, Any], *, timeout: float = 5.0
    ) -> SocketEnvelope:
        """Send an event over the attached stand-in's Socket Mode connection (see
        :meth:`SlackStandIn.deliver_socket`)."""
        if self.slack is None:
            raise RuntimeError("Socket Mode needs the driver to be attached to a SlackStandIn (slack=…)")
        return self.slack.deliver_socket(envelope_type, payload, timeout=timeout)
