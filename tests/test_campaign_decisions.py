"""Who may decide a campaign item, the reasons a spec requires, and the defaults at the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.campaign_decisions import ItemDecision, default_decision, final_verdict, refusal
from domain.campaign_spec import CampaignSpec, parse_campaign_spec
from domain.campaigns import (
    AccessVia,
    Assignment,
    CampaignItem,
    ConnectionUsage,
    ItemAccess,
    Reviewer,
    Source,
    Subject,
    SubjectKind,
    Usage,
)
from domain.identity import Actor, PersonRef

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)
BOB = PersonRef(id="u-3", email="bob@example.com")
KEN = PersonRef(id="u-2", email="ken@example.com")
EVE = PersonRef(id="u-7", email="eve@example.com")


def _spec(default: str = "keep", reasons: str = "[]") -> CampaignSpec:
    return parse_campaign_spec(
        f"""\
name = "t"
owner = "grace@example.com"
duration = "14d"
default_decision = "{default}"
reasons_required = {reasons}
fallback_reviewer = "grace@example.com"
[scope]
groups = ["db-owners"]
[[stages]]
reviewers = "manager"
"""
    )


def _item(last_used_days: int | None = None) -> CampaignItem:
    subject = Subject(kind=SubjectKind.PERSON, id=BOB.id, name=BOB.email, manager_id=KEN.id)
    access = ItemAccess(via=AccessVia.GROUP, group="db-owners", sources=(Source.HOOP,), connections=("pg",))
    if last_used_days is None:
        return CampaignItem.of(subject, access)
    usage = Usage(
        window_start=NOW - timedelta(days=365),
        read_at=NOW,
        per_connection=(ConnectionUsage(connection="pg", last_used_at=NOW - timedelta(days=last_used_days)),),
    )
    return CampaignItem.of(subject, access, usage, timedelta(days=90))


BY_KEN = Assignment(stage=0, reviewer=Reviewer(kind="person", id=KEN.id, name=KEN.email), via="manager")
BY_GROUP = Assignment(stage=0, reviewer=Reviewer(kind="group", id="security", name="security"), via="group")


def _refusal(
    actor: Actor,
    assignment: Assignment = BY_KEN,
    *,
    verdict: str = "keep",
    reason: str = "",
    spec: CampaignSpec | None = None,
    stage_open: bool = True,
    members: tuple[str, ...] = (),
) -> str | None:
    return refusal(
        _item(),
        assignment,
        actor,
        verdict,  # type: ignore[arg-type]
        reason,
        spec or _spec(),
        stage_open=stage_open,
        group_members=members,
    )


def test_the_assigned_reviewer_decides_and_nobody_else() -> None:
    assert _refusal(Actor(person=KEN, channel="web")) is None
    assert (
        _refusal(Actor(person=EVE, channel="web"))
        == "this item is reviewed by ken@example.com, not by eve@example.com"
    )
    # an administrator deciding for the reviewer: refused unless the campaign allows it
    assert _refusal(Actor(person=KEN, channel="cli", admin=EVE)) == (
        "eve@example.com may not decide on behalf of ken@example.com: this campaign does not allow "
        "administrators to decide for reviewers (allow_admin_on_behalf); ken@example.com decides with "
        "their own account"
    )
    allowing = _spec().model_copy(update={"allow_admin_on_behalf": True})
    assert _refusal(Actor(person=KEN, channel="cli", admin=EVE), spec=allowing) is None  # on behalf of ken
    assert _refusal(Actor(person=EVE, channel="web"), BY_GROUP, members=(EVE.id,)) is None
    assert _refusal(Actor(person=KEN, channel="web"), BY_GROUP, members=(EVE.id,)) == (
        "this item is reviewed by members of security; ken@example.com is not one"
    )
    nobody = Assignment(stage=0, reviewer=None, via="none")
    assert "the campaign owner must assign it" in (_refusal(Actor(person=KEN, channel="web"), nobody) or "")


def test_the_subject_never_decides_on_their_own_access() -> None:
    own = _refusal(Actor(person=BOB, channel="slack"), BY_GROUP, members=(BOB.id,))
    assert own == "bob@example.com cannot review their own access (member of db-owners (hoop) → pg)"
    on_behalf = _refusal(Actor(person=KEN, channel="cli", admin=BOB))
    assert (
        on_behalf == "bob@example.com cannot review their own access, not even on behalf of ken@example.com"
    )


def test_closed_stages_and_required_reasons() -> None:
    assert "stage 1 of this campaign is closed" in (
        _refusal(Actor(person=KEN, channel="web"), stage_open=False) or ""
    )
    strict = _spec(reasons='["revoke"]')
    assert _refusal(Actor(person=KEN, channel="web"), verdict="revoke", spec=strict) == (
        "a reason is required to revoke access in this campaign"
    )
    assert (
        _refusal(Actor(person=KEN, channel="web"), verdict="revoke", reason="left the team", spec=strict)
        is None
    )
    assert _refusal(Actor(person=KEN, channel="web"), verdict="keep", spec=strict) is None


@pytest.mark.parametrize(
    ("default", "last_used", "expected"),
    [
        ("keep", 200, "keep"),
        ("revoke", 1, "revoke"),
        ("recommendation", 200, "revoke"),
        ("recommendation", 3, "keep"),
        ("recommendation", None, "keep"),
    ],
)
def test_defaults_at_the_deadline(default: str, last_used: int | None, expected: str) -> None:
    verdict, basis = default_decision(_item(last_used), _spec(default))
    assert verdict == expected
    assert basis.startswith("nobody decided by the deadline")
    if default == "recommendation" and last_used == 200:
        assert "revoke: unused for 200 days" in basis


def test_the_last_decision_of_a_stage_counts_and_a_revoke_ends_the_review() -> None:
    def decided(stage: int, verdict: str, minutes: int) -> ItemDecision:
        return ItemDecision(
            item_id="it-1",
            stage=stage,
            verdict=verdict,
            actor=Actor(person=KEN, channel="web"),
            decided_at=NOW + timedelta(minutes=minutes),
        )

    assert final_verdict([]) is None
    changed = [decided(0, "revoke", 1), decided(0, "keep", 2)]
    assert final_verdict(changed) == changed[1]  # changed before the stage closed: keep counts
    staged = [decided(0, "keep", 1), decided(1, "revoke", 2)]
    assert final_verdict(staged) == staged[1]
    revoked_first = [decided(0, "revoke", 1), decided(1, "keep", 2)]
    assert final_verdict(revoked_first) == revoked_first[0]
