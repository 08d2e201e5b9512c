"""Who may reach a gateway connection at all, and who needs a review there: hoop's two gates, computed.

hoop has no endpoint that answers "can this person reach this connection, and do they need a review?",
so grantflow computes it from what hoop's API does expose, the same way the gateway decides at connect
time (hoophq/hoop, paths under ``gateway/``):

1. **Access control** (``models/connections.go`` ``getConnectionByNameOrID``, used by
   ``transport/interceptors/auth/auth.go``): with the ``access_control`` plugin off, everyone passes;
   members of the admin and auditor groups always pass; otherwise one of the person's groups must be in
   the connection's access-control list or linked to it through an attribute
   (``access_control_groups_attributes`` ⋈ ``connections_attributes``). Anyone else gets "connection not
   found" — and an approved jit review does not change that.
2. **Review** (``transport/interceptors/accessrequest/accessrequest.go`` ``OnReceive``, then
   ``transport/plugins/review/review.go``): the access-request rule for the connection and the ``jit``
   access type (a ``jit_command`` rule covers it too; a rule reached through one of the connection's
   attributes wins over one naming the connection) decides first. With ``approval_required_groups`` set,
   only their members are reviewed; otherwise members of ``skip_review_groups`` pass unreviewed; everyone
   else needs a review. When that rule lets the person through (or there is none), the legacy review
   plugin still reviews everyone on a connection it is enabled for (the connection's ``reviewers``).

This module is pure: it never talks to the gateway. ``integrations.hoop`` reads the facts
(:class:`ConnectionAccessRules`), activities call :func:`evaluate_access`, workflows act on the verdict.
Eligibility is standing access, granted through the identity provider and reviewed by campaigns: a JIT
request never makes someone eligible, so an ineligible person is refused before anyone is asked.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

ADMIN_GROUP = "admin"
AUDITOR_GROUP = "auditor"
"""hoop's default group names (``storagev2/types/const.go``; its ``ADMIN_USERNAME`` and
``AUDITOR_USERNAME`` settings rename them)."""


class ReviewRule(BaseModel):
    """hoop's access-request rule as far as it decides who is reviewed and who may decide."""

    name: str
    access_type: str = "jit"
    approval_required_groups: list[str] = Field(default_factory=list)
    skip_review_groups: list[str] = Field(default_factory=list)
    reviewers_groups: list[str] = Field(default_factory=list)
    force_approval_groups: list[str] = Field(default_factory=list)


class ConnectionAccessRules(BaseModel):
    """What hoop knows about one connection that decides who reaches it and who needs a review there."""

    connection: str
    access_control_enabled: bool
    access_groups: list[str] = Field(default_factory=list)
    """The connection's access-control list (groups linked directly)."""
    attribute_groups: dict[str, list[str]] = Field(default_factory=dict)
    """Attribute name → access-control groups linked to the connection through that attribute."""
    review_rule: ReviewRule | None = None
    """The access-request rule hoop applies to a ``hoop connect`` here, if any."""
    review_plugin_groups: list[str] = Field(default_factory=list)
    """The legacy review plugin's reviewer groups for this connection (empty: the plugin is off here)."""

    def allowing_groups(self) -> list[str]:
        """Every group whose members pass access control here, directly or through an attribute."""
        found = set(self.access_groups)
        for groups in self.attribute_groups.values():
            found.update(groups)
        return sorted(found)


class AccessVerdict(BaseModel):
    """Whether a person can reach a connection, and whether they need a review to connect now."""

    connection: str
    eligible: bool
    needs_review: bool
    """Meaningful only when eligible: False means hoop already lets them in without a review."""
    through: list[str] = Field(default_factory=list)
    """Why they are eligible: the groups (``group:<g>``, ``attribute:<a>``) or bypass that lets them in."""
    eligible_groups: list[str] = Field(default_factory=list)
    """The groups that would make someone eligible here (what to ask the identity provider for)."""
    review_reason: str = ""
    """Why a review is (or is not) needed, in words."""

    def refusal(self, who: str, what: str) -> str | None:
        """The sentence refusing a JIT request for ``what`` (e.g. "pg-prod admin"), or None when a JIT grant
        is exactly what this person needs."""
        if not self.eligible:
            groups = ", ".join(self.eligible_groups)
            join = (
                f"membership of one of these groups would make them eligible: {groups}"
                if groups
                else "no group is allowed to reach it (only hoop administrators can)"
            )
            return (
                f"{who} is not eligible for {what}: hoop's access control keeps them out of "
                f"{self.connection} whatever is approved; {join}. Eligibility comes from the identity "
                "provider and is reviewed by recertification campaigns, not granted by a request."
            )
        if not self.needs_review:
            return (
                f"{who} already has access to {what} ({self.connection}) without a review "
                f"({self.review_reason}); nothing was granted and nobody was asked."
            )
        return None


def evaluate_access(
    person_groups: Iterable[str],
    rules: ConnectionAccessRules,
    *,
    admin_group: str = ADMIN_GROUP,
    auditor_group: str = AUDITOR_GROUP,
) -> AccessVerdict:
    """hoop's two gates for one person (by their groups in hoop) on one connection."""
    groups = set(person_groups)
    eligible_groups = rules.allowing_groups()
    through: list[str] = []
    if not rules.access_control_enabled:
        through.append("access control is off")
    elif admin_group in groups:
        through.append(f"group:{admin_group} (bypasses access control)")
    elif auditor_group in groups:
        through.append(f"group:{auditor_group} (bypasses access control)")
    else:
        through.extend(f"group:{g}" for g in sorted(groups & set(rules.access_groups)))
        through.extend(
            f"attribute:{attribute}"
            for attribute, linked in sorted(rules.attribute_groups.items())
            if groups & set(linked)
        )
    if not through:
        return AccessVerdict(
            connection=rules.connection, eligible=False, needs_review=False, eligible_groups=eligible_groups
        )
    needs_review, why = _review_needed(groups, rules)
    return AccessVerdict(
        connection=rules.connection,
        eligible=True,
        needs_review=needs_review,
        through=through,
        eligible_groups=eligible_groups,
        review_reason=why,
    )


def _review_needed(groups: set[str], rules: ConnectionAccessRules) -> tuple[bool, str]:
    rule = rules.review_rule
    if rule is not None:
        # accessrequest.go: approval_required_groups narrow who is reviewed; skip_review_groups count
        # only when no approval-required groups are set.
        if rule.approval_required_groups:
            if groups & set(rule.approval_required_groups):
                return True, f"rule {rule.name} reviews members of {', '.join(rule.approval_required_groups)}"
            skipped = f"rule {rule.name} reviews only members of {', '.join(rule.approval_required_groups)}"
        elif rule.skip_review_groups and groups & set(rule.skip_review_groups):
            member = sorted(groups & set(rule.skip_review_groups))
            skipped = f"rule {rule.name} skips the review for group {', '.join(member)}"
        else:
            return True, f"rule {rule.name} reviews every jit connection"
        # review.go runs after the interceptor let the person through unreviewed.
        if rules.review_plugin_groups:
            return True, f"{skipped}, but the review plugin reviews everyone on {rules.connection}"
        return False, skipped
    if rules.review_plugin_groups:
        return True, f"the review plugin reviews everyone on {rules.connection}"
    return False, f"no access-request rule or review plugin applies to {rules.connection}"
