"""Evidence bundles verify offline, and fail after any change: one byte of any file, a file added or
removed, a manifest re-hashed without the signing key, or another key."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from store.evidence_bundle import (
    MANIFEST,
    BundleError,
    csv_text,
    load_private_key,
    load_public_key,
    public_key_text,
    safe_cell,
    verify_bundle,
    write_bundle,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FILES = {
    "summary.html": b"<html><body>42 kept, 7 revoked</body></html>",
    "items.csv": b"item,verdict\nit-1,keep\n",
    "decisions.jsonl": b'{"item":"it-1","verdict":"keep"}\n',
    "population.json": b'{"hash":"abc"}',
}
ABOUT = {"campaign_id": "cmp-1", "workflow_id": "campaign-cmp-1", "run_ids": ["r1"], "ledger_head": [7, "ff"]}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    write_bundle(tmp_path / "report", FILES, about=ABOUT, signing_key=KEY)
    return tmp_path / "report"


def test_a_written_bundle_verifies_with_the_public_key(bundle: Path) -> None:
    result = verify_bundle(bundle, KEY.public_key())
    assert result.files == tuple(sorted(FILES))
    assert result.manifest["campaign_id"] == "cmp-1"
    assert result.manifest["ledger_head"] == [7, "ff"]
    assert len(result.manifest_sha256) == 64


@pytest.mark.parametrize("name", sorted(FILES))
def test_one_changed_byte_in_any_file_fails(bundle: Path, name: str) -> None:
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} does not match its SHA-256"):
        verify_bundle(bundle, KEY.public_key())


def test_added_and_removed_files_fail(bundle: Path) -> None:
    (bundle / "extra.txt").write_text("slipped in")
    with pytest.raises(BundleError, match=r"files not in the manifest: extra\.txt"):
        verify_bundle(bundle, KEY.public_key())
    (bundle / "extra.txt").unlink()
    (bundle / "items.csv").unlink()
    with pytest.raises(BundleError, match=r"items\.csv is listed in the manifest but missing"):
        verify_bundle(bundle, KEY.public_key())


def test_a_manifest_rehashed_without_the_key_or_signed_by_another_fails(bundle: Path) -> None:
    (bundle / "items.csv").write_bytes(b"item,verdict\nit-1,revoke\n")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"]["items.csv"]["sha256"] = hashlib.sha256(b"item,verdict\nit-1,revoke\n").hexdigest()
    manifest["files"]["items.csv"]["bytes"] = 24
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signature does not verify"):
        verify_bundle(bundle, KEY.public_key())
    # Re-signing with another key (and naming it in the manifest) does not fool the auditor's key.
    forger = Ed25519PrivateKey.generate()
    write_bundle(
        bundle, {**FILES, "items.csv": b"item,verdict\nit-1,revoke\n"}, about=ABOUT, signing_key=forger
    )
    with pytest.raises(BundleError, match="signature does not verify"):
        verify_bundle(bundle, KEY.public_key())
    assert verify_bundle(bundle, forger.public_key()).files  # it is only valid under the forger's key


def test_malformed_manifests_and_directories_say_so(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="not an evidence bundle"):
        verify_bundle(tmp_path, KEY.public_key())
    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json is malformed"):
        verify_bundle(bundle, KEY.public_key())
    with pytest.raises(BundleError, match="plain names"):
        write_bundle(tmp_path / "x", {"../escape": b""}, about={}, signing_key=KEY)


def test_keys_load_from_pem_and_base64() -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    assert public_key_text(load_private_key(seed)) == public_key_text(KEY)
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert public_key_text(load_private_key(pem)) == public_key_text(KEY)
    public_pem = (
        KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert public_key_text(load_public_key(public_pem)) == public_key_text(KEY)
    assert public_key_text(load_public_key(public_key_text(KEY))) == public_key_text(KEY)
    with pytest.raises(BundleError, match="cannot be read"):
        load_private_key("not-base64!")
    with pytest.raises(BundleError, match="cannot be read"):
        load_public_key(base64.b64encode(b"short").decode())


def test_csv_cells_never_run_as_formulas() -> None:
    assert safe_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    for start in ("+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(start).startswith("'")
    assert safe_cell("bob@example.com") == "bob@example.com"
    assert safe_cell(None) == ""
    text = csv_text(["subject", "reason"], [["=cmd|' /C calc'!A0", "kept, as agreed"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["subject", "reason"], ["'=cmd|' /C calc'!A0", "kept, as agreed"]]
