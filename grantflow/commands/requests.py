"""``grantflow request …``: create, decide and act on just-in-time access requests through the REST API.

Every command takes ``--json`` (exactly one JSON document on stdout: the request view, the list, or an
error document ``{"error", "detail", "status"}``). Exit codes:

    0  success
    1  refused, conflict, not found, forbidden or not authenticated (message on stderr)
    2  bad usage or bad input (click usage errors; an unparseable or zero duration is refused before
       any HTTP call; the API's 400/422)
    3  the API is unreachable or failing (5xx)
    4  invalid configuration (as every grantflow command)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from domain.durations import DurationError, format_duration, parse_duration
from domain.requests import RequestView
from grantflow.client import EXIT_BAD_INPUT, ApiClient, ApiError, ClientConfigError
from grantflow.context import settings_from
from grantflow.help import SummaryGroup


class DurationParam(click.ParamType):
    """A positive duration (``30s``, ``15m``, ``2h``, ``1d``, ``PT2H``), checked before any HTTP call."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            parse_duration(text)
        except DurationError as exc:
            self.fail(str(exc), param, ctx)
        return text


DURATION = DurationParam()


def _emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=False))


def run_api_command(
    ctx: click.Context,
    as_json: bool,
    call: Callable[[ApiClient], dict[str, Any]],
    human: Callable[[dict[str, Any]], None],
) -> None:
    """Call the REST API and print the result (one JSON document with ``--json``), mapping errors to the
    documented exit codes; shared by every command that talks to a running grantflow."""
    settings = settings_from(ctx)
    try:
        client = ApiClient.from_settings(settings)
    except ClientConfigError as exc:
        if as_json:
            _emit_json({"error": "no_token", "detail": str(exc), "status": None})
        click.echo(f"grantflow: {exc}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    try:
        with client:
            result = call(client)
    except ApiError as exc:
        if as_json:
            _emit_json(exc.to_json())
        label = exc.code.replace("_", " ")
        click.echo(f"grantflow: {label}: {exc.detail}", err=True)
        ctx.exit(exc.exit_code)
    if as_json:
        _emit_json(result)
    else:
        human(result)


# --- human output ----------------------------------------------------------------------------------


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def describe(view: RequestView) -> list[str]:
    """A short human summary of a request, a few lines."""
    status = view.status.value + (f" ({view.end_reason.value})" if view.end_reason else "")
    # a one-time hoop review asks to run one command: it has no duration to show
    span = "one command" if view.command is not None else f"for {format_duration(view.requested_duration)}"
    lines = [
        f"{view.id}  {status}",
        f"  {view.requester.email} → {view.resource} {view.role} ({view.connection}) {span}"
        + ("  [break-glass]" if view.break_glass else ""),
        f"  reason: {view.reason}",
    ]
    if view.command is not None:
        lines.append(f"  command: {view.command}")
    if view.submitted_by != view.requester.email:
        lines.append(f"  submitted by {view.submitted_by}")
    approvers = ", ".join(p.email for p in view.eligible_approvers) or "(not resolved yet)"
    approved = [d for d in view.approvals if d.stage == "request"]
    if view.auto_approved:
        lines.append("  approvals: none needed, approved automatically by the policy's auto-approve groups")
    elif view.break_glass:
        lines.append(f"  break-glass: granted at once; retro-review {view.retro_review or 'pending'}")
    else:
        lines.append(
            f"  approvals: {len(approved)} of {view.required_approvals} "
            f"({view.policy.describe_approvers()}); eligible: {approvers}"
        )
    for d in [*view.approvals, *view.denials]:
        by = f" by admin {d.on_behalf_by.email}" if d.on_behalf_by else ""
        note = f": {d.reason}" if d.reason else ""
        lines.append(
            f"    {d.verdict.value} ({d.stage}) {d.approver.email}{by} via {d.channel} at {_when(d.at)}{note}"
        )
    if view.pending_extension is not None:
        lines.append(f"  extension of {format_duration(view.pending_extension.by)} awaits approval")
    if view.expires_at is not None and not view.status.is_terminal:
        lines.append(f"  expires: {_when(view.expires_at)}")
    if view.status.value == "PENDING" and view.timeout_at is not None:
        lines.append(f"  times out: {_when(view.timeout_at)}")
    if view.ended_at is not None:
        lines.append(f"  ended: {_when(view.ended_at)}")
    if view.sessions_used:
        killed = ", ".join(view.sessions_killed) or "none (none was open)"
        lines.append(f"  sessions used: {len(view.sessions_used)}; killed: {killed}")
    if view.sessions_left_open:
        lines.append(f"  STILL OPEN after the kills (end them in hoop): {', '.join(view.sessions_left_open)}")
    if view.closed_reason:
        lines.append(f"  why: {view.closed_reason}")
    if view.failure_reason:
        lines.append(f"  failure: {view.failure_reason}")
    return lines


def _print_view(doc: dict[str, Any], headline: str | None = None) -> None:
    view = RequestView.model_validate(doc)
    if headline:
        click.echo(headline.format(view=view))
    for line in describe(view):
        click.echo(line)


def _printer(headline: str | None = None) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _print_view(doc, headline)


def _print_list(doc: dict[str, Any]) -> None:
    """Aligned plain columns, never wrapped or cut, so they read in a terminal and grep in a pipe."""
    views = [RequestView.model_validate(v) for v in doc.get("requests", [])]
    if not views:
        click.echo("no requests")
        return
    rows = [("ID", "STATUS", "REQUESTER", "ACCESS", "DURATION", "APPROVALS", "CREATED")]
    for v in views:
        status = v.status.value + (f" ({v.end_reason.value})" if v.end_reason else "")
        approved = len([d for d in v.approvals if d.stage == "request"])
        rows.append(
            (
                v.id,
                status,
                v.requester.email,
                f"{v.resource} {v.role}",
                format_duration(v.requested_duration),
                f"{approved}/{v.required_approvals}",
                _when(v.created_at),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- commands --------------------------------------------------------------------------------------

_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
_as_option = click.option("--as", "as_", metavar="EMAIL", help="Act as this person (admin tokens only).")


@click.group("request", cls=SummaryGroup)
def request() -> None:
    """Just-in-time access requests (through grantflow's REST API)."""


@request.command("create")
@click.option("--resource", required=True, help="The resource, e.g. pg-prod.")
@click.option("--role", default=None, help="Its role; optional when the resource has only one.")
@click.option("--duration", required=True, type=DURATION, help="How long: 30s, 15m, 2h, 1d or PT2H.")
@click.option("--reason", required=True, help="Why (a ticket or incident id).")
@click.option(
    "--requester", metavar="EMAIL", default=None, help="Whose access (admin tokens only for others)."
)
@click.option("--break-glass", is_flag=True, help="Emergency access at once, reviewed afterwards.")
@_json_option
@click.pass_context
def create(
    ctx: click.Context,
    resource: str,
    role: str | None,
    duration: str,
    reason: str,
    requester: str | None,
    break_glass: bool,
    as_json: bool,
) -> None:
    """Ask for just-in-time access to a role of a resource, for a while."""
    if not reason.strip():
        raise click.BadParameter("the reason is empty; say why the access is needed", param_hint="--reason")
    run_api_command(
        ctx,
        as_json,
        lambda c: c.create(
            resource=resource,
            role=role,
            duration=duration,
            reason=reason,
            requester=requester,
            break_glass=break_glass,
        ),
        _printer("created {view.id}"),
    )


_PAST = {"approve": "approved", "deny": "denied"}


def _decision_command(verdict: str) -> click.Command:
    @click.argument("request_id", metavar="ID")
    @_as_option
    @click.option("--reason", default="", help="Why (shown to the requester, kept as evidence).")
    @_json_option
    @click.pass_context
    def command(ctx: click.Context, request_id: str, as_: str | None, reason: str, as_json: bool) -> None:
        run_api_command(
            ctx,
            as_json,
            lambda c: c.decide(request_id, verdict, reason=reason, as_=as_),
            _printer(f"{_PAST[verdict]} {{view.id}}; now {{view.status.value}}"),
        )

    command.__doc__ = f"{verdict.capitalize()} request ID as yourself (or, admin, as someone with --as)."
    return click.command(verdict)(command)


request.add_command(_decision_command("approve"))
request.add_command(_decision_command("deny"))


@request.command("show")
@click.argument("request_id", metavar="ID")
@_json_option
@click.pass_context
def show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """Show request ID."""
    run_api_command(ctx, as_json, lambda c: c.show(request_id), _printer())


@request.command("list")
@click.option("--status", "statuses", multiple=True, help="Only this status (repeatable).")
@click.option("--requester", metavar="EMAIL", default=None, help="Only this requester's.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@_json_option
@click.pass_context
def list_(
    ctx: click.Context, statuses: tuple[str, ...], requester: str | None, limit: int, as_json: bool
) -> None:
    """List requests, newest first."""
    run_api_command(
        ctx, as_json, lambda c: c.list(statuses=list(statuses), requester=requester, limit=limit), _print_list
    )


@request.command("extend")
@click.argument("request_id", metavar="ID")
@click.option("--by", required=True, type=DURATION, help="How much longer: 30m, 1h, ...")
@click.option("--reason", default="", help="Why.")
@_as_option
@_json_option
@click.pass_context
def extend(ctx: click.Context, request_id: str, by: str, reason: str, as_: str | None, as_json: bool) -> None:
    """Extend active access ID (within the policy's cumulative maximum)."""
    run_api_command(
        ctx,
        as_json,
        lambda c: c.extend(request_id, by, reason=reason, as_=as_),
        _printer("extension of {view.id} asked or applied"),
    )


def _action_command(action: str, doc: str, done: str) -> click.Command:
    @click.argument("request_id", metavar="ID")
    @click.option("--reason", default="", help="Why.")
    @_as_option
    @_json_option
    @click.pass_context
    def command(ctx: click.Context, request_id: str, reason: str, as_: str | None, as_json: bool) -> None:
        run_api_command(
            ctx,
            as_json,
            lambda c: c.act(request_id, action, reason=reason, as_=as_),
            _printer(f"{done} {{view.id}}; now {{view.status.value}}"),
        )

    command.__doc__ = doc
    return click.command(action)(command)


request.add_command(_action_command("relinquish", "Give active access ID back early.", "relinquished"))
request.add_command(_action_command("cancel", "Cancel pending request ID.", "cancelled"))
request.add_command(_action_command("revoke", "Revoke active access ID (admins and approvers).", "revoked"))
