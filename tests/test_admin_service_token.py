"""The README's admin token (``grantflow token issue --name ops-bot --role admin``, no email) acts as an
administrator where the admin role is what the action needs: it revokes and cancels without naming a
person, and the ledger records the token as the acting administrator."""

from __future__ import annotations

from tests.test_api import Api, api, create, wait_status

__all__ = ["api"]  # the fixture, shared with tests/test_api.py


async def test_an_admin_token_without_email_revokes_and_cancels(api: Api) -> None:
    pending = (await create(api))["id"]
    cancelled = await api.call("robot", "POST", f"/requests/{pending}/cancel", json={"reason": "dup"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"

    active = (await create(api, "erin"))["id"]
    for who in ("bob", "carol"):
        assert (await api.call(who, "POST", f"/requests/{active}/approve")).status_code == 200
    await wait_status(api, active, "ACTIVE")
    revoked = await api.call("robot", "POST", f"/requests/{active}/revoke", json={"reason": "incident"})
    assert revoked.status_code == 200, revoked.text
    assert (await wait_status(api, active, "ENDED"))["end_reason"] == "revoked"

    for rid in (pending, active):
        ended = [e for e in api.stack.store.ledger_entries(subject=rid) if e.actor.startswith("token:")]
        assert ended and {e.actor for e in ended} == {"token:robot"}, [
            (e.kind, e.actor) for e in api.stack.store.ledger_entries(subject=rid)
        ]
    # deciding is not a role: the same token still has to say for whom it approves
    other = (await create(api, "frank"))["id"]
    approve = await api.call("robot", "POST", f"/requests/{other}/approve")
    assert approve.status_code == 422 and "belongs to no person" in approve.json()["detail"]
