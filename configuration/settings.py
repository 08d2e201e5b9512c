"""Configuration from ``GRANTFLOW_*`` environment variables and an optional TOML file.

Precedence: explicit arguments > environment > TOML file (``GRANTFLOW_CONFIG`` or ``--config``) > defaults.
An invalid setting fails at start-up with :class:`SettingsError`, naming the setting and the problem.
Secrets are ``SecretStr``: they are read here, handed to adapters in the worker and the web app, and never
enter workflow inputs, results or history.
"""

from __future__ import annotations

import contextvars
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain.durations import PositiveDuration

ENV_PREFIX = "GRANTFLOW_"
CONFIG_ENV = "GRANTFLOW_CONFIG"
# An explicit --config for this load only (the environment is not touched).
_CONFIG_FILE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "grantflow_config_file", default=None
)


DEV_SECRETS_FILE = "secrets.toml"


_S3_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix ending in ``/`` or empty); a clear ValueError otherwise."""
    match = _S3_URL.match(url.strip())
    if match is None:
        raise ValueError(
            f"{url!r} is not an S3 anchor location: expected s3://<bucket>[/<prefix>] "
            "(bucket names are 3-63 lower-case letters, digits, dots and hyphens)"
        )
    bucket, prefix = match.group(1), (match.group(2) or "").strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class _DevSecretsSource(TomlConfigSettingsSource):
    """Only the ledger key, review-link secret and evidence key of a dev stack's generated secrets file."""

    KEYS = ("ledger_key", "review_link_secret", "evidence_signing_key")

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k in self.KEYS}

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, toml_file=path)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names each bad setting. Commands exit 4."""


class ServiceUnreachable(RuntimeError):
    """A service a setting points at (Temporal, the database) cannot be reached or is failing; the
    message names the setting. Commands exit 3."""


STATE_DIR_NAME = ".grantflow"


def find_state_dir(start: Path | None = None) -> Path | None:
    """The nearest ``.grantflow/`` folder in ``start`` (default: the current folder) or any folder above
    it, as git finds ``.git/``, so the CLI reaches the stack from anywhere inside the project; None when
    there is none."""
    try:
        here = (start or Path.cwd()).resolve()
    except OSError:  # the current folder was deleted
        return None
    for folder in (here, *here.parents):
        candidate = folder / STATE_DIR_NAME
        if candidate.is_dir():
            return candidate
    return None


def default_state_dir() -> Path:
    """``GRANTFLOW_STATE_DIR`` unset: the nearest existing ``.grantflow/`` (see :func:`find_state_dir`),
    else ``.grantflow`` in the current folder, where ``grantflow dev`` creates it."""
    return find_state_dir() or Path(STATE_DIR_NAME)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    state_dir: Path = Field(default_factory=default_state_dir, description="local state of grantflow dev")

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = Field(
        default=None, description="Temporal Cloud API key (implies TLS)"
    )
    temporal_tls: bool = False
    task_queue: str = "grantflow"
    worker_cached_workflows: int = Field(
        default=4000,
        ge=1,
        description="workflows a worker keeps in memory between their tasks: at least the open requests and "
        "campaign reviews, or every task of an evicted one replays its history",
    )

    # Observability: Prometheus metrics and log format
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="port the worker serves /metrics on (off when unset)"
    )
    temporal_metrics_address: str | None = Field(
        default=None, description="host:port the worker serves the Temporal SDK's metrics on (off when unset)"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line (worker and server)"
    )

    # SQL store and evidence ledger
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite under state_dir")
    ledger_key: SecretStr | None = Field(default=None, description="HMAC key chaining the evidence ledger")
    ledger_anchor_path: Path | None = Field(default=None, description="append-only file anchoring the head")
    # The shared anchor of a deployment (store/anchors.py): s3://bucket/prefix; empty = the file above
    ledger_anchor: str = Field(default="", description="s3://bucket/prefix: the shared Object Lock anchor")
    ledger_anchor_endpoint_url: str = Field(default="", description="S3-compatible endpoint; default AWS")
    ledger_anchor_region: str = ""
    ledger_anchor_access_key_id: str = Field(default="", description="default: boto3's credential chain")
    ledger_anchor_secret_access_key: SecretStr | None = None
    ledger_anchor_retention: PositiveDuration = Field(
        default=timedelta(days=400), description="Object Lock retention of each anchor object"
    )
    ledger_anchor_lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    ledger_anchor_interval: PositiveDuration = Field(
        default=timedelta(seconds=5), description="how often the anchoring job writes a new head"
    )

    # Policies and (until SCIM sync) the directory
    policies_file: Path | None = None
    organisation_file: Path | None = None

    # The identity provider (SCIM 2.0); without it the directory comes from organisation_file
    scim_url: str = ""
    scim_token: SecretStr | None = None
    sync_interval: PositiveDuration = timedelta(minutes=15)
    full_sync_interval: PositiveDuration = timedelta(hours=24)
    sync_max_deactivation_share: float = Field(
        default=0.10, gt=0, le=1, description="a sync deactivating more than this share of people stops"
    )
    group_sources: dict[str, Literal["idp", "gateway"]] = Field(
        default_factory=dict,
        description="where each group's membership is managed for revocations (default: idp)",
    )

    # The gateway (hoop.dev)
    hoop_url: str = ""
    hoop_api_key: SecretStr | None = None
    gateway_max_grant: PositiveDuration = timedelta(hours=48)
    renewal_lead: PositiveDuration = timedelta(minutes=30)
    revoke_escalate_after: PositiveDuration = timedelta(minutes=10)
    hoop_review_poll_interval: PositiveDuration = Field(
        default=timedelta(seconds=15), description="how often reviews left pending in hoop are looked for"
    )

    # Slack (approver DMs with buttons, /access); off unless a bot token is set
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = Field(default=None, description="xapp- token: Socket Mode")
    slack_api_url: str = Field(default="", description="Slack Web API base (a stand-in); default Slack's")
    slack_access_command: str = "/access"

    # Jira (a ticket per request, decisions by transition, intake project); off unless jira_url is set
    jira_url: str = ""
    jira_email: str = ""
    jira_api_token: SecretStr | None = None
    jira_project: str = "ACC"
    jira_issue_type: str = "Task"
    jira_labels: list[str] = Field(
        default_factory=list,
        description="labels on every ticket besides grantflow-<id> (Jinja of the request: {{ view.role }})",
    )
    jira_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="more fields on every ticket, custom fields by id (customfield_10050); strings in the "
        'values are Jinja of the request, e.g. {"customfield_10050": "{{ view.resource }}"}',
    )
    jira_transitions: dict[str, str] = Field(
        default_factory=lambda: {
            "Approve": "Approved",
            "Deny": "Denied",
            "Close": "Done",
            "Cancel": "Cancelled",
            "Reopen": "Waiting for approval",
        },
        description="Jira transition name -> the status it leads to",
    )
    jira_approve_status: str = "Approved"
    jira_deny_status: str = "Denied"
    jira_webhook_secret: SecretStr | None = None
    jira_digest_keep_all_status: str = Field(
        default="",
        description='status (id or name) a reviewer moves their campaign digest issue to for "keep all" '
        "(a transition such as Keep all); empty: digests are decided by comment only",
    )
    jira_digest_revoke_all_status: str = Field(
        default="", description='likewise for "revoke all" (the transition\'s comment is the reason)'
    )
    jira_intake_project: str = Field(default="", description="issues created here start requests")
    jira_intake_fields: dict[str, str] = Field(
        default_factory=lambda: {"resource": "Resource", "role": "Role", "duration": "Duration"},
        description="request field -> Jira field id or name in the intake project (reason: the description)",
    )
    jira_account_ids: dict[str, str] = Field(
        default_factory=dict, description="email -> Jira accountId, when user search cannot see emails"
    )

    # Email over SMTP (request and review link, outcome); off unless smtp_host is set
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "grantflow@localhost"
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False

    # Escalations (a revocation that does not succeed): besides the approvers, whoever runs grantflow
    operator_slack_channel: str = Field(
        default="",
        description="Slack channel id (C…) for escalations; invite the bot or grant chat:write.public",
    )
    operator_email: str = Field(
        default="", description="address escalations are emailed to (needs smtp_host)"
    )
    dev_outbox: bool = Field(
        default=False, description="set by grantflow dev only: notices also go to state_dir/outbox.jsonl"
    )

    # The web app (REST API, review pages) and the CLI that talks to it
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="", description="base URL people reach the web app at (review links)")
    review_link_secret: SecretStr | None = None
    review_link_ttl: PositiveDuration = timedelta(hours=24)
    hoop_api_key_name: str = Field(
        default="grantflow",
        description="the name of grantflow's own API key in hoop: campaigns never review it",
    )
    campaign_history_limit: int = Field(
        default=5000,
        ge=50,
        le=10_000,
        description="events after which a campaign's workflow continues as new",
    )
    evidence_signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key (PEM, or its 32-byte seed in base64) signing campaign evidence",
    )
    tokens_file: Path | None = Field(default=None, description="TOML file of API tokens (sha256 hashes)")
    api_url: str = Field(default="", description="the web app the CLI talks to")
    api_token: SecretStr | None = None
    user: str | None = Field(
        default=None,
        description="the person the CLI acts as, with their own token from <state_dir>/people/ "
        "(grantflow dev writes one per person of the example organisation); wins over api_token",
    )

    @field_validator("hoop_url", "public_url", "api_url", "scim_url", "jira_url", "slack_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("ledger_anchor")
    @classmethod
    def _s3_anchor_location(cls, value: str) -> str:
        if value:
            parse_s3_url(value)  # a ValueError names what is wrong
        return value.strip()

    @field_validator("gateway_max_grant")
    @classmethod
    def _within_gateway_cap(cls, value: timedelta) -> timedelta:
        if value > timedelta(hours=48):
            raise ValueError("hoop refuses grants longer than 48h (and creates an orphan grant when asked)")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{value!r} is not host:port")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = _CONFIG_FILE.get() or os.environ.get(CONFIG_ENV)
        if config_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))
        # Lowest priority: the secrets `grantflow dev` generated, so the CLI run in the same folder
        # (e.g. `grantflow ledger verify`) uses the same ledger key as the dev stack.
        state_dir = Path(os.environ.get(f"{ENV_PREFIX}STATE_DIR") or default_state_dir())
        dev_secrets = state_dir / DEV_SECRETS_FILE
        # Never for a deployment with its own database: a stray dev file must not supply its ledger key.
        if dev_secrets.is_file() and not os.environ.get(f"{ENV_PREFIX}DATABASE_URL"):
            sources.append(_DevSecretsSource(settings_cls, dev_secrets))
        return tuple(sources)

    # Derived locations -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'grantflow.db').resolve()}"

    @property
    def effective_anchor_path(self) -> Path:
        return self.ledger_anchor_path or self.state_dir / "ledger.anchor"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def effective_api_url(self) -> str:
        return self.api_url or self.effective_public_url

    @property
    def configured_channels(self) -> list[str]:
        """Where requests are presented besides the web review page (always on)."""
        channels = []
        if self.slack_bot_token is not None:
            channels.append("slack")
        if self.jira_url:
            channels.append("jira")
        if self.smtp_host:
            channels.append("email")
        return channels

    def require_secret(self, name: str) -> str:
        """The value of a secret setting, or :class:`SettingsError` naming the variable to set."""
        value = getattr(self, name)
        if value is None or not value.get_secret_value():
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} is not set (required for this command)")
        return str(value.get_secret_value())


def check_production(settings: Settings, process: Literal["worker", "server"]) -> None:
    """What ``grantflow worker`` / ``grantflow server`` need that ``grantflow dev`` supplies itself: every
    missing or unusable setting is named at once, in one :class:`SettingsError`, before anything starts.

    Nothing falls back to the example files or to a local address here: a deployment that forgot a
    setting must stop and say so, not run on the examples or send links where nothing listens."""
    problems: list[str] = []

    def file_problem(name: str, what: str, required: bool = True) -> None:
        path = getattr(settings, name)
        variable = f"{ENV_PREFIX}{name.upper()}"
        if path is None:
            if required:
                problems.append(f"{variable} is not set: the {what} is required")
        elif not Path(path).is_file():
            problems.append(f"{variable}={path}: the {what} does not exist")

    file_problem("policies_file", "access policies file")
    if process == "worker":
        file_problem("organisation_file", "organisation file", required=False)
        if not settings.hoop_url:
            problems.append(f"{ENV_PREFIX}HOOP_URL is not set: the worker grants and revokes in hoop")
        elif settings.hoop_api_key is None or not settings.hoop_api_key.get_secret_value():
            problems.append(f"{ENV_PREFIX}HOOP_API_KEY is not set (required with {ENV_PREFIX}HOOP_URL)")
        if settings.review_link_secret is not None and not settings.public_url:
            problems.append(
                f"{ENV_PREFIX}PUBLIC_URL is not set: the worker sends review links, which must point "
                "where people reach `grantflow server` (e.g. https://grantflow.example.com)"
            )
    else:
        file_problem("tokens_file", "API tokens file")
    if problems:
        raise SettingsError("; ".join(problems))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning validation errors into one :class:`SettingsError` naming each setting."""
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"configuration file {config_file} does not exist")
    elif (path := os.environ.get(CONFIG_ENV)) and not Path(path).is_file():
        raise SettingsError(f"{CONFIG_ENV}={path}: configuration file does not exist")
    token = _CONFIG_FILE.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            if err["type"] == "extra_forbidden":
                problems.append(f"{name}: unknown setting")
            else:
                problems.append(f"{ENV_PREFIX}{name.upper()} ({name}): {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
    finally:
        _CONFIG_FILE.reset(token)
