"""The SCIM directory of ``grantflow dev`` and the tests: scim2-server on 127.0.0.1, persisted, with faults.

``ScimDirectoryServer`` serves scim2-server's WSGI application (RFC 7643/7644, users with the enterprise
extension, groups with members, bearer-token auth) on a threaded ``wsgiref`` server in a daemon thread,
bound to ``127.0.0.1`` only. ``start()`` returns the SCIM base URL clients use (``http://127.0.0.1:PORT/v2``).

Seeding. ``seed_organisation(org)`` creates one user per person (``userName`` = email, primary email,
``displayName``, ``active``, ``externalId`` = the organisation's id such as ``u-013``, enterprise ``manager``
= the manager's SCIM id) and one group per group name, and returns externalId → SCIM id. It skips people and
groups that already exist, so a restarted dev directory keeps its changes. ``add_users(n)`` creates many
users at once for tests. Helpers (``deactivate``, ``delete_user``, ``set_manager``, ``add_to_group``, …)
change the directory as an administrator would in the identity provider; they write to the storage
directly, so ``meta.lastModified`` and the version move exactly as they would for a SCIM write.

Persistence. scim2-server keeps everything in memory. With ``state_file``, every successful write request
(POST/PUT/PATCH/DELETE, bulk included) and every helper call snapshots all resources to that file as JSON
(written to a temporary file, fsynced, then renamed over the old one) *before* the client gets its answer.
The constructor loads the file back through ``InMemoryStorage.resources`` — the storage's own bulk loader,
which stores resources as given — so **ids, ``meta.created``, ``meta.lastModified`` and versions are kept
exactly**; the version counter resumes after the largest stored version so ETags keep increasing. A state
file that cannot be read raises instead of starting an empty directory.

Faults, for tests:

- ``fail_next(prefix, status=503, count=1, retry_after=None)`` answers the next ``count`` requests whose path
  (relative to the SCIM root) starts with ``prefix`` with ``status`` (a SCIM error body, or an HTML page
  with ``scim_body=False``; ``Retry-After`` when given);
- listing pages (``GET /Users`` or ``GET /Groups``), counted from the call: ``fail_page(k)`` fails the k-th
  page, ``drop_from_next_page(n)`` removes the first ``n`` resources of the next page (a provider losing
  entries), ``tamper_page(k, fn)`` rewrites the k-th page's JSON, and ``before_page(k, action)`` runs
  ``action`` (say ``delete_user``) just before serving the k-th page — a write racing a sync;
- ``filter_supported=False`` makes ``/ServiceProviderConfig`` say filtering is unsupported, and scim2-server
  then answers filtered queries with 501, as real providers do.

Every request is recorded in ``requests`` (method, path, query, status) for assertions.

Where things are: ``server`` (``ScimDirectoryServer``), ``persistence`` (the state file), ``failures``
(injected failures and page faults), ``models`` (the resource types) and ``wsgi`` (the HTTP server).
"""

from sandbox.scim.persistence import STATE_FORMAT
from sandbox.scim.server import RecordedRequest, ScimDirectoryServer

__all__ = ["STATE_FORMAT", "RecordedRequest", "ScimDirectoryServer"]
