"""Settings: the only place configuration is read (environment, prefix TASKAPI_, or .env)."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ASYNC_DRIVERS = {"postgres://": "postgresql+asyncpg://", "postgresql://": "postgresql+asyncpg://",
                  "sqlite://": "sqlite+aiosqlite://"}
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming the variable."""


def parse_rate(value: str) -> tuple[int, int]:
    """'10/minute' -> (10, 60)."""
    match = _RATE_RE.match(value)
    if not match:
        raise ValueError("expected N/second|minute|hour|day, e.g. 10/minute")
    return int(match.group(1)), _PERIODS[match.group(2)]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKAPI_", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = None
    # Seconds a statement waits for a lock another process holds (SQLite busy timeout,
    # PostgreSQL lock_timeout) before the request answers 503.
    db_lock_timeout: float = Field(10.0, gt=0)
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    access_token_expires: int = Field(900, gt=0)
    refresh_token_expires: int = Field(14 * 24 * 3600, gt=0)

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False
    mail_from: str = "taskapi <no-reply@taskapi.localhost>"
    # Outbox timing (seconds): first retry delay (doubling), how long a claim by a sender
    # that died blocks its rows, and how often the worker sweeps for due emails.
    email_retry_base: float = Field(30.0, gt=0)
    email_claim_timeout: float = Field(120.0, gt=0)
    email_sweep_interval: int = Field(60, ge=1, le=60)

    @field_validator("email_sweep_interval")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (the sweep runs at fixed seconds of each minute)")
        return value

    cors_origins: Annotated[list[str], NoDecode] = []
    timezone: str = "UTC"
    reminder_hour: int = Field(10, ge=0, le=23)
    # Scheduled reports to admins and managers: the local hour (the user's zone, else
    # TIMEZONE) and, for weekly ones, the day.
    report_hour: int = Field(8, ge=0, le=23)
    report_weekday: Weekday = "monday"
    # Login attempts per client address + email, and per client address whatever the email
    # (GCRA: the whole number at once, then evenly spread; decision 019).
    rate_limit_login: str = "10/minute"
    rate_limit_login_ip: str = "30/minute"
    rate_limit_default: str = "600/minute"
    # Password hashing per server process (decision 019): checks at once, how many more may
    # wait, and the longest one waits before the answer is 503 busy with Retry-After.
    password_concurrency: int = Field(1, ge=1)
    password_queue: int = Field(4, ge=0)
    password_queue_wait: float = Field(1.5, gt=0)
    # After this many failed logins for one email, each further attempt for it waits first
    # (0.25 s, doubling, at most LOGIN_BACKOFF_MAX seconds); the count is forgotten 15 minutes
    # after the last failure and on a successful login. It slows guessing; it never refuses.
    login_backoff_after: int = Field(5, ge=1)
    login_backoff_max: float = Field(3.0, ge=0)
    trusted_proxies: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    # Seconds a request's whole body may take to arrive (408 after); it is read before the
    # request takes one of the MAX_CONCURRENCY slots (decision 020).
    body_timeout: float = Field(10.0, gt=0)
    # Requests one server worker process runs at once; the others wait their turn (FIFO).
    max_concurrency: int = Field(64, gt=0)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # The longest a cached response lives (it bounds a missed invalidation); 0: no cache.
    cache_ttl: int = Field(60, ge=0)
    metrics_allow: Annotated[list[str], NoDecode] = ["127.0.0.1/32", "::1/128"]
    metrics_token: SecretStr | None = None
    # Where people reach the service: the links in emails are built on it.
    public_url: str = "http://127.0.0.1:5000"
    # Seconds an email confirmation link stays valid (7 days).
    email_confirmation_expires: int = Field(7 * 24 * 3600, gt=0)
    # Refuse to approve an account whose email address was not confirmed.
    require_email_confirmation: bool = False

    # --- safe writes (issue 16): If-Match and Idempotency-Key ---
    # A PUT/DELETE of a task or user without If-Match answers 428 (else it goes ahead).
    require_if_match: bool = False
    # Seconds an Idempotency-Key's answer is kept for replay (24 h); the worker prunes older.
    idempotency_ttl: int = Field(24 * 3600, gt=0)

    # --- accounts people run themselves (password reset, personal tokens; issue 17) ---
    # Seconds a password reset link stays valid (30 minutes).
    password_reset_expires: int = Field(30 * 60, gt=0)

    # --- live events (issue 15): GET /events (SSE), GET /ws, POST /events/ticket ---
    # Seconds an event stays in the log for replay (7 days); the worker prunes older ones,
    # and a Last-Event-ID older than that gets `event: reset`.
    events_retention: int = Field(7 * 24 * 3600, gt=0)
    # Seconds between heartbeat comments on an idle stream (keep it inside proxies' read
    # timeouts: deploy/nginx.conf allows 1 h).
    events_heartbeat: float = Field(15.0, gt=0)
    # Open streams (SSE and WebSocket) per server process; beyond it 503 + Retry-After.
    max_streams: int = Field(10_000, gt=0)
    # Open streams per user per server process; beyond it 429 + Retry-After.
    max_streams_per_user: int = Field(20, gt=0)
    # Events queued for one stream; a client that falls this far behind is cut off.
    events_queue: int = Field(256, gt=0)
    # Seconds between the checks that end a revoked, demoted or deleted user's streams.
    events_auth_check: float = Field(1.0, gt=0)

    # --- outgoing webhooks (issue 18): the README's configuration table says what each does ---
    webhook_allow_private: bool = False  # also deliver to loopback and private addresses
    webhook_timeout: float = Field(15.0, gt=0)
    webhook_poll_interval: float = Field(1.0, gt=0)
    webhook_retry_schedule: Annotated[list[Annotated[float, Field(gt=0)]], NoDecode, Field(
        min_length=1)] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    webhook_claim_timeout: float = Field(60.0, gt=0)
    webhook_concurrency: int = Field(10, gt=0)

    _split = field_validator("cors_origins", "trusted_proxies", "metrics_allow",
                             "webhook_retry_schedule", mode="before")(_split_commas)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @field_validator("report_weekday", mode="before")
    @classmethod
    def _weekday_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or any(c.isspace() for c in value.strip()) or parts.query or parts.fragment):
            raise ValueError("expected an absolute http(s) URL, e.g. https://tasks.example.com")
        return value.strip().rstrip("/")

    @field_validator("rate_limit_login", "rate_limit_login_ip", "rate_limit_default")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("trusted_proxies", "metrics_allow")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)

    @cached_property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.metrics_allow)

    @property
    def metrics_bearer(self) -> str | None:
        """The /metrics token; an empty value counts as unset (never matches "")."""
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        return token or None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the URLs ops usually have at hand and pick the async driver for them.
            for plain, driver in _ASYNC_DRIVERS.items():
                if url.startswith(plain):
                    return driver + url[len(plain) :]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'taskapi.db').resolve()}"

    @property
    def timezone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def report_weekday_number(self) -> int:
        """REPORT_WEEKDAY as date.weekday() counts: Monday 0 … Sunday 6."""
        return WEEKDAYS.index(self.report_weekday)

    def login_rate(self) -> tuple[int, int]:
        return parse_rate(self.rate_limit_login)

    def login_ip_rate(self) -> tuple[int, int]:
        return parse_rate(self.rate_limit_login_ip)

    def default_rate(self) -> tuple[int, int]:
        return parse_rate(self.rate_limit_default)

    def signing_key(self) -> str:
        """The JWT signing key; outside production a random one is kept in the data dir."""
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value()
            # An empty value counts as unset (a blank line in .env must not sign with "").
            if len(key) >= MIN_SECRET_LENGTH or (key and self.env != "production"):
                return key
        if self.env == "production":
            raise ConfigError(
                f"TASKAPI_SECRET_KEY must be set to at least {MIN_SECRET_LENGTH} characters "
                "when TASKAPI_ENV=production"
            )
        return _persistent_dev_key(self.data_dir)

    def check(self) -> None:
        """Fail fast on what can only be checked as a whole (called at startup)."""
        self.signing_key()
        if self.webhook_claim_timeout <= self.webhook_timeout:  # a send outliving its claim
            raise ConfigError("TASKAPI_WEBHOOK_CLAIM_TIMEOUT must be longer than "
                              "TASKAPI_WEBHOOK_TIMEOUT (another worker would send it again)")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"TASKAPI_DATA_DIR: cannot create {self.data_dir}: {exc}") from None


def _persistent_dev_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Write aside, then hard-link into place: link() fails if another process won the race,
    # and nobody can ever read a half-written key.
    tmp = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key


def load_settings(**overrides: object) -> Settings:
    """Read settings; any problem becomes a one-line ConfigError naming the variable."""
    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "TASKAPI_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{name}: {first['msg']}") from None
    settings.check()
    return settings
