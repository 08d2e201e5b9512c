"""Campaign specs: every option parses, and every mistake is reported with its line and field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from domain.campaign_spec import (
    CampaignSpec,
    CampaignSpecError,
    DefaultDecision,
    IdentityKind,
    ReviewerKind,
    load_campaign_spec,
    parse_campaign_spec,
)
from domain.toml_lines import key_lines, line_of

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "campaign.toml"

MINIMAL = """\
name = "Q1 review"
owner = "sec@example.com"
duration = "14d"
default_decision = "keep"
fallback_reviewer = "lead@example.com"

[scope]
groups = ["db-owners"]

[[stages]]
reviewers = "manager"
"""


def _problem(text: str) -> str:
    with pytest.raises(CampaignSpecError) as caught:
        parse_campaign_spec(text, "q1.toml")
    return str(caught.value)


def test_the_example_spec_uses_every_section() -> None:
    spec = load_campaign_spec(EXAMPLE)
    assert spec.default_decision is DefaultDecision.RECOMMENDATION
    assert [s.reviewers for s in spec.stages] == [ReviewerKind.MANAGER, ReviewerKind.RESOURCE_OWNER]
    assert spec.scope.identities == list(IdentityKind)  # all four kinds of non-human identity
    assert spec.scope.connection_tags == ["env=prod"]
    assert spec.owners.groups["db-owners"] == "ken@example.com"
    assert spec.reason_required("keep") and not spec.reason_required("revoke")
    assert spec.schedule is not None and spec.schedule.time_zone == "Europe/Berlin"
    assert spec.recommendation.revoke_if_unused_for == timedelta(days=90)
    launched = datetime(2027, 1, 4, 8, tzinfo=UTC)
    assert spec.stage_durations(launched) == [timedelta(days=7), timedelta(days=7)]


def test_a_minimal_spec_takes_the_documented_defaults() -> None:
    spec = parse_campaign_spec(MINIMAL)
    assert spec.auto_apply is True
    assert spec.reasons_required == []
    assert spec.scope.include_admins is True
    assert spec.owners.groups == {}
    assert spec.schedule is None
    assert spec.stage_durations(datetime(2027, 1, 1, tzinfo=UTC)) == [timedelta(days=14)]


def test_every_scope_option_and_three_stages() -> None:
    text = """\
name = "Contractors and machines"
owner = "SEC@example.com"
deadline = 2027-02-01T17:00:00Z
default_decision = "revoke"
reasons_required = ["keep", "revoke"]
auto_apply = false
fallback_reviewer = "lead@example.com"
reminders = ["2d", "12h"]

[scope]
connections = ["pg-prod-admin"]
connection_tags = [" env = prod "]
connection_types = ["database"]
groups = ["engineering"]
identities = ["api_key", "ai_agent", "service_account", "machine_identity"]
include_admins = false
unused_for = "30d"
granted_since = 2026-07-01

[scope.people]
departments = ["Engineering"]
managers = ["ken@example.com"]
employment_types = ["contractor"]

[[stages]]
reviewers = "identity_owner"

[[stages]]
reviewers = "resource_owner"

[[stages]]
reviewers = "group"
group = "security"
duration = "2d"

