"""Configuration and operator commands: invalid settings fail at start naming the setting; tokens are
issued once and stored as hashes; dev secrets never reach a deployment with its own database."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from configuration.settings import SettingsError, load_settings
from grantflow.cli import main
from web.auth import TokenRegistry


def test_invalid_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANTFLOW_GATEWAY_MAX_GRANT", "72h")
    monkeypatch.setenv("GRANTFLOW_WEB_PORT", "eighty")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "GRANTFLOW_GATEWAY_MAX_GRANT" in message and "48h" in message
    assert "GRANTFLOW_WEB_PORT" in message


def test_an_invalid_setting_stops_a_command_with_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANTFLOW_SYNC_MAX_DEACTIVATION_SHARE", "3")
    result = CliRunner().invoke(main, ["request", "list"])
    assert result.exit_code == 4
    assert "GRANTFLOW_SYNC_MAX_DEACTIVATION_SHARE" in result.output


def test_a_toml_config_file_is_read_and_unknown_keys_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "grantflow.toml"
    config.write_text('temporal_namespace = "prod"\nsync_interval = "5m"\n')
    settings = load_settings(config)
    assert settings.temporal_namespace == "prod" and settings.sync_interval.total_seconds() == 300
    config.write_text('temporal_namespce = "typo"\n')
    with pytest.raises(SettingsError, match="temporal_namespce: unknown setting"):
        load_settings(config)
    assert "GRANTFLOW_CONFIG" not in os.environ  # an explicit file is used for that load only


def test_token_issue_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRANTFLOW_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(
        main, ["token", "issue", "--name", "ops", "--email", "bob@example.com", "--role", "requester"]
    )
    assert result.exit_code == 0, result.output
    raw = result.stdout.strip().splitlines()[0]
    stored = (tmp_path / "tokens.toml").read_text()
    assert raw not in stored and hashlib.sha256(raw.encode()).hexdigest() in stored
    principal = TokenRegistry(tmp_path / "tokens.toml").authenticate(raw)
    assert principal is not None and principal.email == "bob@example.com" and not principal.is_admin
    refused = CliRunner().invoke(main, ["token", "issue", "--name", "x", "--role", "requester"])
    assert refused.exit_code == 2


def test_dev_secrets_are_ignored_by_a_deployment_with_its_own_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets.toml").write_text('ledger_key = "dev-key"\n')
    monkeypatch.setenv("GRANTFLOW_STATE_DIR", str(tmp_path))
    assert load_settings().require_secret("ledger_key") == "dev-key"
    monkeypatch.setenv("GRANTFLOW_DATABASE_URL", "postgresql://grantflow@db/grantflow")
    assert load_settings().ledger_key is None
    assert os.environ["GRANTFLOW_DATABASE_URL"]
