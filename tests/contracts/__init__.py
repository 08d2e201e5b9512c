"""The facts of the vendors' API specs that the contract tests check, frozen in the repository.

``hoop.json``, ``jira.json`` and ``slack.json`` hold, for each vendor spec in ``../shared/specs`` (which a
fresh clone does not have), the operations the local stand-ins serve and every schema those operations and
the tests reference, in the spec's own layout, without the documentation (descriptions, examples, tags)
that no test reads. Each records its source: the spec file, its sha256 and its upstream provenance.
``regenerate.py`` writes them from the specs; ``test_frozen_contracts.py`` checks, where the specs are
present, that they are still exactly what it would write.

``load_contract(name)`` gives the frozen spec in the shape the validators (``tests/hoop_spec.py``,
``tests/slack_spec.py``) read. Every other operation of the spec is in it too, as a stub marked
``NOT_FROZEN``: the validators still route a request exactly as the full spec would, and report a call to
one of them as not frozen rather than as missing from the spec.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent
NOT_FROZEN = "x-not-frozen"
# what a validator says of a request to an operation that is in the spec but not in the frozen file
NOT_FROZEN_HINT = "is in the spec but not frozen in tests/contracts: add it to tests/contracts/regenerate.py"


@cache
def _read(name: str) -> str:
    return (CONTRACTS_DIR / f"{name}.json").read_text(encoding="utf-8")


def load_contract(name: str) -> dict[str, Any]:
    """The frozen spec ``name`` (``hoop``, ``jira``, ``slack``), a fresh copy the caller may change."""
    frozen: dict[str, Any] = json.loads(_read(name))
    spec: dict[str, Any] = frozen["spec"]
    paths = spec.setdefault("paths", {})
    for operation in frozen["not_frozen"]:
        method, template = operation.split(" ", 1)
        paths.setdefault(template, {})[method.lower()] = {NOT_FROZEN: True}
    return spec


def source(name: str) -> dict[str, str]:
    """Where the frozen spec ``name`` comes from: spec file, its sha256, its upstream provenance."""
    recorded: dict[str, str] = json.loads(_read(name))["source"]
    return recorded
