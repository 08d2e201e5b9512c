"""``HoopGateway``: the ``integrations.gateway.Gateway`` protocol against hoop, put together from one mixin
per concern — grants and reviews, sessions and users, connections and access rules — over one HTTP client.

It adds no behaviour of its own: look for a method in the module named for its concern.
"""

from __future__ import annotations

from integrations.hoop.connections import HoopConnections
from integrations.hoop.grants import HoopGrants
from integrations.hoop.identity_keys import HoopIdentityKeys
from integrations.hoop.service_identities import HoopServiceIdentities
from integrations.hoop.sessions import HoopSessions


class HoopGateway(HoopGrants, HoopSessions, HoopConnections, HoopIdentityKeys, HoopServiceIdentities):
    """The ``Gateway`` protocol against hoop. Create one per worker, close it with ``aclose`` (or use it as
    an ``async with`` context).

    - :class:`~integrations.hoop.grants.HoopGrants`: ``provision_grant``, ``find_grants``, ``revoke_grant``,
      ``get_review``, ``decide_review``, ``list_pending_reviews``, ``session_command``;
    - :class:`~integrations.hoop.sessions.HoopSessions`: ``list_sessions``, ``get_session``,
      ``kill_session``, ``find_user``, ``list_users``, ``put_user``, ``list_user_groups``;
    - :class:`~integrations.hoop.connections.HoopConnections`: ``list_connections``,
      ``access_control_groups``, ``connection_access_rules``;
    - :class:`~integrations.hoop.identity_keys.HoopIdentityKeys`: ``list_identity_keys``,
      ``set_identity_key_groups``, ``revoke_identity_key`` (API keys and AI agents);
    - :class:`~integrations.hoop.service_identities.HoopServiceIdentities`: ``list_service_accounts``,
      ``put_service_account``, ``list_machine_identities``, ``get_machine_identity``,
      ``put_machine_identity``;
    - :class:`~integrations.hoop.client.HoopClient`: the HTTP connection, errors and paging they
      share, and the single reads (``get_user``)."""
