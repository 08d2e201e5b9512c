"""hoop.dev as grantflow's enforcement gateway: ``HoopGateway``, the ``Gateway`` protocol over hoop's HTTP
API (``<hoop>/api``), on ``httpx``.

Where each part lives:

- :mod:`~integrations.hoop.gateway` — ``HoopGateway``, one mixin per concern over one client;
- :mod:`~integrations.hoop.client` — authentication, errors (``integrations.gateway``'s hierarchy), paging;
- :mod:`~integrations.hoop.grants` — jit grants (idempotent by correlation id, ≤ 48 h) and reviews;
- :mod:`~integrations.hoop.sessions` — sessions (exact filtering, kill and read back) and users;
- :mod:`~integrations.hoop.connections` — connections and the access rules hoop applies to them;
- :mod:`~integrations.hoop.records` — hoop's JSON as records.

Where the running gateway differs from its OpenAPI spec (``../shared/specs/hoop-openapiv3.json``), this
client follows the gateway; ``tests/test_hoop_contract.py`` keeps the list (``KNOWN_DIFFERENCES``):

- ``POST /sessions/provision`` answers **202**, not 200 (both accepted here).
- ``approved_reviewers`` may be null/omitted (auto-approves every group); the spec types it as an array.
  This client omits it.
- API-key auth (``Authorization: Bearer <key>`` or ``Api-Key``) is absent from the spec's security schemes;
  it is the only auth ``/sessions/provision`` accepts.
- ``PUT /reviews`` approves once the approved groups number exactly ``min(len(groups), min_approvals)`` (the
  code), not "once all groups are APPROVED" (the prose); an unknown review is a 500, not a 404. grantflow
  approves with ``force_review`` (one call, by a force-approval group), so the count does not apply to it.
- ``GET /connections`` with ``page``/``page_size`` answers ``{pages, data}``; the spec declares a bare array.
- Fields the spec types as non-null arrive as ``null``: a session's ``end_date`` (running) and ``review``
  (none), a review's ``revoke_at`` (not approved) and ``access_request_rule_name``, a review group's
  ``reviewed_by``/``review_date`` (pending) and a listed connection's ``effective_features``; review groups
  report ``PENDING``, which their declared enum lacks. The spec describes ``revoke_at`` as "the time when
  this review was revoked"; it is the end of a jit grant's access.
"""

from domain.hoop_reviews import HoopPendingReview, HoopReview
from integrations.hoop.client import DEFAULT_TIMEOUT, MAX_OFFSET, PAGE_SIZE
from integrations.hoop.gateway import HoopGateway
from integrations.hoop.grants import MAX_GRANT_SECONDS

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_GRANT_SECONDS",
    "MAX_OFFSET",
    "PAGE_SIZE",
    "HoopGateway",
    "HoopPendingReview",
    "HoopReview",
]
