"""The identity directory as grantflow reads and writes it over SCIM 2.0 (RFC 7643/7644).

Where each part lives:

- :mod:`~integrations.scim.directory` — ``ScimDirectory``, the adapter: what is assumed of the provider,
  reads, and writes verified by reading back.
- :mod:`~integrations.scim.paging` — whole listings, page by page, refused when the pages do not add up;
  incremental (``modified_since``) listings and why they cannot see deletions.
- :mod:`~integrations.scim.records` — ``DirectoryUser``/``DirectoryGroup``/``ScimCapabilities``, the
  ``Directory`` Protocol, and the lenient mapping from SCIM JSON. No scim2 type leaves this package.
- :mod:`~integrations.scim.errors` — the error hierarchy activities translate into retry behaviour.
"""

from integrations.scim.directory import DEFAULT_TIMEOUT, ScimDirectory
from integrations.scim.errors import (
    ScimAuthError,
    ScimError,
    ScimFilterUnsupported,
    ScimInconsistentPage,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    ScimWriteNotVerified,
)
from integrations.scim.records import (
    DEFAULT_PAGE_SIZE,
    ENTERPRISE_USER_SCHEMA,
    Directory,
    DirectoryGroup,
    DirectoryUser,
    ScimCapabilities,
    capabilities_from_scim,
    group_from_scim,
    user_from_scim,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "ENTERPRISE_USER_SCHEMA",
    "Directory",
    "DirectoryGroup",
    "DirectoryUser",
    "ScimAuthError",
    "ScimCapabilities",
    "ScimDirectory",
    "ScimError",
    "ScimFilterUnsupported",
    "ScimInconsistentPage",
    "ScimNotFoundError",
    "ScimPermanentError",
    "ScimTransientError",
    "ScimWriteNotVerified",
    "capabilities_from_scim",
    "group_from_scim",
    "user_from_scim",
]
