"""One Settings object for the whole worker, read from ``ROSTERSYNC_*`` environment variables.

Every provider URL is a setting so the same code talks to the local emulators or to the real
providers. Secrets are ``SecretStr`` so they never show up in a repr, a log line or a traceback.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

GOOGLE_SCOPES: tuple[str, ...] = (
    "https://www.googleapis.com/auth/classroom.courses.readonly",
    "https://www.googleapis.com/auth/classroom.rosters.readonly",
)
"""The only scopes rostersync asks Google for (providers.md 1.5): read courses, read rosters."""


DAY = 86_400
"""Seconds in a day, the unit of the settings' upper bounds."""

BROKER_SCHEMES = ("redis", "rediss", "unix")
MIN_SECRET_LENGTH = 32
"""Characters of a pseudonym key, link signing key or admin token: what ``secrets.token_urlsafe(24)`` gives."""


def _https_only(url: str) -> str:
    """Promise P5: provider traffic is always TLS, for every provider; the emulators serve HTTPS too."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("provider URLs must use https and name a host")
    return url.rstrip("/")


def _redirect_uri(url: str) -> str:
    """One rule for every provider: empty (not set: that provider cannot link) or an https URL with a host.

    The consent's code travels in it; the emulators serve HTTPS, so no switch allows http, even locally.
    """
    if not url.strip():
        return ""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("a redirect URI must use https and name a host (https://HOST/oauth/PROVIDER/callback)")
    return url.strip()


ProviderUrl = Annotated[str, AfterValidator(_https_only)]
RedirectUri = Annotated[str, AfterValidator(_redirect_uri)]


class ProviderSettings(BaseModel):
    """What every provider needs to link: its OAuth client and the redirect URI registered with it.

    A provider's model is one field of ``Settings`` named after the provider; each of its fields is read
    from ``ROSTERSYNC_<PROVIDER>_<FIELD>`` (the variables rostersync has always had), or from the flat name
    in ``flat_names`` where history chose another (``ROSTERSYNC_GRAPH_ENDPOINT``).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    flat_names: ClassVar[Mapping[str, str]] = {}
    """Field -> its flat setting name, where that is not ``<provider>_<field>``."""

    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    # Unset until the operator registers one; https only (see _redirect_uri).
    redirect_uri: RedirectUri = ""


class GoogleSettings(ProviderSettings):
    """Google Classroom (providers.md 1): OAuth endpoints and the Classroom API."""

    auth_uri: ProviderUrl = "https://accounts.google.com/o/oauth2/v2/auth"
    token_uri: ProviderUrl = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
    revoke_uri: ProviderUrl = "https://oauth2.googleapis.com/revoke"
    api_endpoint: ProviderUrl = "https://classroom.googleapis.com"


class CleverSettings(ProviderSettings):
    """Clever (providers.md 2): the code appends /v3.0/... to the API base; the token URL also lists district
    tokens."""

    authorize_url: ProviderUrl = "https://clever.com/oauth/authorize"
    token_url: ProviderUrl = "https://clever.com/oauth/tokens"  # noqa: S105 - a URL, not a secret
    api_base: ProviderUrl = "https://api.clever.com"


