"""Settings: `invoiced-keap.toml`, overridden by the environment, validated by pydantic-settings.

Connection settings have one name in the file (lower case) and in the environment (upper case):
`invoiced_api_key` / `INVOICED_API_KEY`, ... The one exception is the state database, whose
environment variable carries the project's prefix: `database_url` / `INVOICED_KEAP_DATABASE_URL`
(a bare `DATABASE_URL` often belongs to some other program). The environment is matched case-
sensitively for that reason. Behaviour (flows, conflicts, deletes, breaker, rate limits, schedule)
is set in the file only. Anything wrong stops the program with one line, `SettingError`, that
names the setting and says what was expected; unknown settings are errors, not silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from invoiced_keap.connectors.invoiced import INVOICED_API_URL
from invoiced_keap.connectors.keap import DEFAULT_BASE_URL as KEAP_API_URL
from invoiced_keap.connectors.keap_auth import AUTHORIZE_URL, DEFAULT_TOKEN_URL, AccessToken, ApiKey, FileTokenStore, OAuthClient
from invoiced_keap.connectors.pacing import INVOICED_LIMITS, KEAP_OAUTH_LIMITS, KEAP_PAT_LIMITS, RateLimits
from invoiced_keap.engine.options import Breaker as EngineBreaker
from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.plan import Policy, PolicyName
from invoiced_keap.flows import CATALOGUE, Flow, Side, build_flows
from invoiced_keap.state.store import FailureBackoff

DEFAULT_CONFIG_FILE = Path("invoiced-keap.toml")
FlowName = Literal["companies", "contacts", "products"]
DeletePolicy = Literal["unlink", "propagate", "ignore"]
FLOW_NAMES: tuple[str, ...] = tuple(CATALOGUE)


class SettingError(Exception):
    """A missing or wrong setting: the message is the one line the user sees."""


def _env(name: str) -> Any:
    """Read from the file as `name`, from the environment as `NAME`."""
    return AliasChoices(name, name.upper())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FlowSettings(_Section):
    """`[flow.NAME]`: what one flow does differently from the top-level defaults."""

    conflicts: PolicyName | None = None
    priority: Side | None = None
    conflict_groups: dict[str, PolicyName] = Field(default_factory=dict)
    deletes: DeletePolicy | None = None
    add: list[str | dict[str, str]] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class Breaker(_Section):
    """`[breaker]`: a pass stops before deleting more than max(min_deletes, max_delete_share of a flow's
    links) or updating more than max(min_updates, max_update_share of them), unless `--allow-mass-change`."""

    max_delete_share: float = Field(0.10, gt=0, le=1)
    min_deletes: NonNegativeInt = 10
    max_update_share: float = Field(0.5, gt=0, le=1)
    min_updates: NonNegativeInt = 10


class WindowLimits(_Section):
    per_second: PositiveInt | None = None
    per_minute: PositiveInt | None = None
    per_day: PositiveInt | None = None

    def rate_limits(self) -> RateLimits:
        return RateLimits.of(per_second=self.per_second, per_minute=self.per_minute, per_day=self.per_day)


def _windows(limits: RateLimits) -> WindowLimits:
    by_length = {window.seconds: window.limit for window in limits.windows}
    return WindowLimits(per_second=by_length.get(1.0), per_minute=by_length.get(60.0), per_day=by_length.get(86_400.0))


class RateLimitSettings(_Section):
    """`[rate_limits]`: our own pacing per credential type (Keap's published limits by default)."""

    keap_api_key: WindowLimits = _windows(KEAP_PAT_LIMITS)
    keap_oauth: WindowLimits = _windows(KEAP_OAUTH_LIMITS)
    invoiced_max_in_flight: PositiveInt = INVOICED_LIMITS.max_in_flight or 20


class Schedule(_Section):
    """`[schedule]`, in seconds: how often `run` polls, lists everything, waits after a webhook, retries failures."""

    poll_interval: PositiveFloat = 60.0
    full_scan_interval: PositiveFloat = 86_400.0
    webhook_debounce: PositiveFloat = 2.0
    failure_retry_base: PositiveFloat = 300.0
    failure_retry_cap: PositiveFloat = 86_400.0


class Settings(BaseSettings):
    """Everything the program can be told. Keyword arguments play the file's part: the environment wins."""

    model_config = SettingsConfigDict(extra="forbid", case_sensitive=True, frozen=True)

    invoiced_api_key: SecretStr | None = Field(None, validation_alias=_env("invoiced_api_key"))
    invoiced_api_url: HttpUrl = Field(HttpUrl(INVOICED_API_URL), validation_alias=_env("invoiced_api_url"))
    keap_api_key: SecretStr | None = Field(None, validation_alias=_env("keap_api_key"))
    keap_access_token: SecretStr | None = Field(None, validation_alias=_env("keap_access_token"))
    keap_api_url: HttpUrl = Field(HttpUrl(KEAP_API_URL), validation_alias=_env("keap_api_url"))
    keap_client_id: str | None = Field(None, validation_alias=_env("keap_client_id"))
    keap_client_secret: SecretStr | None = Field(None, validation_alias=_env("keap_client_secret"))
    keap_redirect_uri: HttpUrl | None = Field(None, validation_alias=_env("keap_redirect_uri"))
    keap_token_file: Path = Field(Path("keap-tokens.json"), validation_alias=_env("keap_token_file"))
    keap_token_url: HttpUrl = Field(HttpUrl(DEFAULT_TOKEN_URL), validation_alias=_env("keap_token_url"))
    keap_authorize_url: HttpUrl = Field(HttpUrl(AUTHORIZE_URL), validation_alias=_env("keap_authorize_url"))
    database_url: str = Field(
        "sqlite:///invoiced-keap.db", validation_alias=AliasChoices("database_url", "INVOICED_KEAP_DATABASE_URL")
    )
    # `run`: where it listens and how the webhooks reach it (the variables carry the project's prefix
    # where a bare name such as HOST or PORT would belong to some other program)
    server_host: str = Field("127.0.0.1", validation_alias=AliasChoices("server_host", "INVOICED_KEAP_HOST"))
    server_port: int = Field(8780, ge=0, le=65535, validation_alias=AliasChoices("server_port", "INVOICED_KEAP_PORT"))
    public_url: HttpUrl | None = Field(None, validation_alias=AliasChoices("public_url", "INVOICED_KEAP_PUBLIC_URL"))
    invoiced_webhook_secret: SecretStr | None = Field(None, validation_alias=_env("invoiced_webhook_secret"))
    keap_hooks: bool = True
    keap_hook_token: SecretStr | None = Field(None, validation_alias=_env("keap_hook_token"))
    status_token: SecretStr | None = Field(None, validation_alias=AliasChoices("status_token", "INVOICED_KEAP_STATUS_TOKEN"))

    profile: Literal["default", "spec"] = "default"
    flows: list[FlowName] = Field(default_factory=lambda: list(FLOW_NAMES))
    create_in_invoiced: list[FlowName] = Field(default_factory=list)
    conflicts: PolicyName = "newest"
    priority: Side = "invoiced"
    deletes: DeletePolicy = "unlink"
    flow: dict[FlowName, FlowSettings] = Field(default_factory=dict)
    breaker: Breaker = Breaker()
    rate_limits: RateLimitSettings = RateLimitSettings()
    schedule: Schedule = Schedule()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings

    @field_validator("database_url")
    @classmethod
    def _database_url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a SQLAlchemy URL such as sqlite:///invoiced-keap.db or postgresql://user@host/db")
        return value

    @field_validator("flows")
    @classmethod
    def _flows_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"expected at least one of {list(FLOW_NAMES)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _field_rules_exist(self) -> Settings:
        try:
            built = build_flows(self.profile, self.rule_overrides())
        except ValueError as error:
            raise ValueError(f"flow: {error}") from None
        for name, override in self.flow.items():
            known = {rule.name for rule in CATALOGUE[name].rules} | {rule.name for rule in built[name].rules}
            for rule_name in [*override.drop, *override.conflict_groups]:
                if rule_name not in known:
                    raise ValueError(f"flow.{name}: no field rule {rule_name!r}; expected one of {sorted(known)}")
        return self

    # --- what the rest of the program asks --------------------------------------------------
    def rule_overrides(self) -> dict[str, dict[str, list[Any]]]:
        return {name: {"add": flow.add, "drop": flow.drop} for name, flow in self.flow.items()}

    def selected_flows(self, names: Sequence[str] = ()) -> dict[str, Flow]:
        """The flows to work on: those named (on the command line), else those enabled in the settings."""
        unknown = [name for name in names if name not in FLOW_NAMES]
        if unknown:
            raise SettingError(f"--flow {unknown[0]!r}: expected one of {', '.join(FLOW_NAMES)}")
        built = build_flows(self.profile, self.rule_overrides())
        return {name: built[name] for name in (dict.fromkeys(names) if names else self.flows)}

    def policy(self, flow: str) -> Policy:
        override = self._flow_settings(flow)
        return Policy(
            winner=override.conflicts or self.conflicts,
            priority=override.priority or self.priority,
            groups=dict(override.conflict_groups),
        )

    def _flow_settings(self, flow: str) -> FlowSettings:
        return self.flow.get(flow) or FlowSettings()  # type: ignore[call-overload]

    def delete_policy(self, flow: str) -> DeletePolicy:
        override = self._flow_settings(flow)
        return override.deletes or self.deletes

    def failure_retry_policy(self) -> FailureBackoff:
        return FailureBackoff(
            base=timedelta(seconds=self.schedule.failure_retry_base),
            cap=timedelta(seconds=self.schedule.failure_retry_cap),
        )

    def sync_options(self, *, allow_mass_change: bool = False) -> SyncOptions:
        """The engine's options: every configured flow (a pass picks its flows), policies, breaker."""
        per_flow = {
            name: FlowOptions(self.policy(name), self.delete_policy(name), name in self.create_in_invoiced)
            for name in FLOW_NAMES
        }
        return SyncOptions.build(
            self.profile,
            self.rule_overrides(),
            per_flow,
            breaker=EngineBreaker(**self.breaker.model_dump()),
            allow_mass_change=allow_mass_change,
        )

    def invoiced_key(self) -> str:
        if self.invoiced_api_key is None or not self.invoiced_api_key.get_secret_value():
            raise SettingError("INVOICED_API_KEY is not set: expected an Invoiced API key (Settings > Developers > API Keys)")
        return self.invoiced_api_key.get_secret_value()

    def keap_credentials(self) -> ApiKey | AccessToken | OAuthClient:
        """A personal access token / service key if one is set, else a bare OAuth access token, else the
        OAuth app and its token file."""
        if self.keap_api_key is not None and self.keap_api_key.get_secret_value():
            return ApiKey(self.keap_api_key.get_secret_value())
        if self.keap_access_token is not None and self.keap_access_token.get_secret_value():
            return AccessToken(self.keap_access_token.get_secret_value())
        if self.keap_client_id:
            return self.keap_oauth_client()
        raise SettingError(
            "KEAP_API_KEY is not set: expected a Keap personal access token or service account key "
            "(or KEAP_ACCESS_TOKEN, or KEAP_CLIENT_ID and KEAP_CLIENT_SECRET for an OAuth app)"
        )

    def keap_oauth_client(self) -> OAuthClient:
        if not self.keap_client_id:
            raise SettingError("KEAP_CLIENT_ID is not set: expected the client id of your Keap developer app")
        if self.keap_client_secret is None or not self.keap_client_secret.get_secret_value():
            raise SettingError("KEAP_CLIENT_SECRET is not set: expected the client secret of your Keap developer app")
        return OAuthClient(
            client_id=self.keap_client_id,
            client_secret=self.keap_client_secret.get_secret_value(),
            token_store=FileTokenStore(self.keap_token_file),
            token_url=str(self.keap_token_url),
        )

    def keap_limits(self, credentials: ApiKey | AccessToken | OAuthClient) -> RateLimits:
        """An access token belongs to an OAuth app and shares its (larger) quota."""
        limits = self.rate_limits.keap_api_key if isinstance(credentials, ApiKey) else self.rate_limits.keap_oauth
        return limits.rate_limits()

    def invoiced_limits(self) -> RateLimits:
        return RateLimits(max_in_flight=self.rate_limits.invoiced_max_in_flight)

    def secrets(self) -> list[str]:
        """Every secret value set, for log redaction."""
        values = (self.invoiced_api_key, self.keap_api_key, self.keap_access_token, self.keap_client_secret,
                  self.invoiced_webhook_secret, self.keap_hook_token, self.status_token)
        return [value.get_secret_value() for value in values if value is not None]


def base_url(url: HttpUrl) -> str:
    """A URL setting as connectors take it: without the trailing slash pydantic adds."""
    return str(url).rstrip("/")


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path` (or `invoiced-keap.toml` here, if present) and the environment.

    Raises `SettingError` with one line for a missing file that was asked for, bad TOML, an unknown
    setting or a wrong value.
    """
    file = path or DEFAULT_CONFIG_FILE
    try:
        values = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if path is not None:
            raise SettingError(f"{path}: configuration file not found") from None
        values = {}
    except tomllib.TOMLDecodeError as error:
        raise SettingError(f"{file}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingError(f"{file}: cannot read the configuration file: {error}") from None
    try:
        return Settings(**values)
    except ValidationError as error:
        raise SettingError(describe(error, file)) from None


def describe(error: ValidationError, file: Path) -> str:
    """One line for the first problem, naming the setting (dotted, as in the file) and what was expected."""
    problem = error.errors()[0]
    setting = _from_environment(problem["loc"]) or ".".join(str(part) for part in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if not setting:  # a check across settings: its message names them
        return f"{file}: setting {message}{more}"
    if problem["type"] == "extra_forbidden":
        return f"{file}: unknown setting {setting!r}{more}"
    shown = "" if _is_secret(setting) else f" (got {problem['input']!r})"
    return f"setting {setting}: {message}{shown}{more}"


def _from_environment(location: tuple[int | str, ...]) -> str | None:
    """`NAME (environment)` when the wrong value came from an environment variable (which wins over the file)."""
    field = Settings.model_fields.get(str(location[0])) if len(location) == 1 else None
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        variable = str(alias.choices[-1])
        if variable in os.environ:
            return f"{variable} (environment)"
    return None


def _is_secret(setting: str) -> bool:
    return any(word in setting.lower() for word in ("key", "secret", "token"))
