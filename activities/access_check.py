"""Asking the gateway's configuration whether a person can reach a connection and needs a review there.

The verdict is computed by ``domain.access.evaluate_access`` from what hoop exposes (access control,
attributes, access-request rules, the review plugin) and the person's groups *in hoop*, which are what the
gateway enforces. A person who has never signed in to hoop has no hoop groups yet: their identity
provider groups stand in, since hoop copies the IdP's groups claim at the first login
(``gateway/api/login/oidc/login.go``).

This activity decides nothing: the workflow refuses, or goes on, on the verdict. Gateway failures are
transient here whatever their status (a check is a read), except a connection hoop does not have.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway import gateway_application_error
from domain.access import AccessVerdict, evaluate_access
from domain.identity import PersonRef
from integrations.gateway import Gateway, GatewayError, GatewayNotFoundError
from store import Store

CONNECTION_UNKNOWN = "ConnectionUnknown"


class CheckAccessInput(BaseModel):
    person: PersonRef
    connection: str


class AccessCheckActivities:
    def __init__(self, store: Store, gateway: Gateway) -> None:
        self._store = store
        self._gateway = gateway

    @activity.defn(name="check_access")
    async def check_access(self, inp: CheckAccessInput) -> AccessVerdict:
        try:
            rules = await self._gateway.connection_access_rules(inp.connection)
            user = await self._gateway.find_user(inp.person.email)
        except GatewayNotFoundError as exc:
            raise ApplicationError(
                f"hoop has no connection {inp.connection} (or grantflow's API key cannot see it): "
                f"{exc.message}",
                type=CONNECTION_UNKNOWN,
                non_retryable=True,
            ) from exc
        except GatewayError as exc:
            error = gateway_application_error(
                exc, f"checking {inp.person.email}'s access to {inp.connection}"
            )
            raise ApplicationError(
                error.message, type=error.type, next_retry_delay=error.next_retry_delay, non_retryable=False
            ) from exc
        if user is not None:
            groups: tuple[str, ...] = tuple(user.groups)
        else:
            person = await asyncio.to_thread(self._store.get_person, inp.person.id)
            groups = person.groups if person is not None else ()
        return evaluate_access(groups, rules)
