"""When a campaign's digest channel counts as out for the rest of a page of reviewers.

A digest takes several calls to Slack or Jira, so with a fifth of calls failing one reviewer in a hundred or
so exhausts their tries: that one reviewer must not take the channel out for the page (its other reviewers
would get a single try each, and many would end the campaign without a digest). Only :data:`DOWN_AFTER`
reviewers in a row failing every try do, and one digest getting through brings the channel back.
"""

from __future__ import annotations

import pytest
from temporalio.testing import ActivityEnvironment

import activities.campaign_base as campaign_base
from activities.campaign_base import DIGEST_ATTEMPTS, DOWN_AFTER, CampaignBase, DigestOutage
from integrations.slack import SlackTransientError

ALWAYS = 10**6


class Digest:
    """One reviewer's digest whose first ``failures`` publishing calls fail transiently."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def publish(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise SlackTransientError("service unavailable", status=503)


async def _publish(down: DigestOutage, digest: Digest) -> bool:
    """Publish in an activity's context, as a notice page does; whether the digest got through."""
    telling = object.__new__(CampaignBase)  # publishing reads nothing of the instance
    try:
        await ActivityEnvironment().run(telling._publish_digest, "slack", digest.publish, down)
    except SlackTransientError:
        return False
    return True


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaign_base, "DIGEST_PAUSE", 0.0)


async def test_one_reviewer_failing_every_try_leaves_the_channel_to_the_next() -> None:
    down = DigestOutage()
    unlucky, next_one = Digest(ALWAYS), Digest(DIGEST_ATTEMPTS - 1)
    assert not await _publish(down, unlucky)
    assert unlucky.calls == DIGEST_ATTEMPTS
    assert await _publish(down, next_one)  # every try again, the last one gets through
    assert next_one.calls == DIGEST_ATTEMPTS


async def test_a_channel_is_out_after_reviewers_in_a_row_failed_and_back_once_a_digest_gets_through() -> None:
    down = DigestOutage()
    for _ in range(DOWN_AFTER):
        failing = Digest(ALWAYS)
        assert not await _publish(down, failing)
        assert failing.calls == DIGEST_ATTEMPTS
    out = Digest(ALWAYS)
    assert not await _publish(down, out)
    assert out.calls == 1  # the channel is out: one try, so an outage never holds the page up
    through = Digest(0)
    assert await _publish(down, through)
    assert through.calls == 1
    flaky = Digest(2)  # the channel is back: a reviewer gets every try again
    assert await _publish(down, flaky)
    assert flaky.calls == 3


async def test_reviewers_failing_apart_never_take_the_channel_out() -> None:
    down = DigestOutage()
    for _ in range(3 * DOWN_AFTER):
        failing, fine = Digest(ALWAYS), Digest(1)
        assert not await _publish(down, failing)
        assert failing.calls == DIGEST_ATTEMPTS
        assert await _publish(down, fine)
        assert fine.calls == 2