class MicrosoftSettings(ProviderSettings):
    """Microsoft 365 Education (providers.md 3): teacher links use {authority host}/organizations, tenant links
    {host}/{tenant id}; Graph paths are appended to the endpoint. msal itself refuses anything but https."""

    flat_names: ClassVar[Mapping[str, str]] = {"graph_endpoint": "graph_endpoint"}

    authority_host: ProviderUrl = "https://login.microsoftonline.com"
    graph_endpoint: ProviderUrl = "https://graph.microsoft.com/v1.0"


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the variable, never its value."""


class Settings(BaseSettings):
    """Process-wide configuration. Defaults are the embedded ones and the real provider URLs."""

    # hide_input_in_errors: a refused setting's value (a key, a token) never reaches an error text or traceback.
    model_config = SettingsConfigDict(env_prefix="ROSTERSYNC_", extra="ignore", hide_input_in_errors=True)

    def __init__(self, **values: Any) -> None:
        """A refusal inside a provider's model names its flat setting (``google_redirect_uri``), as it always did:
        the command line turns an error's location into the ``ROSTERSYNC_`` variable to fix."""
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _flat_locations(error) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, plus each provider's flat variables read into its model, just after the environment."""
        flat = _FlatProviderEnvironment(settings_cls)
        return init_settings, env_settings, flat, dotenv_settings, file_secret_settings

    database_url: str = "sqlite:///rostersync.db"
    broker_url: str | None = None
    broker_namespace: str = "rostersync"
    pseudonym_key: SecretStr | None = None
    token_keys: SecretStr | None = None

    # One nested model per provider (settings.google.client_id, ...), read from the same flat variables as
    # ever (ROSTERSYNC_GOOGLE_CLIENT_ID, ROSTERSYNC_GRAPH_ENDPOINT, ...): see ProviderSettings and _nest_providers.
    google: GoogleSettings = Field(default_factory=lambda: GoogleSettings())
    clever: CleverSettings = Field(default_factory=lambda: CleverSettings())
    microsoft: MicrosoftSettings = Field(default_factory=lambda: MicrosoftSettings())

    # Retention (P10), read by `rostersync purge-expired` and shown by `rostersync inventory`.
    revoked_grace_seconds: int = Field(default=0, ge=0, le=90 * 86_400)  # ended integrations: purged at once
    removed_retention_days: int = Field(default=30, ge=0, le=3650)  # rows the provider no longer lists
    # Events of the platform's change feed older than this go in the retention job (store.outbox.prune); a
    # consumer further behind takes a new snapshot. The feed names pseudonyms: it is kept no longer than needed.
    change_feed_retention_days: int = Field(default=14, ge=1, le=90)
    deleted_account_retention_months: int = Field(default=6, ge=0, le=6)  # the policy's 6 months, never more
    # A `blocked` integration (the school switched access off, reversibly) keeps its roster this long, then ends
    # like a revoke (docs/privacy.md P3: why 30 days, never more); retried meanwhile after a wait that starts at
    # BLOCKED_RETRY_MIN_SECONDS and doubles up to the integration's sync interval (docs/reliability.md).
    blocked_grace_days: int = Field(default=30, ge=0, le=30)
    blocked_retry_min_seconds: int = Field(default=900, gt=0, le=DAY)

    ca_bundle: Path | None = None
    # Every duration has an upper bound: an unbounded one overflows datetime arithmetic mid-sync.
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=600)  # read: the longest silence of a provider
    http_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=600)  # TCP and TLS set-up of one connection
    max_pages: int = Field(default=10_000, ge=1, le=1_000_000)  # per listing; one more is a ProviderDataError
    sync_interval_seconds: int = Field(default=DAY, gt=0, le=31 * DAY)  # per integration, unless it has its own
    lease_seconds: int = Field(default=2400, gt=0, le=DAY)  # renewed by every write of a running sync
    # A link with a change feed (a Clever district) applies changes between full listings; a full
    # listing (with its sweep) still runs at least this often, to catch what a feed missed.
    # At most 29 days: Clever keeps events for 30, so a cursor is never trusted past its window.
    full_reconcile_seconds: int = Field(default=DAY, gt=0, le=29 * DAY)
    # One retry policy (worker.retry_policy) for the actor and `sync --now`: at most MAX_RETRIES retries
    # and RETRY_MAX_WAIT_SECONDS of waiting in all, then the integration is marked failed.
    max_retries: int = Field(default=5, ge=0, le=100)
    retry_min_backoff_ms: int = Field(default=2_000, ge=1, le=DAY * 1000)
    retry_max_backoff_ms: int = Field(default=600_000, ge=1, le=7 * DAY * 1000)
    retry_max_wait_seconds: int = Field(default=3600, ge=0, le=DAY)
    default_tenant: str = Field(default="default-school", min_length=1, max_length=128)
    link_state_ttl_seconds: int = Field(default=900, gt=0, le=DAY)

    # Issue 8: web app, scheduler, workers.
    admin_tokens: SecretStr | None = None  # comma list of bearer tokens of the admin API
    # Issue 20: comma list of bearer tokens of the /v1 platform API (docs/platform.md); unset: /v1 refuses everyone.
    platform_tokens: SecretStr | None = None
    link_signing_key: SecretStr | None = None  # the platform signs /link requests with it; unset: no web linking
    scheduler_tick_seconds: float = Field(default=30.0, gt=0, le=3600)
    scheduler_jitter_seconds: float = Field(default=30.0, ge=0, le=3600)
    scheduler_batch: int = Field(default=500, gt=0, le=100_000)
    queue_stale_seconds: int = Field(default=6 * 3600, gt=0, le=7 * DAY)  # a queued sync never started: re-queue
    manual_sync_cooldown_seconds: int = Field(default=300, ge=0, le=DAY)
    revoke_retry_max_attempts: int = Field(default=8, gt=0, le=100)
    revoke_retry_min_backoff_seconds: int = Field(default=60, gt=0, le=DAY)
    revoke_retry_max_backoff_seconds: int = Field(default=6 * 3600, gt=0, le=7 * DAY)
    sync_time_limit_seconds: int = Field(default=1800, gt=0, le=DAY)
    worker_metrics_port: int = Field(default=9191, ge=0, le=65535)  # 0: no Prometheus exposition by workers
    # Issue 10: the mass-removal breaker holds a sweep that would remove more than this share of an
    # integration's current people or classes, once it touches at least this many people (store.breaker).
    breaker_share: float = Field(default=0.2, gt=0, le=1)
    breaker_min_people: int = Field(default=10, ge=1, le=1_000_000)
    provider_budgets: str = ""  # "google=3000/60": at most 3000 provider requests per 60 s, shared by all workers

    # Issue 18: the web app's edge (docs/deploy.md "The web app behind TLS", docs/web.md "HTTP hygiene").
    # Proxies whose X-Forwarded-For/-Proto are believed: comma list of addresses or networks; empty: none.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    allowed_hosts: str = "*"  # Host header values served, comma list ("*.example.org" allowed); "*": any
    web_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # a request's headers, in full
    web_keep_alive_seconds: int = Field(default=5, ge=1, le=300)  # an idle connection between requests
    web_max_concurrency: int = Field(default=200, ge=1, le=100_000)  # connections + requests, then 503
    web_max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)  # request line + headers
    admin_failures_per_minute: int = Field(default=30, ge=0, le=100_000)  # wrong admin tokens per client; 0: no limit
    link_requests_per_minute: int = Field(default=60, ge=0, le=100_000)  # /link and callbacks per client; 0: no limit
    openapi_enabled: bool = False  # serve /openapi.json
    docs_enabled: bool = False  # serve /docs, a plain list of the API's operations (no script, no CDN)
    metrics_access: Literal["admin", "open", "off"] = "admin"  # /metrics: with an admin token, to anyone, or not

    # Issue 20: the change feed pushed to the platform as signed Standard Webhooks (docs/platform.md, "Webhooks").
    # Both set, or neither (no delivery); https only, trusted through CA_BUNDLE like every other HTTP client.
    webhook_url: str = ""
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)  # whsec_ + base64 of 24..64 bytes
    webhook_batch_size: int = Field(default=100, ge=1, le=1000)  # events per POST

    @model_validator(mode="before")
    @classmethod
    def _nest_providers(cls, data: Any) -> Any:
        """``Settings(google_client_id=...)``, the keyword spelling of the flat names, fills the provider's model.

        A flat keyword wins over the same field given nested, as a keyword wins over the environment.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for flat, (section, field) in flat_names().items():
            if flat in data:
                given = data.get(section)
                nested = given.model_dump() if isinstance(given, BaseModel) else dict(given or {})
                data[section] = nested | {field: data.pop(flat)}
        return data

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        """``postgres://`` (many hosts' spelling) is no SQLAlchemy dialect, and a bare ``postgresql://`` means
        psycopg2, which rostersync does not ship: both get the URL to write instead of a driver error."""
        scheme = urlsplit(url).scheme.lower()
        if scheme.split("+")[0] == "postgres" or scheme == "postgresql":
            raise ValueError(
                "write PostgreSQL URLs as postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE "
                "(SQLAlchemy's name for the psycopg driver rostersync ships)"
            )
        return url

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, url: str | None) -> str | None:
        """A malformed broker URL is a start-up error, not a ValueError from deep inside the Redis client."""
        if url is None or not url.strip():
            return None
        if urlsplit(url).scheme not in BROKER_SCHEMES:
            raise ValueError(f"the broker URL must start with one of {', '.join(s + '://' for s in BROKER_SCHEMES)}")
        return url

    @field_validator("provider_budgets")
    @classmethod
    def _budgets(cls, value: str) -> str:
        """``name=REQUESTS/SECONDS`` pairs, comma separated; checked here so a typo stops start-up."""
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, budget = item.partition("=")
            limit, _, window = budget.partition("/")
            valid = limit.isdigit() and window.isdigit() and int(limit) > 0 and 0 < int(window) <= DAY
            if not (name.strip() and valid):
                raise ValueError("expected provider=REQUESTS/SECONDS pairs, e.g. google=3000/60")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """Addresses or networks only: a typo would otherwise be compared as a literal and never match."""
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("expected IP addresses or networks, e.g. 127.0.0.1,10.0.0.0/8") from None
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, url: str) -> str:
        """Promise P5 for what we pass on: the feed carries pseudonyms and teachers' names, so TLS only."""
        if not url.strip():
            return ""
        parts = urlsplit(url.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL with a host (the receiver's CA goes in ROSTERSYNC_CA_BUNDLE)")
        return url.strip()

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A Standard Webhooks secret, checked at start-up rather than at the first delivery; never echoed."""
        url = info.data.get("webhook_url", "")
        if secret is None or not secret.get_secret_value().strip():
            if url:
                raise ValueError("is required with ROSTERSYNC_WEBHOOK_URL (whsec_ + base64 of 24 to 64 random bytes)")
            return None
        if not url:
            raise ValueError("is set but ROSTERSYNC_WEBHOOK_URL is not: set both, or neither")
        _check_webhook_secret(secret.get_secret_value().strip())
        return SecretStr(secret.get_secret_value().strip())

    @field_validator("ca_bundle")
    @classmethod
    def _ca_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError("CA bundle file does not exist")
        return path

    @field_validator("pseudonym_key", "link_signing_key")
    @classmethod
    def _strong_key(cls, key: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Set means usable: an empty signing key once counted as configured and let anyone link in any name."""
        if key is not None:
            _check_secret(key.get_secret_value(), "the key", optional=info.field_name == "link_signing_key")
        return key

    @field_validator("admin_tokens", "platform_tokens")
    @classmethod
    def _strong_tokens(cls, tokens: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Every admin or platform token as strong as a key; an empty item of the list is a typo, not a token.

        A token in both lists is refused: the platform's tokens must not open the admin API, nor the reverse.
        """
        if tokens is not None:
            items = tokens.get_secret_value().split(",")
            for position, token in enumerate(items, start=1):
                _check_secret(
                    token, f"token {position} of {len(items)}" if len(items) > 1 else "the token", optional=True
                )
            admin = info.data.get("admin_tokens") if info.field_name == "platform_tokens" else None
            if isinstance(admin, SecretStr) and _token_set(admin) & _token_set(tokens):
                raise ValueError("a platform token is also an admin token: give each API tokens of its own")
        return tokens

    @field_validator("token_keys")
    @classmethod
    def _fernet_keys(cls, keys: SecretStr | None) -> SecretStr | None:
        """Each key a real Fernet key and not a constant one (an all-zero key seals nothing)."""
        if keys is not None:
            items = keys.get_secret_value().split(",")
            for position, key in enumerate(items, start=1):
                _check_fernet_key(key, f"key {position} of {len(items)}" if len(items) > 1 else "the key")
        return keys

    def provider(self, name: str) -> ProviderSettings:
        """A provider's settings by its name, for the code that is handed the name (linking, health, config)."""
        if name not in provider_sections():
            raise ValueError(f"no settings for provider {name!r}")
        section: ProviderSettings = getattr(self, name)
        return section

    def flat_values(self) -> dict[str, Any]:
        """Every setting under the flat name its environment variable spells (``google_client_id``).

        What a child process is handed: ``ROSTERSYNC_`` + the name, upper-cased, reads back the same Settings.
        """
        sections = provider_sections()
        values = {name: value for name, value in self if name not in sections}
        for flat, (section, field) in flat_names().items():
            values[flat] = getattr(getattr(self, section), field)
        return values

    def require_secrets(self) -> None:
        """Fail at start-up, not mid-sync, when a key the worker cannot run without is missing."""
        missing = []
        if self.pseudonym_key is None:
            missing.append("ROSTERSYNC_PSEUDONYM_KEY")
        if self.token_keys is None:
            missing.append("ROSTERSYNC_TOKEN_KEYS")
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)} (see README, 'Configuration')")

    def budgets(self) -> dict[str, tuple[int, int]]:
        """Per provider: (requests, window seconds) from PROVIDER_BUDGETS."""
        parsed: dict[str, tuple[int, int]] = {}
        for item in filter(None, (part.strip() for part in self.provider_budgets.split(","))):
            name, _, budget = item.partition("=")
            limit, _, window = budget.partition("/")
            parsed[name.strip()] = (int(limit), int(window))
        return parsed

    def admin_token_list(self) -> list[str]:
        """The admin API's bearer tokens; empty means the admin API refuses everyone."""
        raw = self.admin_tokens.get_secret_value() if self.admin_tokens is not None else ""
        return [token.strip() for token in raw.split(",") if token.strip()]

    @property
    def webhooks_enabled(self) -> bool:
        """Delivery to the platform is on: both WEBHOOK_URL and WEBHOOK_SECRET are set (the validators saw to it)."""
        return bool(self.webhook_url) and self.webhook_secret is not None

    def platform_token_list(self) -> list[str]:
        """The /v1 platform API's bearer tokens; empty means /v1 refuses everyone."""
        return sorted(_token_set(self.platform_tokens))

    def forwarded_allow_list(self) -> list[str]:
        """The proxies whose forwarded headers uvicorn believes; empty: it believes none."""
        return [item.strip() for item in self.forwarded_allow_ips.split(",") if item.strip()]

    def allowed_host_list(self) -> list[str]:
        """Host header values the web app answers; ``["*"]``: any."""
        return [item.strip() for item in self.allowed_hosts.split(",") if item.strip()] or ["*"]

    @property
    def http_timeouts(self) -> tuple[float, float]:
        """``(connect, read)`` seconds, what every requests call passes as ``timeout``."""
        return (self.http_connect_timeout_seconds, self.http_timeout_seconds)

    @property
    def tls_verify(self) -> str | bool:
        """What every HTTP client passes as its trust anchor: the extra CA if set, else the system store."""
        return str(self.ca_bundle) if self.ca_bundle is not None else True


def provider_sections() -> dict[str, type[ProviderSettings]]:
    """The providers that have settings, by the name of their field of ``Settings`` (the provider's name)."""
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, ProviderSettings)
    }


