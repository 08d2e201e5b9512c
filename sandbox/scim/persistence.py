"""Keeping the SCIM directory in a state file, since scim2-server keeps everything in memory.

``save`` snapshots every resource as JSON (written to a temporary file, fsynced, then renamed over the
old one). ``load`` reads it back through ``InMemoryStorage.resources`` — the storage's own bulk loader,
which stores resources as given — so ids, ``meta.created``, ``meta.lastModified`` and versions are kept
exactly; the version counter resumes after the largest stored version so ETags keep increasing. A file
that cannot be read raises instead of starting an empty directory. This module never decides *when* to
save; the server does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scim2_models import Group, Resource
from scim2_server.memory import InMemoryStorage

from sandbox.scim.models import UserModel

STATE_FORMAT = "grantflow.sandbox.scim"
STATE_VERSION = 1


def save(storage: InMemoryStorage, path: Path) -> None:
    """Snapshot every resource of ``storage`` to ``path`` atomically. The caller serialises saves."""
    with storage.lock:
        resources = [r.model_dump() for r in storage.resources]
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "saved_at": datetime.now(UTC).isoformat(),
        "resources": resources,
    }
    _atomic_write(path, json.dumps(document, indent=1, default=str).encode())


def load(storage: InMemoryStorage, path: Path) -> None:
    """Replace what ``storage`` holds with the resources saved in ``path``, ids and meta included."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != STATE_FORMAT or document.get("version") != STATE_VERSION:
            raise ValueError(f"not a {STATE_FORMAT} v{STATE_VERSION} file")
        resources: list[Resource[Any]] = []
        for raw in document["resources"]:
            kind = raw.get("meta", {}).get("resourceType")
            models: dict[str, type[Resource[Any]]] = {"User": UserModel, "Group": Group}
            resource = models[kind].model_validate(raw)
            if not resource.id or resource.meta is None or resource.meta.created is None:
                raise ValueError(f"a stored {kind} lacks its id or meta")
            resources.append(resource)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeError(f"cannot load the SCIM directory state from {path}: {exc}") from exc
    with storage.lock:
        # the storage's own loader: stores the resources as given, ids and meta included, and indexes them
        storage.resources = resources
        versions = [_version_number(r) for r in resources]
        storage.versions = itertools.count(max(versions, default=0) + 1)


def _version_number(resource: Resource[Any]) -> int:
    match = re.search(r"\d+", str(resource.meta.version if resource.meta else "") or "")
    return int(match.group()) if match else 0


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
