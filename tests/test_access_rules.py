"""hoop's two gates as grantflow computes them (``domain/access.py``), rule by rule."""

from __future__ import annotations

import pytest

from domain.access import AccessVerdict, ConnectionAccessRules, ReviewRule, evaluate_access


def rules(**overrides: object) -> ConnectionAccessRules:
    base: dict[str, object] = {
        "connection": "pg-prod-admin",
        "access_control_enabled": True,
        "access_groups": ["engineering", "db-owners"],
        "review_rule": ReviewRule(name="pg-prod-admin-jit", reviewers_groups=["db-owners"]),
    }
    return ConnectionAccessRules.model_validate(base | overrides)


def test_a_member_of_an_allowed_group_is_eligible_and_reviewed() -> None:
    verdict = evaluate_access(["engineering"], rules())
    assert verdict.eligible and verdict.needs_review
    assert verdict.through == ["group:engineering"]
    assert verdict.refusal("alice@example.com", "pg-prod admin") is None


def test_outside_every_allowed_group_is_not_eligible_and_the_sentence_names_the_groups() -> None:
    verdict = evaluate_access(["contractors"], rules())
    assert not verdict.eligible
    sentence = verdict.refusal("zoe@example.com", "pg-prod admin")
    assert sentence is not None
    assert sentence.startswith("zoe@example.com is not eligible for pg-prod admin")
    assert "db-owners, engineering" in sentence and "identity provider" in sentence


def test_attribute_links_admin_and_auditor_bypass_and_plugin_off() -> None:
    linked = rules(attribute_groups={"tier-1": ["data"]})
    assert evaluate_access(["data"], linked).through == ["attribute:tier-1"]
    assert linked.allowing_groups() == ["data", "db-owners", "engineering"]
    assert evaluate_access(["admin"], rules()).eligible
    assert evaluate_access(["auditor"], rules()).eligible
    assert not evaluate_access(["auditor"], rules(), auditor_group="auditors").eligible
    assert evaluate_access(["contractors"], rules(access_control_enabled=False)).eligible
    # a renamed admin group (ADMIN_USERNAME) is honoured when given
    assert evaluate_access(["root"], rules(), admin_group="root").eligible


def test_nobody_allowed_says_only_administrators() -> None:
    verdict = evaluate_access(["engineering"], rules(access_groups=[]))
    sentence = verdict.refusal("alice@example.com", "pg-prod admin")
    assert sentence is not None and "only hoop administrators" in sentence


@pytest.mark.parametrize(
    ("rule", "groups", "needs_review"),
    [
        (ReviewRule(name="r"), ["engineering"], True),
        (ReviewRule(name="r", skip_review_groups=["db-owners"]), ["db-owners"], False),
        (ReviewRule(name="r", skip_review_groups=["db-owners"]), ["engineering"], True),
        # approval_required_groups narrow the review to their members ...
        (ReviewRule(name="r", approval_required_groups=["engineering"]), ["engineering"], True),
        (ReviewRule(name="r", approval_required_groups=["engineering"]), ["db-owners"], False),
        # ... and then skip_review_groups no longer count (accessrequest.go)
        (
            ReviewRule(name="r", approval_required_groups=["db-owners"], skip_review_groups=["db-owners"]),
            ["db-owners"],
            True,
        ),
        (None, ["engineering"], False),
    ],
)
def test_who_needs_a_review(rule: ReviewRule | None, groups: list[str], needs_review: bool) -> None:
    verdict = evaluate_access(groups, rules(review_rule=rule))
    assert verdict.eligible and verdict.needs_review is needs_review


def test_the_review_plugin_reviews_whoever_the_rule_let_through() -> None:
    skip = ReviewRule(name="r", skip_review_groups=["db-owners"])
    verdict = evaluate_access(["db-owners"], rules(review_rule=skip, review_plugin_groups=["db-owners"]))
    assert verdict.needs_review and "review plugin" in verdict.review_reason
    plugin_only = evaluate_access(["db-owners"], rules(review_rule=None, review_plugin_groups=["dba"]))
    assert plugin_only.needs_review


def test_already_having_access_is_refused_as_pointless() -> None:
    verdict = evaluate_access(
        ["db-owners"], rules(review_rule=ReviewRule(name="r", skip_review_groups=["db-owners"]))
    )
    sentence = verdict.refusal("dan@example.com", "pg-prod read")
    assert sentence is not None and "already has access" in sentence and "nothing was granted" in sentence
    assert AccessVerdict.model_validate(verdict.model_dump(mode="json")) == verdict