@lru_cache(maxsize=1)
def flat_names() -> dict[str, tuple[str, str]]:
    """Every provider setting's flat name (``google_client_id``, ``graph_endpoint``) -> (provider, field)."""
    return {
        model.flat_names.get(field, f"{section}_{field}"): (section, field)
        for section, model in provider_sections().items()
        for field in model.model_fields
    }


def env_name(section: str, field: str) -> str:
    """The environment variable of a provider's setting, e.g. ``ROSTERSYNC_GOOGLE_CLIENT_ID``."""
    model = provider_sections()[section]
    return "ROSTERSYNC_" + model.flat_names.get(field, f"{section}_{field}").upper()


class _FlatProviderEnvironment(PydanticBaseSettingsSource):
    """``ROSTERSYNC_GOOGLE_CLIENT_ID`` & co. read into the provider's model: the variables do not change when the
    settings nest. Names are matched without regard to case, as the environment source matches them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).lower()
        environ = {key.lower(): value for key, value in os.environ.items()}
        found: dict[str, Any] = {}
        for flat, (section, field) in flat_names().items():
            value = environ.get(prefix + flat)
            if value is not None:
                found.setdefault(section, {})[field] = value
        return found


def _flat_locations(error: ValidationError) -> ValidationError:
    """The same error, a provider field's location flat: ``("google", "redirect_uri")`` -> ``google_redirect_uri``."""
    sections = provider_sections()
    if not any(len(item["loc"]) > 1 and item["loc"][0] in sections for item in error.errors()):
        return error
    details: list[InitErrorDetails] = []
    for item in error.errors():
        loc = item["loc"]
        if len(loc) > 1 and loc[0] in sections and isinstance(loc[1], str):
            loc = (env_name(str(loc[0]), loc[1]).removeprefix("ROSTERSYNC_").lower(), *loc[2:])
        detail = InitErrorDetails(type=item["type"], loc=loc, input=item["input"])
        if "ctx" in item:
            detail["ctx"] = item["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details, hide_input=True)


def _token_set(tokens: SecretStr | None) -> set[str]:
    """The non-blank items of a comma list of tokens."""
    raw = tokens.get_secret_value() if tokens is not None else ""
    return {token.strip() for token in raw.split(",") if token.strip()}


def _check_secret(value: str, what: str, *, optional: bool) -> None:
    """Refuse what a generator never makes; the message says what is wrong, never the value.

    ``optional``: unsetting the setting turns a feature off (admin API, linking in the browser), so say so.
    """
    value = value.strip()
    if not value:
        turn_off = ", or unset the setting to turn its feature off" if optional else ""
        raise ValueError(f"{what} is empty: set a random one (README, 'Configuration'){turn_off}")
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"{what} must be at least {MIN_SECRET_LENGTH} characters long")
    if len(set(value)) == 1:
        raise ValueError(f"{what} is one repeated character: generate a random one")


def _check_fernet_key(key: str, what: str) -> None:
    key = key.strip()
    if not key:
        raise ValueError(f"{what} is empty: each comma-separated item must be a Fernet key")
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what} is not a valid Fernet key (32 url-safe base64-encoded bytes)")
    if len(set(raw)) == 1:
        raise ValueError(f"{what} is one repeated byte (e.g. all zeros): generate it with Fernet.generate_key()")


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
WEBHOOK_SECRET_BYTES = (24, 64)
"""Standard Webhooks: a secret is ``whsec_`` + the base64 of 24 to 64 random bytes."""


def _check_webhook_secret(value: str) -> None:
    """What the Standard Webhooks libraries accept, stricter: real base64 of enough random bytes."""
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"must start with {WEBHOOK_SECRET_PREFIX} (Standard Webhooks)")
    encoded = value.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {WEBHOOK_SECRET_PREFIX} followed by standard base64") from None
    low, high = WEBHOOK_SECRET_BYTES
    if not low <= len(raw) <= high:
        raise ValueError(f"must encode {low} to {high} random bytes after {WEBHOOK_SECRET_PREFIX}")
    if len(set(raw)) == 1:
        raise ValueError("is one repeated byte: generate a random one")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
