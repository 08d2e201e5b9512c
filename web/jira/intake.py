"""Requests made in Jira: an issue created in the intake project becomes an access request.

A ``jira:issue_created`` in ``settings.jira_intake_project`` is ``RequestService.create`` for its
reporter, with resource, role and duration read from ``settings.jira_intake_fields`` (field ids or names)
and the reason from the description. Success: the issue gets the label ``grantflow-<request id>`` (so its
later transitions decide, and the ticket mirror finds it) and a comment with the id and who must approve.
Bad fields: a comment naming every problem; nothing is started. Whether the request is allowed is the
service's to say, never this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from configuration.settings import Settings
from domain.durations import DurationError, parse_duration
from domain.identity import Actor
from domain.requests import RequestStatus, RequestView
from web.jira.authenticity import Markers
from web.jira.connection import CHANNEL, JiraConnection, Outcome, Transient, field_text, jira_call
from web.jira.people import People
from web.service import RequestService, ServiceError, Unavailable


class Intake:
    """Starts requests for issues created in the intake project, and answers on the issue."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: RequestService,
        connection: JiraConnection,
        people: People,
        markers: Markers,
    ) -> None:
        self.settings = settings
        self.service = service
        self.connection = connection
        self.people = people
        self.markers = markers
        self._fields: dict[str, str] | None = None  # lower-cased field name or id -> field id

    async def handle(self, payload: dict[str, Any], identifier: str) -> Outcome:
        """A ``jira:issue_created`` delivery: a request, a refusal on the issue, or nothing to act on."""
        issue = payload.get("issue") or {}
        fields = issue.get("fields") or {}
        key = str(issue.get("key") or "")
        project = str((fields.get("project") or {}).get("key") or "")
        intake = self.settings.jira_intake_project
        if not intake or not key or project.upper() != intake.upper():
            return Outcome("ignored", f"{key or 'the issue'} is not in the intake project")
        _, tickets = await self.connection.run(self.connection.ensure_client)
        labels = [str(label) for label in fields.get("labels") or []]
        if tickets.grantflow_id(labels) is not None:
            return Outcome("ignored", f"{key} already belongs to a grantflow request")
        if await self.connection.by_ourselves(payload):
            return Outcome("ignored", "created by grantflow's own Jira user")
        subject = f"jira:{key}"
        marker = await self.markers.find(subject, identifier)
        if marker is not None:
            await self._follow_up(key, marker)
            return Outcome(
                "duplicate", f"delivery {identifier} was handled already ({marker.get('outcome')})"
            )

        reporter = str((fields.get("reporter") or {}).get("accountId") or "")
        reporter = reporter or str((payload.get("user") or {}).get("accountId") or "")
        asked, problems = await self._read_intake(fields)
        # no request yet, so no candidates to search among: the shown email or the configured mapping
        person = await self.people.person_for_account(reporter)
        if person is None:
            problems.insert(
                0, "the reporter's Jira account is not linked to an active person in the directory"
            )
        request_id: str | None = None
        if problems:
            comment = "grantflow did not start a request: " + "; ".join(problems) + "."
            outcome = Outcome("rejected", "; ".join(problems))
        else:
            assert person is not None
            actor = Actor(person=person.ref, channel=CHANNEL, channel_user_id=reporter)
            try:
                created = await self.service.create(actor, **asked, jira_key=key)
            except Unavailable as exc:
                raise Transient(exc.detail) from exc
            except ServiceError as exc:
                if type(exc) is ServiceError:
                    raise Transient(exc.detail) from exc
                comment = f"grantflow did not start a request: {exc.detail.rstrip('.')}."
                outcome = Outcome("rejected", exc.detail)
            else:
                request_id = created.id
                comment = _created_comment(created)
                outcome = Outcome("created", f"request {created.id} is {created.status.value}")
        if request_id is None:
            comment += " Create a new issue with the fields filled in to try again."
        data = {
            "event": "jira:issue_created",
            "issue": key,
            "account_id": reporter,
            "outcome": outcome.status,
            "detail": outcome.detail,
            "request_id": request_id,
            "comment": comment,
        }
        await self.markers.write(
            subject, identifier, person.email if person else f"jira user {reporter}", data
        )
        await self._follow_up(key, data)
        return outcome

    async def _read_intake(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The request an intake issue asks for, and every problem with its fields."""
        ids = await self._field_ids()
        configured = self.settings.jira_intake_fields
        values: dict[str, str] = {}
        problems: list[str] = []
        for name in ("resource", "role", "duration"):
            label = configured.get(name, name.title())
            field_id = ids.get(label.lower(), label)
            values[name] = field_text(fields.get(field_id))
            if name != "role" and not values[name]:
                problems.append(f"the {label} field is empty")
        reason = field_text(fields.get("description"))
        if not reason:
            problems.append("the description is empty: it is the reason, say why the access is needed")
        if values["duration"]:
            try:
                parse_duration(values["duration"])
            except DurationError as exc:
                problems.append(str(exc))
        if values["resource"]:
            try:
                self.service.policies.role(values["resource"], values["role"] or None)
            except LookupError as exc:
                problems.append(
                    str(exc.args[0] if exc.args else exc).replace("with --role", "in the Role field")
                )
        asked = {
            "resource": values["resource"],
            "role": values["role"] or None,
            "duration": values["duration"],
            "reason": reason,
        }
        return asked, problems

    async def _field_ids(self) -> dict[str, str]:
        """Jira's field names and ids, lower-cased, to the field id (read once)."""
        if self._fields is None:

            def ask() -> dict[str, str]:
                client, _ = self.connection.ensure_client()
                listed = jira_call("listing Jira's fields", client.fields)
                out: dict[str, str] = {}
                for f in listed:
                    out[str(f["name"]).lower()] = str(f["id"])
                    out[str(f["id"]).lower()] = str(f["id"])
                return out

            self._fields = await self.connection.run(ask)
        return self._fields

    async def _follow_up(self, key: str, data: Mapping[str, Any]) -> None:
        """Label the issue with its request (when one started) and comment; safe to repeat."""
        client, tickets = await self.connection.run(self.connection.ensure_client)
        request_id = data.get("request_id")
        if request_id:
            label = tickets.jira_label(str(request_id))

            def add_label() -> None:
                issue = jira_call(f"reading the labels of {key}", client.issue, key, fields="labels")
                labels = list(issue.raw.get("fields", {}).get("labels") or [])
                if label not in labels:
                    jira_call(f"labelling {key}", issue.update, fields={"labels": [*labels, label]})

            await self.connection.run(add_label)
        comment = str(data.get("comment") or "")
        if comment:
            await self.connection.run(lambda: tickets.comment(key, comment))


def _created_comment(view: RequestView) -> str:
    head = f"grantflow request {view.id} is {view.status.value}"
    if view.status is RequestStatus.PENDING:
        who = ", ".join(p.email for p in view.eligible_approvers if p.id != view.requester.id)
        needs = view.policy.describe_approvers()
        return f"{head}: it needs {needs}" + (f" ({who} can approve)." if who else ".")
    if view.status is RequestStatus.ACTIVE:
        return f"{head}: access is granted" + (
            f" until {view.expires_at:%Y-%m-%d %H:%M} UTC." if view.expires_at else "."
        )
    return f"{head}" + (f": {view.failure_reason}" if view.failure_reason else "") + "."
