"""A local Slack for tests and ``grantflow dev``: a real HTTP + WebSocket server on 127.0.0.1 answering the
Web API methods grantflow calls the way Slack answers them, a Socket Mode endpoint, and a driver that plays
Slack's part towards grantflow (signed interactivity requests and slash commands).

    slack = SlackStandIn(bot_token="xoxb-…", app_token="xapp-…", signing_secret="s3cret", clock=clock)
    bob = slack.add_user("bob@corp.example", "Bob Builder")        # -> "U00000002"
    url = slack.start()                                             # http://127.0.0.1:PORT
    client = AsyncWebClient(token="xoxb-…", base_url=slack.api_url) # slack.api_url == url + "/api/"
    ...
    driver = SlackDriver("s3cret", "http://127.0.0.1:WEB/slack/events", slack=slack)
    driver.click_button(bob, channel, ts, "grantflow_approve")      # signed block_actions, like Slack
    slack.deliver_socket("interactive", driver.block_actions_payload(bob, channel, ts, "grantflow_approve"))
    slack.stop()

Behaviour reproduced (sources: api.slack.com method pages, ``../shared/notes/integrations.md``, the Web API
spec in ``../shared/specs/slack-web-openapi-v2.json`` for method and field names):

- ``GET`` or ``POST /api/<method>`` with arguments in the query string, a form body
  (``application/x-www-form-urlencoded`` or multipart) or a JSON body. Form-encoded ``blocks``, ``view``
  and ``metadata`` are JSON strings; JSON bodies carry them as values. Errors are HTTP 200
  ``{"ok": false, "error": …}``, as Slack sends them; unknown methods get 404 ``unknown_method``.
- Auth: ``Authorization: Bearer <token>`` or a ``token`` argument (not inside a JSON body: Slack ignores it
  there). None → ``not_authed``; unknown → ``invalid_auth``. The app-level token (``xapp-``) is accepted only
  by ``apps.connections.open`` (and ``auth.test``), which accepts nothing else: ``not_allowed_token_type``.
- ``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral`` check Block Kit as Slack does and answer
  ``invalid_blocks`` with ``errors`` and ``response_metadata.messages`` naming the JSON pointer
  (``must be less than 3001 characters [json-pointer:/blocks/0/text/text]``): at most 50 blocks, section
  text ≤ 3000, fields ≤ 10 of ≤ 2000, header ≤ 150, button text ≤ 75, value ≤ 2000, url ≤ 3000,
  ``block_id`` ≤ 255 and unique in the message, ``action_id`` ≤ 255 and unique within its block, text
  objects non-empty, unknown block types and unknown keys refused. ``text`` over 40,000 characters →
  ``msg_too_long``; neither text nor blocks → ``no_text``; blocks without ``text`` are accepted with the
  warning ``missing_text`` (recorded on the call), as Slack does. A user id as ``channel`` posts to the
  DM with that user. ``metadata`` must be ``{event_type, event_payload}`` (``invalid_metadata_format``)
  and is stored with the message. ``chat.update`` of an unknown ts → ``message_not_found``.
- ``conversations.history``: newest first, ``limit`` (default 100, at most 999), ``oldest``/``latest``/
  ``inclusive``, cursor paging (``response_metadata.next_cursor``, ``has_more``). Message ``metadata`` is
  returned only with ``include_all_metadata`` — the strict reading of Slack's docs, so a caller that
  forgets the flag fails here rather than in production.
- ``conversations.open`` (one DM ``D…`` per user; ``already_open`` afterwards), ``users.lookupByEmail``
  (``users_not_found``), ``users.info`` (``user_not_found``), ``auth.test``, ``views.open`` (a
  ``trigger_id`` issued by the driver, valid once for 3 s: ``invalid_trigger_id``/``expired_trigger_id``/
  ``exchanged_trigger_id``; the view is checked: title ≤ 24, ≤ 100 blocks, ``private_metadata`` ≤ 3000 …,
  errors as ``invalid_arguments`` with ``response_metadata.messages``).
- Socket Mode: ``apps.connections.open`` returns a single-use ``ws://127.0.0.1:PORT/link/?ticket=…`` URL.
  On connect the server sends ``hello``; ``deliver_socket`` sends an envelope (``slash_commands``,
  ``interactive``, ``events_api``) to the newest connection and records whether the app acked it with
  ``{"envelope_id": …}`` (and the ack's payload). ``disconnect_socket`` sends Slack's ``disconnect``
  message, after which clients reconnect through ``apps.connections.open``.
- ``response_url``\\ s issued by the driver are served at ``/_sandbox/response/<token>``: at most 5 uses,
  ``replace_original``/``delete_original`` change the message, everything is recorded in ``responses``.

Test hooks: ``fail_next(method, status=429|503|…)`` answers the next calls of a method with that status
(429 carries ``Retry-After``, 1 s unless given) or, with ``status=200``, with ``{"ok": false, "error":
error}``; ``after_write=True`` runs the call first. ``drop_next(method, after_write=False|True)`` closes the
connection without any response, before the call is applied or after it was (the message is stored). Every
call is recorded in ``calls`` (tokens left out). An injectable ``clock`` makes message timestamps (``ts``)
and trigger expiry deterministic; timestamps stay unique and increasing even when the clock stands still.

Where things are: ``server`` (``SlackStandIn``: routing, auth, calls, faults), ``workspace`` (users,
channels, messages, the state file), ``users``, ``messages`` and ``views`` (the Web API methods),
``blocks`` (Block Kit checks), ``socket_mode``, ``response_urls``, ``driver`` (``SlackDriver``), ``api``
(argument parsing, the error answer, ``Call``) and ``loop`` (the aiohttp server thread, and why aiohttp).
One lock guards all state: HTTP handlers run on the server's thread, the helpers on the caller's.
"""

from sandbox.slack.api import Call
from sandbox.slack.blocks import block_kit_errors
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import SlackStandIn
from sandbox.slack.socket_mode import SocketEnvelope
from sandbox.slack.workspace import (
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_SCOPES,
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
)

__all__ = [
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_SCOPES",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_SIGNING_SECRET",
    "Call",
    "SlackDriver",
    "SlackStandIn",
    "SocketEnvelope",
    "block_kit_errors",
]
