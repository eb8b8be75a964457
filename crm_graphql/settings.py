"""Configuration: one pydantic-settings class read from ``CRM_*`` environment variables."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IntrospectionPolicy = Literal["on", "off", "authenticated"]


class ConfigurationError(RuntimeError):
    """The configuration cannot be used (e.g. production without a secret key)."""


class Settings(BaseSettings):
    """Every knob of the server. Passed in to ``build_app``; never read deep inside code."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".crm-data")
    secret_key: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000

    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600

    default_page_size: int = 20
    max_page_size: int = 100
    max_request_bytes: int = 1_000_000
    # Query limits, checked before execution (crm_graphql/limits.py; README "Limits and
    # security"). 0 switches one off.
    max_query_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 5000
    max_query_cost: int = 50_000
    max_input_depth: int = 20
    max_batch_operations: int = 10
    # on | off | authenticated; unset: on, except `authenticated` in production.
    introspection: IntrospectionPolicy | None = None
    # Browser origins allowed to call the API (`https://app.example.com`, `*` for any);
    # none by default (crm_graphql/cors.py). Comma/space separated or a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Request headers allowed cross-origin besides those mainstream clients send.
    cors_allow_headers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # zstd, Brotli or gzip answers (whichever the client accepts, in that order) from this
    # size on; off when a proxy in front compresses (crm_graphql/compression.py).
    compression: bool = True
    compression_min_bytes: int = 1024
    # Automatic persisted queries (Apollo's protocol), kept in Redis for every process:
    # at most this many documents (least recently used dropped), each at most this big.
    persisted_queries: bool = True
    persisted_queries_max_entries: int = 10_000
    persisted_query_max_bytes: int = 100_000
    # Trusted documents: only the manifest's documents run (crm_graphql/persisted_queries.py).
    persisted_only: bool = False
    persisted_queries_manifest: Path | None = None
    # Peers (IPs or CIDR networks, `*` for any) whose X-Forwarded-For/-Proto are believed;
    # none by default: the client address is the TCP peer's.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Rate limits in Redis, shared by every server process (ratelimit.py).
    rate_limits: bool = True
    rate_limit_user_per_minute: int = 600
    rate_limit_api_key_per_minute: int = 1200
    rate_limit_anonymous_per_minute: int = 60
    login_attempts_per_minute: int = 20
    login_failures_per_ip: int = 20
    login_failures_per_email: int = 10
    login_failure_window_seconds: int = 900
    # An address an email logged in from is exempt from that email's failure budget.
    login_known_address_days: float = 30
    # json | text; unset: json in production, text otherwise.
    log_format: Literal["json", "text"] | None = None
    db_pool_size: int = 10
    # A PostgreSQL streaming replica for reads that may lag (docs/decisions/0024): query
    # operations of callers who did not just write; unset, everything reads the primary.
    database_replica_url: str | None = None
    # Seconds the replica may be behind and still serve reads (else the primary does);
    # also how long a caller's last write position is kept.
    replica_max_lag: float = 5.0
    # How often each process samples the primary's and the replica's WAL positions.
    replica_poll_seconds: float = 0.2
    # The real-time hub's own connections (stream reads, event renderings), apart from
    # requests', so that live delivery does not queue behind a burst of mutations.
    hub_pool_size: int = 4
    slow_consumer_seconds: float = 10.0
    sql_echo: bool = False
    # GET /debug/runtime for soak runs (crm_graphql/diagnostics.py): memory, GC pauses,
    # loop stalls, real-time state; loopback clients only. Off unless set.
    debug_runtime: bool = False
    # The garbage collector's thresholds (``gc.set_threshold``): young collections after
    # this many net allocations, the middle generation after so many young ones, the old
    # after so many middle ones (docs/decisions/0009, 0010). Three integers.
    gc_thresholds: Annotated[tuple[int, int, int], NoDecode] = (10_000, 10, 10)
    # Answer the reads the compiler knows with one SQL statement (docs/decisions/0006).
    compiled_reads: bool = True
    # Keys encrypting sensitive values at rest, ``kid:base64-of-32-bytes``, current first;
    # older keys stay listed until `crm-graphql rotate-encryption-key` has run.
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_dispatcher: bool = True
    webhook_poll_seconds: float = 1.0
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 12
    webhook_retry_base_seconds: float = 10.0
    # Background jobs (imports, bulk actions; crm_graphql/job_runner.py): this process
    # claims and runs queued jobs; a run silent for `job_lease_seconds` is presumed dead
    # and its job claimed again (docs/decisions/0033).
    job_runner: bool = True
    job_poll_seconds: float = 1.0
    job_lease_seconds: float = 60.0
    # Largest GraphQL multipart request (an import's file), in bytes.
    max_upload_bytes: int = 200 * 1024 * 1024

    # The email channel (docs/decisions/0035-email-channel.md; README "Email channel").
    # The SMTP relay agents' messages in EMAIL conversations are sent through; unset: mail
    # waits in the outbox (nothing is sent, nothing is lost).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    # STARTTLS: unset, when the relay offers it; true, required; false, never.
    smtp_starttls: bool | None = None
    # Implicit TLS from the first byte (port 465) instead of STARTTLS.
    smtp_tls: bool = False
    smtp_timeout_seconds: float = 30.0
    mail_dispatcher: bool = True
    mail_poll_seconds: float = 1.0
    mail_max_attempts: int = 8
    mail_retry_base_seconds: float = 30.0
    # The From of sent mail (`Support <support@example.com>`); its domain names reply and
    # inbox addresses unless CRM_MAIL_REPLY_DOMAIN is set (the domain whose mail reaches
    # this server: its MX, or the mail system posting to /inbound/email).
    mail_from: str | None = None
    mail_reply_domain: str | None = None
    # POST /inbound/email takes raw MIME signed with this secret (X-CRM-Signature, as
    # webhooks sign); unset: the endpoint is off (404).
    inbound_email_secret: str | None = None
    # The built-in SMTP listener for inbound mail (`127.0.0.1:2525`); unset: off.
    smtp_listen: str | None = None
    # The largest inbound mail taken, attachments included (bigger: 413 / SMTP 552).
    inbound_email_max_bytes: int = 10_000_000
    # The domains a workspace's own From (setWorkspaceEmailFrom) may be at, subdomains
    # included: those the relay may send for (SPF, DKIM). Comma/space separated; empty: any.
    mail_from_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Files an agent attaches to a message (sendMessage's `attachments`): at most this many,
    # each at most ..._max_bytes, all together at most ..._total_bytes (a mail grows by a
    # third in base64: 15 MB of files make a 20 MB mail, under the common 25 MB limits).
    message_attachments_max_count: int = 10
    message_attachment_max_bytes: int = 10 * 1024 * 1024
    message_attachments_max_total_bytes: int = 15 * 1024 * 1024
    # GET /metrics (Prometheus text; crm_graphql/observability/metrics.py): `local` serves
    # loopback peers only, `token` callers with `Authorization: Bearer <metrics_token>`,
    # `open` anyone, `off` no one (404).
    metrics: Literal["off", "local", "token", "open"] = "local"
    metrics_token: str | None = None
    # OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`); unset: no tracing.
    otel_endpoint: str | None = None
    otel_service_name: str = "crm-graphql"
    # Operations answered over HTTP in at least this many seconds are logged (name, type,
    # outcome, time; the line carries the request id). Unset: none.
    slow_operation_seconds: float | None = None

    @field_validator(
        "encryption_keys",
        "trusted_proxies",
        "cors_origins",
        "cors_allow_headers",
        "mail_from_domains",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A JSON list, or entries separated by commas or whitespace."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.replace(",", " ").split() if part]
        return value

    @model_validator(mode="after")
    def _pool_holds_what_runs(self) -> Settings:
        """``CRM_DB_POOL_SIZE`` at least 1, and 2 where this process runs background jobs:
        an all-or-nothing import commits its progress reports on a second connection of
        the requests' pool while its own transaction holds the first (docs/decisions/0037)."""
        if self.db_pool_size < 1:
            raise ValueError("CRM_DB_POOL_SIZE must be at least 1")
        if self.job_runner and self.db_pool_size < 2:
            raise ValueError(
                "CRM_DB_POOL_SIZE must be at least 2 while this process runs background jobs "
                "(CRM_JOB_RUNNER=true): an import reports its progress on a second connection"
            )
        return self

    @field_validator("gc_thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> Any:
        """``10000,10,10`` (or a JSON list): each at least 1."""
        if isinstance(value, str):
            value = cls._split_list(value)
        if isinstance(value, list | tuple):
            try:
                numbers = tuple(int(part) for part in value)
            except (TypeError, ValueError):
                numbers = ()
            if len(numbers) != 3 or min(numbers) < 1:
                raise ValueError(f"CRM_GC_THRESHOLDS: three integers, each at least 1: {value!r}")
            return numbers
        return value

    @field_validator("mail_from_domains")
    @classmethod
    def _mail_domains(cls, value: list[str]) -> list[str]:
        """Domains in lower case and their ASCII form, without a leading ``@`` or dot."""
        try:
            return [d.strip().lstrip("@.").encode("idna").decode().lower() for d in value]
        except UnicodeError as exc:
            raise ValueError(f"not a domain name in CRM_MAIL_FROM_DOMAINS: {exc}") from exc

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        """Addresses as given, networks in their canonical form (``10.0.0.0/8``); anything
        else is refused at start-up, where a typo would otherwise trust nobody (or not the
        intended network)."""
        entries = []
        for entry in value:
            try:
                if entry == "*" or "/" not in entry:
                    entries.append(entry if entry == "*" else str(ipaddress.ip_address(entry)))
                else:
                    entries.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {entry!r}") from exc
        return entries

    @field_validator("introspection", mode="before")
    @classmethod
    def _introspection_words(cls, value: object) -> object:
        # Older configurations said true/false.
        words = {"true": "on", "1": "on", "false": "off", "0": "off"}
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            return words.get(value.strip().lower(), value.strip().lower()) or None
        return value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def introspection_policy(self) -> IntrospectionPolicy:
        """Who may introspect the schema: everyone, no one, or authenticated callers."""
        if self.introspection is not None:
            return self.introspection
        return "authenticated" if self.is_production else "on"

    @property
    def json_logs(self) -> bool:
        return (self.log_format or ("json" if self.is_production else "text")) == "json"


def resolve_secret_key(settings: Settings) -> str:
    """Return the signing key: configured, or in development one generated once and kept
    in the data directory. Production refuses to run without a configured key."""
    if settings.secret_key:
        return settings.secret_key
    if settings.is_production:
        raise ConfigurationError(
            "CRM_SECRET_KEY must be set when CRM_ENV=production (e.g. `openssl rand -hex 32`)."
        )
    return _kept_in_data_dir(
        settings, "secret_key", "CRM_SECRET_KEY", lambda: secrets.token_hex(32)
    )


def new_encryption_key_entry(kid: str | None = None) -> str:
    """A fresh ``kid:base64key`` entry for ``CRM_ENCRYPTION_KEYS`` (256-bit AES key)."""
    kid = kid or time.strftime("k%Y%m%d") + secrets.token_hex(2)
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def resolve_encryption_keys(settings: Settings) -> list[str]:
    """The encryption key entries: configured, or in development one generated once and
    kept in the data directory. Production refuses to run without configured keys (a key
    lost with a data directory would make every encrypted value unreadable)."""
    if settings.encryption_keys:
        return list(settings.encryption_keys)
    if settings.is_production:
        raise ConfigurationError(
            "CRM_ENCRYPTION_KEYS must be set when CRM_ENV=production "
            "(e.g. `python -m crm_graphql.cli new-encryption-key`)."
        )
    return [
        _kept_in_data_dir(
            settings, "encryption_key", "CRM_ENCRYPTION_KEYS", new_encryption_key_entry
        )
    ]


def _kept_in_data_dir(settings: Settings, name: str, variable: str, make: Callable[[], str]) -> str:
    """A value generated once and kept in the data directory file ``name``."""
    path = settings.data_dir / name
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and both read its value.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(20):  # the creator may not have written it yet
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.05)
        raise ConfigurationError(f"{path} is empty: delete it or set {variable}") from None
    value = make()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
