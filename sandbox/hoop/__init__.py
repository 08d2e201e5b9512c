"""A local hoop.dev gateway for tests and ``grantflow dev``: a real HTTP server answering the calls grantflow
makes, the way hoop 1.148 answers them (see ``../shared/notes/hoop.md`` and the OpenAPI spec).

    hoop = HoopStandIn(state_file=Path(".grantflow/hoop.json"), clock=clock)
    hoop.add_user("alice@corp", groups=["eng"])
    hoop.add_connection("pg-prod", access_groups=["dba"], reviewers=["dba-owners"])
    url = hoop.start()          # http://127.0.0.1:PORT ; the API is under {url}/api
    ...
    hoop.connect("alice@corp", "pg-prod")   # like `hoop connect`: refused without access or a grant
    hoop.stop()

Where the running gateway and its spec differ, the gateway is followed. One module per resource, each
saying what it reproduces and from which hoop source:

- ``connections``: connections, the access_control plugin, attributes, access-request rules;
- ``users``: users and groups, signing in, personal tokens;
- ``sessions``: ``connect``, listing, reading, killing, deadlines;
- ``reviews``: reading and deciding reviews (``DoReview``);
- ``grants``: provisioning (``POST /sessions/provision``) and pending reviews;
- ``identity_keys``: API keys and AI agents; ``service_identities``: service accounts and machine
  identities;
- ``routing``: authentication, dispatch, fault injection (``fail_next``), the call log;
- ``state`` and ``clock``: the persisted state and its lock, ``ManualClock``;
- ``server``: :class:`HoopStandIn`, which ties them together.

Test hooks: an injectable ``clock`` (``ManualClock``); ``fail_next`` injects 5xx/429 (with
``Retry-After``) before or *after* the write; ``detach`` puts a session on "another gateway process" (a
kill answers 204 and it stays open); every call is recorded in ``calls``. All state is written
atomically to ``state_file`` after every mutation and loaded back by the constructor, so a restart
forgets nothing (calls and faults are not persisted).
"""

from sandbox.hoop.api import (
    DEFAULT_ACCESS_DURATION_SEC,
    MAX_ACCESS_DURATION_SEC,
    NANOS,
    Call,
    HoopAccessDenied,
)
from sandbox.hoop.clock import ManualClock
from sandbox.hoop.grants import PendingReview
from sandbox.hoop.routing import DEFAULT_API_KEY
from sandbox.hoop.server import HoopStandIn

__all__ = [
    "DEFAULT_ACCESS_DURATION_SEC",
    "DEFAULT_API_KEY",
    "MAX_ACCESS_DURATION_SEC",
    "NANOS",
    "Call",
    "HoopAccessDenied",
    "HoopStandIn",
    "ManualClock",
    "PendingReview",
]
