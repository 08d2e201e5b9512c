"""The errors of :class:`~web.service.RequestService`, as a tree (each maps to one HTTP status at the
REST edge and one CLI exit code)::

    ServiceError            500  something unexpected; the detail says what
    ├── BadInput            422  the input cannot be used (unparseable duration, unknown resource, ...)
    ├── NotFound            404  no such request
    ├── Forbidden           403  the caller may not do this at all (e.g. acting for someone else)
    ├── Conflict            409  the requester already holds an open request for the same connection
    ├── Refused             409  the workflow (or the policy) refused; recorded in the ledger
    └── Unavailable         503  Temporal or the store cannot be reached; try again
        └── NotYetCarriedOut 503 a command was delivered, but no worker has carried it out yet

:func:`short` is what a caller is told of an internal failure; the details go to the log, never into an
error body.
"""

from __future__ import annotations

import logging
import secrets
from typing import ClassVar

log = logging.getLogger("grantflow.web.service")


class ServiceError(Exception):
    """Base of the service's errors. ``code`` is a stable machine-readable name, ``status`` the HTTP
    status the REST edge answers with, ``str(err)`` the sentence for a person."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(ServiceError):
    """Input that cannot be used: unparseable, zero, negative or over-long duration; unknown resource or
    role; empty reason; a requester who is not an active person in the directory."""

    code = "bad_input"
    status = 422


class NotFound(ServiceError):
    """No request with that id."""

    code = "not_found"
    status = 404


class Forbidden(ServiceError):
    """The caller may not do this at all, whatever the request's state (e.g. acting for someone else
    without being an administrator)."""

    code = "forbidden"
    status = 403


class Conflict(ServiceError):
    """The requester already has an open request for the connection; ``existing_request_id`` names it."""

    code = "conflict"
    status = 409

    def __init__(
        self, detail: str, *, existing_request_id: str | None = None, existing_status: str = ""
    ) -> None:
        super().__init__(detail)
        self.existing_request_id = existing_request_id
        self.existing_status = existing_status


class Refused(ServiceError):
    """The workflow's validator (or the policy, before a workflow starts) refused; the sentence says why.
    Refusals of decisions and actions on existing requests are recorded in the ledger."""

    code = "refused"
    status = 409


class Unavailable(ServiceError):
    """Temporal or the store could not be reached or did not answer; nothing was changed, or the change
    could not be confirmed. Try again."""

    code = "unavailable"
    status = 503


class NotYetCarriedOut(Unavailable):
    """A command reached its workflow (it is in the history and will be carried out or refused when a
    worker runs), but no answer came in time. Calling again is refused as already done; ``status`` and
    ``show`` tell when it has been carried out."""

    code = "not_yet_carried_out"


def short(exc: BaseException | None) -> str:
    """What a caller is told about an internal failure: its kind and an id to find it in the logs.

    The full text (SQL, host names, Temporal internals) goes to the log only: error bodies reach anyone
    holding a token, and must not leak the deployment's internals."""
    error_id = secrets.token_hex(4)
    log.error("error %s: %r", error_id, exc)
    return f"{type(exc).__name__ if exc is not None else 'error'}, error id {error_id}"
