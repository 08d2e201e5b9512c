"""The sandbox workspace: who is in it (users, the bot), its channels and DMs with their messages, what
Slack issued during interactions (trigger ids, response URLs, opened views), and keeping the durable part
in a state file.

One re-entrant lock guards all of it: HTTP handlers run on the server's thread, the stand-in's helpers on
the caller's. Users, channels, DMs and messages are kept in ``state_file`` (rewritten after every change,
loaded back on start); calls, ephemerals, views, triggers and response URLs never are. This module never
answers HTTP.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.slack.api import SlackFail

DEFAULT_BOT_TOKEN = "xoxb-sandbox-0000-grantflow"
# The bot scopes the stand-in's token has unless told otherwise (grantflow's manifest asks for these).
# Slack names a token's scopes in the ``X-OAuth-Scopes`` header of every Web API answer ("Working with
# scopes", https://api.slack.com/docs/oauth-scopes); grantflow's start-up check reads it from auth.test.
DEFAULT_BOT_SCOPES = (
    "chat:write",
    "chat:write.public",
    "commands",
    "im:history",
    "im:write",
    "users:read",
    "users:read.email",
)
DEFAULT_APP_TOKEN = "xapp-1-A0GRANTFLOW-sandbox"
DEFAULT_SIGNING_SECRET = "sandbox-signing-secret"
TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "grantflow-sandbox"
TEAM_NAME = "grantflow sandbox"
APP_ID = "A0GRANTFLOW"
BOT_ID = "B0GRANTFLOW"
BOT_USER_ID = "U0GRANTFLOW"
BOT_NAME = "grantflow"
STATE_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def ts_to_micros(ts: str) -> int:
    whole, _, frac = ts.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(ts)
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def micros_to_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def user_record(
    user_id: str, email: str, name: str, *, deleted: bool = False, bot: bool = False
) -> dict[str, Any]:
    """A user as ``users.info`` answers it."""
    handle = email.split("@", 1)[0]
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": handle,
        "deleted": deleted,
        "real_name": name,
        "tz": "Europe/London",
        "is_bot": bot,
        "is_app_user": False,
        "profile": {
            "email": email,
            "real_name": name,
            "display_name": handle,
            "real_name_normalized": name,
            "display_name_normalized": handle,
            "team": TEAM_ID,
        },
    }


class Workspace:
    """The workspace's state. Callers hold ``lock`` around every use (the methods here do not take it,
    except the seeding and inspection helpers the stand-in exposes)."""

    def __init__(
        self, *, clock: Callable[[], datetime] | None = None, state_file: Path | None = None
    ) -> None:
        self.clock = clock or utcnow
        self.lock = threading.RLock()
        self.seq = 0
        self.last_ts = 0
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.dms: dict[str, str] = {}  # user id -> DM channel id
        self.views: dict[str, dict[str, Any]] = {}
        self.triggers: dict[str, dict[str, Any]] = {}
        self.response_urls: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.users[BOT_USER_ID] = user_record(BOT_USER_ID, f"{BOT_NAME}@bots.invalid", BOT_NAME, bot=True)
        self.state_file = Path(state_file) if state_file is not None else None
        if self.state_file is not None and self.state_file.exists():
            self._load(json.loads(self.state_file.read_text()))

    def now(self) -> datetime:
        return self.clock()

    # ------------------------------------------------------------------ kept state

    def save(self) -> None:
        """Write users, channels (messages included) and DMs atomically (a rename)."""
        if self.state_file is None:
            return
        with self.lock:
            channels = {cid: {**c, "members": sorted(c["members"])} for cid, c in self.channels.items()}
            state = {
                "version": STATE_VERSION,
                "seq": self.seq,
                "last_ts": self.last_ts,
                "users": self.users,
                "channels": channels,
                "dms": self.dms,
            }
            text = json.dumps(state, sort_keys=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_file}: unknown state version {state.get('version')!r}")
        self.seq, self.last_ts = int(state["seq"]), int(state["last_ts"])
        self.users = dict(state["users"])
        self.channels = {cid: {**c, "members": set(c["members"])} for cid, c in state["channels"].items()}
        self.dms = dict(state["dms"])

    # ------------------------------------------------------------------ seeding

    def add_user(self, email: str, name: str, *, deleted: bool = False) -> str:
        with self.lock:
            for user in self.users.values():
                if user["profile"]["email"].lower() == email.lower():
                    user["real_name"] = user["profile"]["real_name"] = name
                    user["deleted"] = deleted
                    return str(user["id"])
            user_id = self.new_id("U")
            self.users[user_id] = user_record(user_id, email, name, deleted=deleted)
            self.save()
            return user_id

    def add_channel(self, name: str, *, members: Iterable[str] = (), bot_is_member: bool = True) -> str:
        with self.lock:
            channel_id = self.new_id("C")
            members_set = set(members) | ({BOT_USER_ID} if bot_is_member else set())
            self.channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "kind": "channel",
                "members": members_set,
                "messages": [],
            }
            self.save()
            return channel_id

    # ------------------------------------------------------------------ lookups

    def user_id(self, email: str) -> str:
        with self.lock:
            for user in self.users.values():
                if user["profile"]["email"].lower() == email.lower():
                    return str(user["id"])
        raise KeyError(email)

    def user_handle(self, user_id: str) -> str:
        """The user's ``name`` (their handle), as interaction payloads carry it."""
        with self.lock:
            record = self.users.get(user_id)
            if record is None:
                raise KeyError(f"no Slack user {user_id}")
            return str(record["name"])

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        chan = self.channels.get(channel)
        if chan is None:
            return None
        return next((m for m in chan["messages"] if m["ts"] == ts), None)

    def message_copy(self, channel: str, ts: str) -> dict[str, Any]:
        with self.lock:
            found = self.find_message(channel, ts)
            if found is None:
                raise KeyError(f"no message {ts} in {channel}")
            return {**copy.deepcopy(found), "channel": channel}

    def resolve_channel(self, value: Any) -> dict[str, Any]:
        """The channel a message goes to: an id, a ``#name``, or a user id (the bot's DM with them)."""
        name = str(value or "")
        if not name:
            raise SlackFail("channel_not_found")
        if name in self.users:  # a user id: Slack posts to the DM with that user
            if self.users[name]["deleted"]:
                raise SlackFail("user_disabled")
            return self.channels[self.open_dm(name)[0]]
        chan = self.channels.get(name)
        if chan is None:
            wanted = name.lstrip("#")
            chan = next(
                (c for c in self.channels.values() if c["kind"] == "channel" and c["name"] == wanted), None
            )
        if chan is None:
            raise SlackFail("channel_not_found")
        if BOT_USER_ID not in chan["members"]:
            raise SlackFail("not_in_channel")
        return chan

    # ------------------------------------------------------------------ ids

    def new_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq:08d}"

    def next_ts(self) -> str:
        """A message timestamp on the clock, unique and increasing even when the clock stands still."""
        micros = int(self.now().timestamp() * 1_000_000)
        self.last_ts = max(micros, self.last_ts + 1)
        return micros_to_ts(self.last_ts)

    def open_dm(self, user_id: str) -> tuple[str, bool]:
        """The bot's DM channel with ``user_id``, and whether it was open already."""
        existing = self.dms.get(user_id)
        if existing is not None:
            return existing, True
        channel_id = self.new_id("D")
        self.channels[channel_id] = {
            "id": channel_id,
            "name": f"dm-{user_id}",
            "kind": "im",
            "members": {user_id, BOT_USER_ID},
            "messages": [],
        }
        self.dms[user_id] = channel_id
        return channel_id, False


# A Web API method: (workspace, arguments, token kind "bot"/"app", warnings to add to) -> the answer's
# fields besides ``ok``; raises SlackFail to answer an error. Called under the workspace lock.
Handler = Callable[[Workspace, dict[str, Any], str, list[str]], dict[str, Any]]
