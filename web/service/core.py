"""What every part of :class:`~web.service.RequestService` stands on: its collaborators (Temporal, the
store, the policies), the directory people it acts for, and the calls to the store and the workflow that
creating, deciding and reading share.

Store failures become :class:`~web.service.errors.Unavailable` (or ``Conflict``) here, once; input that no
store or channel can keep is refused here too (:func:`storable`), before any workflow sees it. It decides
nothing about requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle

from domain.identity import Person, PersonRef
from domain.policy import PolicySet
from domain.requests import GatewayTimings, RequestView, request_workflow_id
from store import SlotTaken, Store, StoreError
from web.service.errors import BadInput, Conflict, NotFound, ServiceError, Unavailable, short
from workflows.access_request import AccessRequestWorkflow

log = logging.getLogger("grantflow.web.service")


SETUP_WAIT = 5.0
"""How long ``create`` waits (seconds) for the workflow to resolve its approvers before answering."""

MAX_REASON = 2000
"""Reasons travel through workflow history and the ledger: keep them to a paragraph."""

_MAX_POLL_INTERVAL = 0.5
_POLL_INTERVAL = 0.05

T = TypeVar("T")


class ServiceCore:
    """The state and shared calls of the service; :class:`~web.service.RequestService` is built on it."""

    def __init__(
        self,
        client: Client,
        store: Store,
        policies: PolicySet,
        task_queue: str,
        timings: GatewayTimings | None = None,
        *,
        setup_wait: float = SETUP_WAIT,
        channels: list[str] | None = None,
    ) -> None:
        self._channels = list(channels or [])
        self._client = client
        self._store = store
        self._policies = policies
        self._task_queue = task_queue
        self._timings = timings or GatewayTimings()
        self._setup_wait = setup_wait

    @property
    def policies(self) -> PolicySet:
        return self._policies

    # --- people ------------------------------------------------------------------------------------

    async def person(self, email: str, *, what: str = "person") -> PersonRef:
        """The active directory person with this email; :class:`BadInput` otherwise."""
        email = storable(email, what).strip()
        if not email:
            raise BadInput(f"the {what} is empty; give an email address")
        found = await self._store_call(self._store.find_person_by_email, email)
        return active_ref(found, email, what)

    async def person_by_id(self, person_id: str) -> Person | None:
        return await self._store_call(self._store.get_person, person_id)

    # --- helpers -----------------------------------------------------------------------------------

    def _handle(self, request_id: str) -> WorkflowHandle[Any, Any]:
        return self._client.get_workflow_handle_for(
            AccessRequestWorkflow.run, request_workflow_id(request_id)
        )

    async def _stored(self, request_id: str) -> RequestView:
        view = await self._store_call(self._store.get_request, request_id)
        if view is None:
            raise NotFound(f"there is no request {request_id}")
        return view

    async def _latest(self, handle: WorkflowHandle[Any, Any], stored: RequestView) -> RequestView:
        try:
            return await handle.query(AccessRequestWorkflow.view)
        except Exception as exc:
            log.debug("query of %s failed (%s); answering from the store", handle.id, exc)
            fresher = await self._store_call(self._store.get_request, stored.id)
            return fresher or stored

    async def _store_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (SlotTaken, ServiceError):
            raise
        except StoreError as exc:
            raise Conflict(str(exc)) from exc
        except Exception as exc:
            log.exception("store call %s failed", getattr(fn, "__name__", fn))
            raise Unavailable(f"the store could not be used: {short(exc)}") from exc

    async def _settle(
        self, handle: WorkflowHandle[Any, Any], fallback: RequestView, done: Callable[[RequestView], bool]
    ) -> RequestView:
        """Query until ``done`` holds or ``setup_wait`` passes; the latest view either way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._setup_wait
        latest = fallback
        pause = _POLL_INTERVAL
        while True:
            try:
                latest = await handle.query(AccessRequestWorkflow.view)
            except Exception as exc:  # e.g. the first workflow task has not run yet
                log.debug("query of %s failed while settling: %s", handle.id, exc)
            else:
                if done(latest):
                    return latest
            if loop.time() >= deadline:
                return latest
            await asyncio.sleep(pause)
            # backing off: when many requests arrive at once, a query every 50 ms each only deepens the
            # backlog of the workflow tasks they are waiting for
            pause = min(pause * 1.5, _MAX_POLL_INTERVAL)


def clean_reason(text: str | None) -> str:
    reason = storable(text or "", "reason").strip()
    if len(reason) > MAX_REASON:
        raise BadInput(f"reason is too long ({len(reason)} characters); keep it under {MAX_REASON}")
    return reason


def storable(text: str, what: str) -> str:
    """``text`` if every store and channel can keep it: UTF-8 encodable (no lone surrogates, which JSON
    can carry) and without NUL characters (PostgreSQL refuses them in text). Otherwise :class:`BadInput`
    here at the edge, rather than a store error after a workflow has started."""
    if "\x00" in text:
        raise BadInput(f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid text (it contains an unpaired surrogate)") from None
    return text


def active_ref(person: Person | None, email: str, what: str) -> PersonRef:
    if person is None:
        raise BadInput(f"{what} {email} is not a person in the directory")
    if not person.active:
        raise BadInput(f"{what} {email} is not an active person in the directory")
    return person.ref
