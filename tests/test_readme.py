"""The README runs verbatim: its demo blocks run against ``grantflow dev`` and print what it says they print.

Each demo section's fenced ``bash`` block is parsed into steps: a ``grantflow …`` command line (``\\``
continuations joined), its trailing ``# …`` comment, and the ``# -> …`` sample lines under it. The steps run
in order, as written, with one substitution: an id the README writes as ``req-…`` or ``hoop-…`` is the id the
most recent id-making step of the same block printed (``ID_MAKERS``). What is checked:

- a ``# -> …`` sample must appear in the step's output (stdout then stderr) after ``mask`` (ids become
  ``req-…`` / ``hoop-…``, times "…"; JSON is compared in its one-line form; whitespace runs are one
  space); "…" in the README matches anything;
- a trailing comment that starts with "refused" (or a sample that starts with "grantflow: refused") needs a
  non-zero exit, any other step exit 0;
- in a trailing comment, each request status in capitals (with its end reason in parentheses, if written)
  and each "double-quoted" fragment ("…" again matching anything) must appear in the output.

A person types slower than this test, so two things are waited for, bounded, rather than raced: a step
refused because its Slack message or Jira ticket is not posted yet is retried, and a ``request show`` whose
comment names a status is repeated until it shows it. "# about N s later" waits until the request has ended.

The policy snippet in the README's Policies section must equal the same table of examples/policies.toml.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.test_dev_stack import PORTS, REPO_ROOT, DevStack, _free_port

README = REPO_ROOT / "README.md"

# The demo blocks: (the heading they follow, which bash block under it; 0 is the first).
JIT = ("## A JIT request in the demo", 0)
HOOP_GATES = ("### hoop's two gates in the demo", 0)
LEAVER = ("### A leaver in the demo", 0)
CHANNELS = ("### Slack, Jira and email in the demo", 0)
HOOP_REVIEW = ("### Slack, Jira and email in the demo", 1)
CAMPAIGN = ("### A campaign in the demo", 0)

# Steps whose output names the request the following steps of the block act on (the last id it prints).
ID_MAKERS = (
    "request create",
    "sandbox jira-request",
    "sandbox slack-command",
    "sandbox hoop-review",
    "campaign launch",
)
README_ID = re.compile(r"\b(req|hoop|cmp)-…")
REAL_ID = re.compile(
    r"\b(req|hoop|cmp)-(?:[0-9a-f]{12}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
)
TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d| UTC)?")
STATUS = re.compile(
    r"\b(?:PENDING|ACTIVE|ENDED|CANCELLED|DENIED|FAILED|TIMED_OUT|OPEN|DRY_RUN|CLOSED)\b(?: \([a-z_-]+\))?"
)
QUOTED = re.compile(r'"([^"]+)"')
WAIT_FOR_END = re.compile(r"^about \d+ s later$")
# Refusals that only mean "not posted yet": a person would not have typed the command so fast.
NOT_YET = ("has no Slack message about", "no Jira ticket for")
TERMINAL = {"ENDED", "CANCELLED", "DENIED", "FAILED", "TIMED_OUT"}


def mask(text: str) -> str:
    """The one place output is made comparable with the README: ids masked, JSON in one line, spaces."""
    try:
        text = json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        pass
    text = REAL_ID.sub(r"\1-…", text)
    text = TIME.sub("…", text)
    return " ".join(text.split())


def sample_pattern(sample: str) -> re.Pattern[str]:
    """A README sample as a pattern: literal, except that "…" matches anything."""
    parts = [re.escape(part) for part in " ".join(sample.split()).split("…")]
    return re.compile(".*?".join(parts), re.DOTALL)


@dataclass
class Step:
    line: int  # in README.md, for the failure message
    command: str
    comment: str = ""
    sample: list[str] = field(default_factory=list)
    prose_before: list[str] = field(default_factory=list)


def readme_block(heading: str, nth: int) -> tuple[int, list[str]]:
    """The nth bash block of the section under heading (1-based line number of its first line, its lines)."""
    lines = README.read_text().splitlines()
    level = heading.split()[0]
    seen, fence = -1, None
    for number in range(lines.index(heading) + 1, len(lines)):
        text = lines[number]
        if text.startswith("```"):
            fence = None if fence is not None else number
            if fence is not None and text == "```bash":
                seen += 1
                if seen == nth:
                    end = lines.index("```", number + 1)
                    return number + 2, lines[number + 1 : end]
        elif fence is None and re.match(rf"#{{1,{len(level)}}} ", text):
            break  # the next section of the same or a higher level
    raise AssertionError(f"README.md: no bash block {nth} under {heading!r}")


def parse_steps(first_line: int, lines: list[str]) -> list[Step]:
    steps: list[Step] = []
    prose: list[str] = []
    in_sample = False
    number = 0
    while number < len(lines):
        text = lines[number]
        line = first_line + number
        number += 1
        if text.startswith("grantflow "):
            while text.endswith("\\"):
                text = text[:-1] + " " + lines[number].strip()
                number += 1
            command, _, comment = text.partition(" # ")
            steps.append(Step(line, command.strip(), comment.strip(), prose_before=prose))
            prose, in_sample = [], False
        elif text.startswith("# -> "):
            assert steps, f"README.md:{line}: a sample before any command"
            steps[-1].sample.append(text[len("# -> ") :])
            in_sample = True
        elif in_sample and text.startswith("#  "):
            steps[-1].sample.append(text[1:])
        elif text.startswith("#"):
            prose.append(text.lstrip("# ").strip())
            in_sample = False
        elif text.strip():
            raise AssertionError(f"README.md:{line}: not a grantflow command or a comment: {text!r}")
        else:
            in_sample = False
    return steps


def run_block(stack: DevStack, block: tuple[str, int], request_id: str | None = None) -> None:
    first_line, lines = readme_block(*block)
    for step in parse_steps(first_line, lines):
        where = f"README.md:{step.line}: {step.command}"
        if any(WAIT_FOR_END.match(note) for note in step.prose_before):
            assert request_id, f"{where}: nothing to wait for"
            _wait(stack, request_id, lambda status: status in TERMINAL, where)
        args = shlex.split(step.command)[1:]
        if any(README_ID.search(arg) for arg in args):
            assert request_id, f"{where}: no earlier step of the block printed a request id"
            args = [README_ID.sub(request_id, arg) for arg in args]
        done = _run(stack, args, step)
        output = mask(done.stdout) + " " + mask(done.stderr)
        if any(step.command.startswith(f"grantflow {maker}") for maker in ID_MAKERS):
            ids = [m.group(0) for m in REAL_ID.finditer(done.stdout + done.stderr)]
            assert ids, f"{where}: printed no request id: {done.stdout} {done.stderr}"
            request_id = ids[-1]
        refused = step.comment.startswith("refused") or " ".join(step.sample).startswith("grantflow: refused")
        if refused:
            assert done.returncode != 0, f"{where}: not refused: {done.stdout}"
        else:
            assert done.returncode == 0, f"{where}: exited {done.returncode}: {done.stdout} {done.stderr}"
        if step.sample:
            sample = " ".join(step.sample)
            said = f"{where}: the README says\n{sample}\nit printed\n{output}"
            assert sample_pattern(sample).search(output), said
        for claim in [m.group(0) for m in STATUS.finditer(step.comment)] + QUOTED.findall(step.comment):
            assert sample_pattern(claim).search(output), f"{where}: {claim!r} not in\n{output}"


def _run(stack: DevStack, args: list[str], step: Step) -> subprocess.CompletedProcess[str]:
    # A status the comment names is waited for, as a person would look again (a campaign's snapshot, a
    # request's grant take a moment).
    statuses = (
        STATUS.findall(step.comment) if args[:2] in (["request", "show"], ["campaign", "status"]) else []
    )
    deadline = time.monotonic() + 30
    while True:
        done = stack.cli(*args, expect=None)
        pending = any(reason in done.stderr for reason in NOT_YET) or (
            statuses and not all(status in done.stdout for status in statuses)
        )
        if not pending or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def _wait(stack: DevStack, request_id: str, ended: Callable[[str], bool], where: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        status = stack.show(request_id)["status"]
        if ended(status):
            return
        assert time.monotonic() < deadline, f"{where}: {request_id} is still {status}"
        time.sleep(0.5)


@contextmanager
def _stack(tmp_path: Path, *channels: str) -> Iterator[DevStack]:
    stack = DevStack(cwd=tmp_path, ports={name: _free_port() for name in PORTS}, channels=channels)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _json_id(done: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(done.stdout)["id"])


@pytest.mark.long
@pytest.mark.e2e
def test_readme_demo_blocks_run_verbatim(tmp_path: Path) -> None:
    with _stack(tmp_path) as stack:
        run_block(stack, JIT)
        run_block(stack, HOOP_GATES)
        run_block(stack, HOOP_REVIEW)
        # The leaver section starts from what its prose says: a grant of alice's ACTIVE, with a session
        # open, and another request of hers PENDING. Its `req-…` is the active one.
        active = _json_id(
            stack.cli("request", "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h",
                      "--reason", "INC-7", "--requester", "alice@example.com", "--json")
        )  # fmt: skip
        for approver in ("bob@example.com", "carol@example.com"):
            stack.cli("--user", approver, "request", "approve", active)
        _wait(stack, active, lambda status: status == "ACTIVE", "the leaver's active grant")
        stack.cli("sandbox", "connect", "--user", "alice@example.com", "--connection", "pg-prod-admin")
        stack.cli("request", "create", "--resource", "warehouse", "--role", "read", "--duration", "1h",
                  "--reason", "report", "--requester", "alice@example.com")  # fmt: skip
        run_block(stack, LEAVER, request_id=active)
        # The campaign section runs where the README's reader is, beside examples/.
        (tmp_path / "examples").mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "examples" / "campaign.toml", tmp_path / "examples" / "campaign.toml")
        run_block(stack, CAMPAIGN)


@pytest.mark.long
@pytest.mark.e2e
def test_readme_slack_jira_and_email_block_runs_verbatim(tmp_path: Path) -> None:
    with _stack(tmp_path, "slack", "jira", "email") as stack:
        run_block(stack, CHANNELS)


def test_readme_policy_snippet_is_the_example_policy() -> None:
    text = README.read_text()
    section = text[text.index("## Policies") :]
    start = section.index("```toml\n") + len("```toml\n")
    snippet = tomllib.loads(section[start : section.index("\n```", start)])
    example = tomllib.loads((REPO_ROOT / "examples" / "policies.toml").read_text())
    assert snippet["resources"], "the README's policy snippet is empty"
    for resource, table in snippet["resources"].items():
        for role, policy in table["roles"].items():
            assert policy == example["resources"][resource]["roles"][role], f"{resource} {role}"
