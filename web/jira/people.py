"""Who a Jira account is: the directory person behind the ``accountId`` of a webhook event.

An accountId becomes a directory person, in this order,

1. by the email Jira shows for it (``GET /user``; on Cloud most people hide it);
2. for a status change on a request's ticket, by user search among the people who could matter: the
   request's eligible approvers and its requester. Each candidate's accountId is learned by searching their
   exact email (Cloud finds a hidden email by its exact address; ``JiraTickets.account_id_for_email``, which
   caches what it finds) and compared with the actor's. At most ``CANDIDATE_LIMIT`` candidates are searched
   per event; an account whose display name could itself match the email searched is not taken (the search
   matches names too, so the match would prove nothing);
3. by the configured ``jira_account_ids`` mapping (email -> accountId), read backwards.

What Jira told (the shown email, or the one learned by search) is trusted for ``ACCOUNT_TTL`` seconds. The
person found must be an active person in the directory; whether they may decide is the service's to say,
never this module's. For an intake issue the candidates are unknown (no request exists yet), so its
reporter is mapped by the shown email or the mapping only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from domain.identity import Person
from integrations.jira_tickets import JiraPermanentError
from store import Store
from web.jira.connection import JiraConnection, jira_call

log = logging.getLogger("grantflow.web.jira")

ACCOUNT_TTL = 3600.0
"""How long an accountId → email answer from Jira is trusted (emails change, rarely)."""
CANDIDATE_LIMIT = 50
"""At most this many of a request's people are searched in Jira to identify one event's actor."""


@dataclass(frozen=True, slots=True)
class _Account:
    """What Jira told of an accountId: its email (None when hidden, or not yet learned by search) and display
    name (None when Jira would not tell), and when it was asked."""

    email: str | None
    display_name: str | None
    at: float


class People:
    """Maps Jira accountIds to directory people, remembering what Jira told."""

    def __init__(self, connection: JiraConnection, store: Store, account_ids: Mapping[str, str]) -> None:
        self.connection = connection
        self.store = store
        self._accounts: dict[str, _Account] = {}  # accountId -> what Jira told of it
        self._by_account = {aid: email for email, aid in account_ids.items()}

    async def person_for_account(
        self,
        account_id: str | None,
        candidates: Callable[[], Awaitable[Iterable[str]]] | None = None,
    ) -> Person | None:
        """The active directory person behind a Jira accountId: the email Jira shows for it, else the one of
        the ``candidates`` (emails, loaded only when needed) whose accountId user search finds to be this
        one, else the configured ``jira_account_ids`` mapping read backwards; None when none knows. Without
        candidates (intake) only the shown email and the mapping are used."""
        if not account_id:
            return None
        account = await self._account(account_id)
        email = account.email
        if not email and candidates is not None and account.display_name is not None:
            email = await self._search_candidates(account_id, account.display_name, await candidates())
            if email:
                self._accounts[account_id] = _Account(email, account.display_name, account.at)
        email = email or self._by_account.get(account_id)
        if not email:
            return None
        person = await asyncio.to_thread(self.store.find_person_by_email, email)
        return person if person is not None and person.active else None

    async def _account(self, account_id: str) -> _Account:
        """The accountId's shown email and display name (cached for ``ACCOUNT_TTL`` seconds); a display name
        of None when Jira would not tell (unknown, or not visible to the API user)."""
        cached = self._accounts.get(account_id)
        if cached is not None and time.monotonic() - cached.at < ACCOUNT_TTL:
            return cached

        def ask() -> _Account:
            client, _ = self.connection.ensure_client()
            try:
                user = jira_call(f"looking up Jira user {account_id}", client.user, account_id)
            except JiraPermanentError:
                return _Account(None, None, time.monotonic())
            email = str(user.raw.get("emailAddress") or "") or None
            return _Account(email, str(user.raw.get("displayName") or ""), time.monotonic())

        account = await self.connection.run(ask)
        self._accounts[account_id] = account
        return account

    async def _search_candidates(
        self, account_id: str, display_name: str, emails: Iterable[str]
    ) -> str | None:
        """The email among ``emails`` whose accountId (by user search, cached by ``JiraTickets``) is this
        one, or None. The search matches display names as well as emails: an account whose display name
        could match the email searched is not taken on the search's word."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        if len(wanted) > CANDIDATE_LIMIT:
            log.warning(
                "%d people could have moved a ticket; only the first %d are searched in Jira",
                len(wanted),
                CANDIDATE_LIMIT,
            )
            wanted = wanted[:CANDIDATE_LIMIT]
        names = [display_name.lower(), *display_name.lower().split()]
        wanted = [e for e in wanted if not any(n.startswith(e) for n in names)]
        if not wanted:
            return None

        def search() -> str | None:
            _, tickets = self.connection.ensure_client()
            for email in wanted:
                try:
                    found = tickets.account_id_for_email(email)
                except JiraPermanentError as exc:  # e.g. the API user may not browse users
                    log.warning("could not search Jira's users for %s: %s", email, exc.message)
                    return None
                if found == account_id:
                    return email
            return None

        return await self.connection.run(search)
