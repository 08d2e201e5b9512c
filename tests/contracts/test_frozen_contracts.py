"""The frozen contracts in ``tests/contracts`` are exactly what ``regenerate.py`` makes of the vendor specs.

The contract tests read only the frozen files, so this is what keeps them from drifting from the specs. It
needs ``../shared/specs``, which a fresh clone lacks: there it is skipped, and the frozen files are used as
committed.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.contracts import source
from tests.contracts.regenerate import COMMAND, CONTRACTS, SPECS_DIR, frozen_path, missing_specs, regenerated


def test_the_frozen_contracts_are_what_the_specs_give() -> None:
    missing = missing_specs()
    if missing:
        pytest.skip(
            f"the vendor specs are not in {SPECS_DIR} (missing {', '.join(p.name for p in missing)}): "
            "nothing to compare the frozen contracts in tests/contracts with"
        )
    texts = regenerated()
    assert set(texts) == set(CONTRACTS)
    stale = {
        f"{frozen_path(name).name} (frozen from sha256 {source(name)['sha256'][:12]}, "
        f"{CONTRACTS[name].spec} is {sha256_of(name)[:12]})"
        for name, text in texts.items()
        if frozen_path(name).read_text(encoding="utf-8") != text
    }
    assert not stale, f"frozen contracts differ from the specs in {SPECS_DIR}: {sorted(stale)}; run {COMMAND}"


def sha256_of(name: str) -> str:
    return hashlib.sha256((SPECS_DIR / CONTRACTS[name].spec).read_bytes()).hexdigest()
