"""RequestService: the one place every edge (REST API, review page, CLI through the API, Slack and Jira)
goes through to create, decide and act on access requests.

One module per concern, all standing on :mod:`web.service.core`:

- :mod:`web.service.creating`: ``create`` (validate, reserve the slot, start the workflow);
- :mod:`web.service.decisions`: decisions and actions signalled to the workflow, refusals in the ledger;
- :mod:`web.service.queries`: ``show`` and ``list``;
- :mod:`web.service.errors`: the error tree every edge maps to a status or an exit code.
"""

from web.service.core import MAX_REASON, SETUP_WAIT, storable
from web.service.creating import RequestCreation, new_request_id
from web.service.decisions import DecisionsAndActions
from web.service.errors import BadInput, Conflict, Forbidden, NotFound, Refused, ServiceError, Unavailable
from web.service.queries import Queries


class RequestService(RequestCreation, DecisionsAndActions, Queries):
    """Create, decide and act on access requests on behalf of an already authenticated
    :class:`~domain.identity.Actor`.

    The edges establish who is acting (bearer token, signed review link, Slack signature); this class
    checks what the input means, and the workflow decides what the actor may do."""


__all__ = [
    "MAX_REASON",
    "SETUP_WAIT",
    "BadInput",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Refused",
    "RequestService",
    "ServiceError",
    "Unavailable",
    "new_request_id",
    "storable",
]