[owners]
identities = { ci-deploy = "linus@example.com" }
"""
    spec = parse_campaign_spec(text)
    assert spec.owner == "sec@example.com"
    assert spec.scope.connection_tags == ["env=prod"]
    assert spec.scope.unused_for == timedelta(days=30)
    assert spec.scope.granted_since == date(2026, 7, 1)
    assert spec.scope.people.employment_types == ["contractor"]
    assert len(spec.scope.identities) == 4
    assert spec.stages[2].group == "security"
    launched = datetime(2027, 1, 1, 17, tzinfo=UTC)
    durations = spec.stage_durations(launched)
    assert durations[2] == timedelta(days=2)
    assert durations[0] == durations[1] == (timedelta(days=31) - timedelta(days=2)) / 2
    assert spec.reason_required("revoke")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('reviewers = "manager"', 'reviewers = "group"'),
            "line 10: stages.0: a stage reviewed by a group names",
        ),
        (('reviewers = "manager"', 'reviewers = "boss"'), "line 11: stages.0.reviewers: Input should be"),
        (('duration = "14d"', 'duration = "0s"'), "line 3: duration:"),
        (('groups = ["db-owners"]', 'tags = ["x"]'), "line 8: scope.tags: Extra inputs are not permitted"),
        (('groups = ["db-owners"]', "groups = []"), "line 7: scope: the scope selects nothing"),
        (
            ('owner = "sec@example.com"', 'owner = "security team"'),
            "line 2: owner: 'security team' is not an",
        ),
        (('default_decision = "keep"', 'default_decision = "maybe"'), "line 4: default_decision: Input"),
        (('duration = "14d"', 'duration = "14d"\ndeadline = 2027-01-15T17:00:00Z'), "give exactly one of"),
        (('duration = "14d"', "deadline = 2027-01-15T17:00:00"), "deadline needs a time zone offset"),
        (('fallback_reviewer = "lead@example.com"\n', ""), "fallback_reviewer: Field required"),
    ],
)
def test_each_mistake_names_its_line_and_field(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in MINIMAL
    problem = _problem(MINIMAL.replace(old, new, 1))
    assert problem.startswith("q1.toml: ")
    assert expected in problem


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace('owner = "sec@example.com"', 'owner = "nobody"').replace(
        'reviewers = "manager"', 'reviewers = "manager"\ngroup = "security"'
    )
    problem = _problem(text)
    assert "line 2: owner:" in problem
    assert "line 10: stages.0: group is only for reviewers = group" in problem


def test_stage_and_scope_rules() -> None:
    four = MINIMAL + '\n[[stages]]\nreviewers = "manager"\n' * 3
    assert "stages: List should have at most 3 items" in _problem(four)
    too_long = MINIMAL.replace('reviewers = "manager"', 'reviewers = "manager"\nduration = "15d"')
    assert "add up to more than the campaign's 14d" in _problem(too_long)
    uneven = MINIMAL.replace('reviewers = "manager"', 'reviewers = "manager"\nduration = "10d"')
    assert "do not add up to the campaign's duration" in _problem(uneven)
    owners = MINIMAL.replace('reviewers = "manager"', 'reviewers = "identity_owner"')
    assert "needs identities in the scope" in _problem(owners)
    bad_tag = MINIMAL.replace('groups = ["db-owners"]', 'connection_tags = ["prod"]')
    assert "line 8: scope.connection_tags.0: 'prod' is not a connection tag" in _problem(bad_tag)
    zone = MINIMAL + '\n[schedule]\nstart = 2027-01-04T09:00:00\ntime_zone = "Mars/Olympus"\n'
    assert "schedule: time_zone 'Mars/Olympus' is not an IANA time zone" in _problem(zone)
    fixed = MINIMAL.replace('duration = "14d"', "deadline = 2027-01-15T17:00:00Z") + (
        "\n[schedule]\nstart = 2027-01-04T09:00:00\n"
    )
    assert "a scheduled campaign runs for a duration from each start" in _problem(fixed)


def test_unreadable_files_say_so() -> None:
    assert "not valid TOML" in _problem("name = ")
    with pytest.raises(CampaignSpecError, match="campaign spec not found"):
        load_campaign_spec(Path("/nonexistent/campaign.toml"))


def test_specs_are_frozen_and_carry_no_secret() -> None:
    spec = parse_campaign_spec(MINIMAL)
    with pytest.raises(ValueError):
        spec.name = "other"  # type: ignore[misc]
    assert CampaignSpec.model_validate_json(spec.model_dump_json()) == spec


def test_line_finder_follows_tables_arrays_and_multiline_values() -> None:
    text = """\
a = 1
b = [
  "x = 1",
  2,
]
s = \"\"\"
fake = 3
\"\"\"
[t]
c = { d = 1 }
[[arr]]
k = 1
[[arr]]
k = 2
"""
    lines = key_lines(text)
    assert lines[("a",)] == 1
    assert lines[("b",)] == 2
    assert ("fake",) not in lines and ("x",) not in lines
    assert lines[("t", "c")] == 10
    assert line_of(lines, ("t", "c", "d")) == 10
    assert lines[("arr", 0, "k")] == 12
    assert lines[("arr", 1, "k")] == 14
    assert line_of(lines, ("arr", 1)) == 13
    assert line_of(lines, ()) is None
