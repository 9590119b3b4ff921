"""Settings: `invoiced-keap.toml`, overridden by the environment, validated by pydantic-settings.

Connection settings have one name in the file (lower case) and in the environment (upper case):
`invoiced_api_key` / `INVOICED_API_KEY`, ... The one exception is the state database, whose
environment variable carries the project's prefix: `database_url` / `INVOICED_KEAP_DATABASE_URL`
(a bare `DATABASE_URL` often belongs to some other program). The environment is matched case-
sensitively for that reason. Behaviour (flows, conflicts, deletes, breaker, rate limits, schedule)
is set in the file only. Anything wrong stops the program with one line, `SettingError`, that
names the setting and says what was expected; unknown settings are errors, not silently ignored.

Settings are data: `[breaker]` and `[flow.NAME]` are the engine's own option types, and what the
settings become (engine options, connectors, the store) is built in one place, `compose`.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
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
from invoiced_keap.connectors.keap_auth import AUTHORIZE_URL, DEFAULT_TOKEN_URL
from invoiced_keap.connectors.pacing import INVOICED_LIMITS, KEAP_OAUTH_LIMITS, KEAP_PAT_LIMITS, RateLimits
from invoiced_keap.engine.options import Breaker, DeletesPolicy, FlowOptions, SyncOptions
from invoiced_keap.engine.plan import PolicyName
from invoiced_keap.engine.receivables import ReceivablesOptions
from invoiced_keap.flows import CATALOGUE, PROFILES, Side, profile_flows
from invoiced_keap.mapping import currency_code

DEFAULT_CONFIG_FILE = Path("invoiced-keap.toml")
INHERITED = ("conflicts", "priority", "deletes")
"""Top-level settings that are every flow's default (a `[flow.NAME]` table may override them)."""


class SettingError(Exception):
    """A missing or wrong setting: the message is the one line the user sees."""


def _one_of(known: Mapping[str, object]) -> AfterValidator:
    def check(name: str) -> str:
        if name not in known:
            raise ValueError(f"expected one of {', '.join(known)}")
        return name

    return AfterValidator(check)


FlowName = Annotated[str, _one_of(CATALOGUE)]
"""A flow of the catalogue (`flows.CATALOGUE`): a new flow there needs no change here."""
ProfileName = Annotated[str, _one_of(PROFILES)]
"""A mapping profile of `flows.PROFILES`."""


def _env(name: str) -> Any:
    """Read from the file as `name`, from the environment as `NAME`."""
    return AliasChoices(name, name.upper())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    """`[schedule]`, in seconds: how often `run` polls (Keap, while its hooks are verified, only every
    `keap_poll_interval`; Invoiced's customers, while its webhook is verified, only every `invoiced_poll_interval`),
    lists everything, waits after a webhook, retries failures."""

    poll_interval: PositiveFloat = 60.0
    keap_poll_interval: PositiveFloat = 900.0
    invoiced_poll_interval: PositiveFloat = 900.0
    full_scan_interval: PositiveFloat = 86_400.0
    webhook_debounce: PositiveFloat = 2.0
    failure_retry_base: PositiveFloat = 300.0
    failure_retry_cap: PositiveFloat = 86_400.0


class Settings(BaseSettings):
    """Everything the program can be told. Keyword arguments play the file's part: the environment wins.

    `flow` holds every catalogued flow's options, each starting from the top-level `conflicts`,
    `priority`, `deletes` and `create_in_invoiced` with its `[flow.NAME]` table on top.
    """

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

    profile: ProfileName = "default"
    keap_currency: Annotated[str, AfterValidator(currency_code)] = "USD"
    flows: list[FlowName] = Field(default_factory=lambda: profile_flows("default"))  # unset: the profile's
    create_in_invoiced: list[FlowName] = Field(default_factory=list)
    conflicts: PolicyName = "newest"
    priority: Side = "invoiced"
    deletes: DeletesPolicy = "unlink"
    flow: dict[FlowName, FlowOptions] = Field(default_factory=dict)
    breaker: Breaker = Breaker()
    rate_limits: RateLimitSettings = RateLimitSettings()
    schedule: Schedule = Schedule()
    receivables: ReceivablesOptions = ReceivablesOptions()

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

    @model_validator(mode="before")
    @classmethod
    def _flows_start_from_the_top_level(cls, data: Any) -> Any:
        """Each catalogued flow's table, under its own keys, the top-level defaults it does not override."""
        if not isinstance(data, dict) or not isinstance(data.get("flow", {}), dict):
            return data
        tables: dict[str, Any] = data.get("flow", {})
        defaults = {key: data[key] for key in INHERITED if key in data}
        creators = data.get("create_in_invoiced", [])
        resolved = {
            name: {**defaults, "create_in_invoiced": isinstance(creators, list) and name in creators, **table}
            if isinstance(table, dict) else table
            for name, table in {**{name: {} for name in CATALOGUE}, **tables}.items()
        }
        return {**data, "flow": resolved}

    @field_validator("database_url")
    @classmethod
    def _database_url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a SQLAlchemy URL such as sqlite:///invoiced-keap.db or postgresql://user@host/db")
        return value

    @model_validator(mode="before")
    @classmethod
    def _flows_of_the_profile(cls, data: Any) -> Any:
        """Without `flows`, the profile's (`flows.profile_flows`)."""
        if isinstance(data, dict) and "flows" not in data and data.get("profile", "default") in PROFILES:
            return {**data, "flows": profile_flows(data.get("profile", "default"))}
        return data

    @field_validator("flows")
    @classmethod
    def _flows_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"expected at least one of {', '.join(CATALOGUE)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _field_rules_exist(self) -> Settings:
        built = SyncOptions(self.profile, self.flow).flows  # a ValueError names the setting
        for name, options in self.flow.items():
            known = {rule.name for rule in CATALOGUE[name].rules} | {rule.name for rule in built[name].rules}
            for rule_name in [*options.drop, *options.conflict_groups]:
                if rule_name not in known:
                    raise ValueError(f"flow.{name}: no field rule {rule_name!r}; expected one of {sorted(known)}")
        return self

    @model_validator(mode="after")
    def _status_page_guarded_beyond_loopback(self) -> Settings:
        if not is_loopback(self.server_host) and revealed(self.status_token) is None:
            raise ValueError(f"server_host: binding to {self.server_host} exposes the status page: "
                             "set a status token (status_token, env INVOICED_KEAP_STATUS_TOKEN)")
        return self

    def secrets(self) -> list[str]:
        """Every secret value set, for log redaction."""
        values = (self.invoiced_api_key, self.keap_api_key, self.keap_access_token, self.keap_client_secret,
                  self.invoiced_webhook_secret, self.keap_hook_token, self.status_token)
        return [value.get_secret_value() for value in values if value is not None]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def revealed(secret: SecretStr | None) -> str | None:
    """A secret setting's value, None when unset or empty."""
    return (secret.get_secret_value() or None) if secret is not None else None


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
    problem, *rest = error.errors()
    setting = _from_environment(problem["loc"]) or ".".join(str(part) for part in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    # a top-level value is every flow's default: its copies in `flow.NAME` are not more problems
    others = {(other["loc"][-1:], repr(other["input"])) for other in rest} - {(problem["loc"][-1:], repr(problem["input"]))}
    more = f" (and {len(others)} more)" if others else ""
    if not setting:  # a check across settings: its message names them
        return f"{file}: setting {message}{more}"
    if problem["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:
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
