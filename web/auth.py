"""Bearer tokens of the REST API: who a token acts as, and which roles it holds.

The tokens file (``settings.tokens_file``, TOML) lists ``[[tokens]]`` tables::

    [[tokens]]
    name = "alice-laptop"                 # for people and logs; unique
    sha256 = "9f86d081884c7d65..."        # hex SHA-256 of the raw token; raw tokens are never stored
    email = "alice@example.com"           # the directory identity it acts as (optional for service tokens)
    roles = ["requester"]                 # requester and/or admin; or auditor

Roles (see the design note, "Who is acting"):

- no role: may read requests and try to approve or deny *as itself* (eligibility is the workflow's);
- ``requester``: may also create requests for itself, and cancel, extend or relinquish its own
  (ownership is checked by the workflow);
- ``admin``: may do everything, and act on behalf of someone (``as`` / ``requester``), recorded as
  "admin X on behalf of Y" — votes for approvers or reviewers only where the policy or campaign sets
  ``allow_admin_on_behalf``;
- ``auditor``: reads requests, campaigns and the ledger, and changes nothing (refused on every call that
  acts, whatever other role the token holds).

Invariants: a presented token is hashed and compared with every entry in constant time (so neither the
match nor its position leaks through timing); the file is re-read when it changes, so a token issued
while the server runs works at once; a file that cannot be used is an error naming the entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from domain.identity import PersonRef

ROLES = frozenset({"requester", "admin", "auditor"})
TOKEN_PREFIX = "gf_"


class TokenFileError(ValueError):
    """A tokens file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who presented a valid token."""

    name: str
    email: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_auditor(self) -> bool:
        return "auditor" in self.roles

    @property
    def may_request(self) -> bool:
        return bool(self.roles & {"requester", "admin"}) and not self.is_auditor

    @property
    def token_identity(self) -> PersonRef:
        """Who the token is in the ledger when no person stands behind it (an admin service token such
        as the README's ``ops-bot``): ``token:<name>``, never mistaken for a directory identity."""
        return PersonRef(id=f"token:{self.name}", email=f"token:{self.name}")


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    digest: bytes


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _parse(path: Path, text: str) -> list[_Entry]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"{path}: not valid TOML: {exc}") from None
    raw_entries = data.get("tokens", [])
    if not isinstance(raw_entries, list):
        raise TokenFileError(f"{path}: 'tokens' must be an array of tables ([[tokens]])")
    entries: list[_Entry] = []
    names: set[str] = set()
    for number, raw in enumerate(raw_entries, start=1):
        where = f"{path}: tokens[{number}]"
        if not isinstance(raw, dict):
            raise TokenFileError(f"{where} is not a table")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise TokenFileError(f"{where}: name is missing")
        where = f"{path}: token {name!r}"
        if name in names:
            raise TokenFileError(f"{where} appears twice")
        names.add(name)
        digest = raw.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise TokenFileError(f"{where}: sha256 must be the 64 hex digits of the token's SHA-256")
        try:
            digest_bytes = bytes.fromhex(digest)
        except ValueError:
            raise TokenFileError(f"{where}: sha256 is not hexadecimal") from None
        email = raw.get("email")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise TokenFileError(f"{where}: email {email!r} is not an email address")
        roles = raw.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenFileError(f"{where}: roles must be a list of strings")
        unknown = sorted(set(roles) - ROLES)
        if unknown:
            raise TokenFileError(f"{where}: unknown role(s) {', '.join(unknown)}; roles are admin, requester")
        if email is None and "admin" not in roles:
            raise TokenFileError(f"{where}: a token without an email must be an admin service token")
        entries.append(
            _Entry(Principal(name=name, email=email or None, roles=frozenset(roles)), digest_bytes)
        )
    return entries


class TokenRegistry:
    """The valid tokens, read from a tokens file (re-read when it changes) or given directly."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._entries: list[_Entry] = []
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if path is not None:
            self._reload()

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def count(self) -> int:
        """How many tokens the file lists now (re-read if it changed)."""
        if self._path is not None:
            with self._lock:
                self._reload()
        return len(self._entries)

    def _reload(self) -> None:
        assert self._path is not None
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = [], None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._entries = _parse(self._path, self._path.read_text(encoding="utf-8"))
        self._stamp = stamp

    def authenticate(self, raw: str) -> Principal | None:
        """The principal a raw token belongs to, or None. Every entry is compared, in constant time."""
        if self._path is not None:
            with self._lock:
                self._reload()
        presented = hashlib.sha256(raw.encode("utf-8")).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest) and found is None:
                found = entry.principal
        return found


def issue_token(path: Path, name: str, email: str | None, roles: Sequence[str] | Iterable[str]) -> str:
    """Create a token, add its hash to the tokens file as ``name`` (replacing an entry of that name) and
    return the raw token — the only time it exists in clear. The file is written with mode 0600."""
    roles = list(roles)
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise TokenFileError(f"unknown role(s) {', '.join(unknown)}; roles are admin, requester")
    if email is None and "admin" not in roles:
        raise TokenFileError("a token without an email must be an admin service token")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    existing: list[dict[str, Any]] = []
    if path.exists():
        _parse(path, path.read_text(encoding="utf-8"))  # refuse to rewrite a file we cannot read
        existing = [t for t in tomllib.loads(path.read_text(encoding="utf-8")).get("tokens", [])]
    entry: dict[str, Any] = {"name": name, "sha256": hash_token(raw), "roles": roles}
    if email is not None:
        entry["email"] = email
    tokens = [t for t in existing if t.get("name") != name] + [entry]
    text = "# grantflow API tokens: SHA-256 hashes only, never raw tokens\n" + tomli_w.dumps(
        {"tokens": tokens}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return raw
