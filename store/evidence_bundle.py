"""Evidence bundles an auditor can check offline: every file hashed in a manifest, the manifest signed.

A campaign report is a directory (``summary.html``, ``items.csv``, ``decisions.jsonl``, ``population.json``)
plus ``manifest.json``, which lists each file's SHA-256 and size with the campaign's, workflow's and run ids
and the ledger head at the time of the report, and carries an Ed25519 signature over its own canonical JSON.
The key comes from configuration (``GRANTFLOW_EVIDENCE_SIGNING_KEY``); the auditor holds the public key and
runs ``grantflow campaign verify-report DIR --public-key KEY``. Verification uses *the auditor's* key, never
the one the manifest names, so a bundle re-hashed and re-signed with another key fails; a file changed,
added or removed fails too. The manifest's own hash goes to the ledger, tying the bundle to the chain.

CSV cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) are
written with a leading apostrophe (OWASP's CSV injection guidance), so opening ``items.csv`` runs nothing.

This module writes and checks files; it never reads the store (the report activity gathers the rows).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST = "manifest.json"
FORMAT = "grantflow-evidence/1"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BundleError(ValueError):
    """A bundle that does not verify, or a key that cannot be used; the message says which and why."""


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def load_private_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key: PEM (PKCS#8), or the 32-byte seed in base64."""
    raw = text.strip()
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(raw.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise BundleError("the evidence signing key is not an Ed25519 key")
            return key
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw, validate=True))
    except BundleError:
        raise
    except ValueError as exc:
        raise BundleError(f"the evidence signing key cannot be read: {exc}") from None


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key: PEM (SubjectPublicKeyInfo), or the 32 raw bytes in base64."""
    raw = text.strip()
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(raw.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise BundleError("the public key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw, validate=True))
    except BundleError:
        raise
    except ValueError as exc:
        raise BundleError(f"the public key cannot be read: {exc}") from None


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@dataclass(frozen=True)
class WrittenBundle:
    directory: Path
    manifest_sha256: str
    files: tuple[str, ...]


def signed_bundle(
    files: Mapping[str, bytes], *, about: Mapping[str, Any], signing_key: Ed25519PrivateKey
) -> dict[str, bytes]:
    """``files`` with their signed ``manifest.json`` added. ``about`` holds the campaign, workflow and run
    ids, the ledger head and the generation time."""
    entries = {name: _file_entry(data) for name, data in files.items()}
    return {**files, MANIFEST: signed_manifest(entries, about=about, signing_key=signing_key)}


def file_entry_of(path: Path) -> dict[str, Any]:
    """A file's manifest entry (SHA-256 and size), read from disk a block at a time."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "bytes": size}


def signed_manifest(
    entries: Mapping[str, Mapping[str, Any]], *, about: Mapping[str, Any], signing_key: Ed25519PrivateKey
) -> bytes:
    """The signed ``manifest.json`` of files given by their entries (:func:`file_entry_of`), for bundles
    too large to hold in memory; :func:`signed_bundle` for those that are not."""
    if MANIFEST in entries:
        raise BundleError(f"{MANIFEST} is written by the bundle itself")
    for name in entries:
        if "/" in name or name.startswith("."):
            raise BundleError(f"bundle file names are plain names, not {name!r}")
    body: dict[str, Any] = {
        "format": FORMAT,
        **about,
        "files": {name: dict(entry) for name, entry in sorted(entries.items())},
    }
    signature = signing_key.sign(_canonical(body))
    manifest = {
        **body,
        "signature": {
            "algorithm": "ed25519",
            "public_key": public_key_text(signing_key),
            "value": base64.b64encode(signature).decode(),
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def manifest_sha256(bundle: Mapping[str, bytes]) -> str:
    return hashlib.sha256(bundle[MANIFEST]).hexdigest()


def write_files(directory: Path, bundle: Mapping[str, bytes]) -> WrittenBundle:
    """Write a bundle (as :func:`signed_bundle` made it, or as stored) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in bundle.items():
        if "/" in name or name.startswith("."):
            raise BundleError(f"bundle file names are plain names, not {name!r}")
        (directory / name).write_bytes(data)
    return WrittenBundle(
        directory, manifest_sha256(bundle), tuple(sorted(n for n in bundle if n != MANIFEST))
    )


def write_bundle(
    directory: Path,
    files: Mapping[str, bytes],
    *,
    about: Mapping[str, Any],
    signing_key: Ed25519PrivateKey,
) -> WrittenBundle:
    """Sign ``files`` and write them with their manifest into ``directory`` (created if needed)."""
    return write_files(directory, signed_bundle(files, about=about, signing_key=signing_key))


@dataclass(frozen=True)
class Verification:
    manifest: dict[str, Any]
    manifest_sha256: str
    files: tuple[str, ...]


def verify_bundle(directory: Path, public_key: Ed25519PublicKey) -> Verification:
    """Check every file against the manifest and the manifest's signature against ``public_key``;
    a :class:`BundleError` names the first problem found."""
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{directory}: no {MANIFEST}: this is not an evidence bundle") from None
    try:
        manifest = json.loads(raw)
        signature = manifest.pop("signature")
        value = base64.b64decode(signature["value"], validate=True)
        listed: dict[str, Any] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{MANIFEST} is malformed: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST} is not a {FORMAT} manifest")
    try:
        public_key.verify(value, _canonical(manifest))
    except InvalidSignature:
        raise BundleError(
            f"{MANIFEST}'s signature does not verify with the given public key: the manifest was changed "
            "or signed with another key"
        ) from None
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    if extra := sorted(present - set(listed)):
        raise BundleError(f"files not in the manifest: {', '.join(extra)}")
    for name, entry in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{name} is listed in the manifest but missing")
        if _file_entry(path.read_bytes()) != entry:
            raise BundleError(f"{name} does not match its SHA-256 in the manifest: it was changed")
    return Verification(manifest, hashlib.sha256(raw).hexdigest(), tuple(sorted(listed)))
