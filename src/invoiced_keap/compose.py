"""The composition root: the settings (data) in; the engine's options, the store and both API
connectors (credentials, pacing) out, plus the one cheap call per system that proves they answer.

A run checks credentials before it reads anything, so that a wrong key or an unreachable URL stops
it with one line that names the system (and the setting to look at) instead of a traceback or a
run full of failures. The service (`server.service.Service`) reads its own settings from `Settings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pydantic import HttpUrl

from invoiced_keap.config import Settings, SettingError, revealed
from invoiced_keap.connectors.errors import ApiError, AuthenticationFailed, QuotaExhausted
from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey, FileTokenStore, OAuthClient
from invoiced_keap.connectors.pacing import Pacer, RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.flows import CATALOGUE, Flow
from invoiced_keap.state import FailureBackoff, Store
from invoiced_keap.state.database import missing_sqlite_file

QUICK_CHECK = RetryPolicy(attempts=2, timeout=15.0, wait_initial=0.2, wait_max=1.0, wait_jitter=0.1, max_wait=5.0)
"""A check that fails should say so within seconds, not after a run's patient backoff."""

KeapCredentials = ApiKey | AccessToken | OAuthClient


class CannotConnect(Exception):
    """A system refused our credentials or could not be reached: the message is the line to show."""


# --- the engine ----------------------------------------------------------------------------------

def sync_options(settings: Settings, *, allow_mass_change: bool = False) -> SyncOptions:
    """The engine's options: every catalogued flow as configured (a pass picks its flows), the breaker."""
    return SyncOptions(settings.profile, settings.flow, settings.breaker, allow_mass_change=allow_mass_change,
                       keap_currency=settings.keap_currency, receivables=settings.receivables)


def selected_flows(settings: Settings, names: Sequence[str] = ()) -> dict[str, Flow]:
    """The flows to work on: those named (on the command line), else those enabled in the settings."""
    unknown = [name for name in names if name not in CATALOGUE]
    if unknown:
        raise SettingError(f"--flow {unknown[0]!r}: expected one of {', '.join(CATALOGUE)}")
    built = sync_options(settings).flows
    return {name: built[name] for name in (dict.fromkeys(names) if names else settings.flows)}


EMPTY_STATE = "sqlite://"
"""What a dry run plans against while the state database does not exist yet: an empty one, in memory."""


def open_store(settings: Settings, *, dry_run: bool = False) -> Store:
    """The state database, migrated to the newest schema, with the configured failure backoff; for a `dry_run`, a
    SQLite file that does not exist yet is not created: an empty state in memory stands in (a first sync's plan)."""
    backoff = FailureBackoff(
        base=timedelta(seconds=settings.schedule.failure_retry_base),
        cap=timedelta(seconds=settings.schedule.failure_retry_cap),
    )
    url = EMPTY_STATE if dry_run and missing_sqlite_file(settings.database_url) else settings.database_url
    store = Store(url, failure_backoff=backoff)
    store.migrate()
    return store


# --- credentials and connectors ------------------------------------------------------------------

def invoiced_key(settings: Settings) -> str:
    key = revealed(settings.invoiced_api_key)
    if key is None:
        raise SettingError("INVOICED_API_KEY is not set: expected an Invoiced API key (Settings > Developers > API Keys)")
    return key


def keap_credentials(settings: Settings) -> KeapCredentials:
    """A personal access token / service key if one is set, else a bare OAuth access token, else the
    OAuth app and its token file."""
    if api_key := revealed(settings.keap_api_key):
        return ApiKey(api_key)
    if access_token := revealed(settings.keap_access_token):
        return AccessToken(access_token)
    if settings.keap_client_id:
        return keap_oauth_client(settings)
    raise SettingError(
        "KEAP_API_KEY is not set: expected a Keap personal access token or service account key "
        "(or KEAP_ACCESS_TOKEN, or KEAP_CLIENT_ID and KEAP_CLIENT_SECRET for an OAuth app)"
    )


def keap_oauth_client(settings: Settings) -> OAuthClient:
    if not settings.keap_client_id:
        raise SettingError("KEAP_CLIENT_ID is not set: expected the client id of your Keap developer app")
    client_secret = revealed(settings.keap_client_secret)
    if client_secret is None:
        raise SettingError("KEAP_CLIENT_SECRET is not set: expected the client secret of your Keap developer app")
    return OAuthClient(
        client_id=settings.keap_client_id,
        client_secret=client_secret,
        token_store=FileTokenStore(settings.keap_token_file),
        token_url=str(settings.keap_token_url),
    )


def keap_limits(settings: Settings, credentials: KeapCredentials) -> RateLimits:
    """An access token belongs to an OAuth app and shares its (larger) quota."""
    limits = settings.rate_limits.keap_api_key if isinstance(credentials, ApiKey) else settings.rate_limits.keap_oauth
    return limits.rate_limits()


def base_url(url: HttpUrl) -> str:
    """A URL setting as connectors take it: without the trailing slash pydantic adds."""
    return str(url).rstrip("/")


def open_invoiced(settings: Settings, retry: RetryPolicy = RetryPolicy()) -> InvoicedConnector:
    limits = RateLimits(max_in_flight=settings.rate_limits.invoiced_max_in_flight)
    return InvoicedConnector(invoiced_key(settings), base_url(settings.invoiced_api_url), limits=limits, retry=retry)


def open_keap(settings: Settings, retry: RetryPolicy = RetryPolicy(), *, pacer: type[Pacer] = Pacer) -> KeapConnector:
    """`pacer` is the pacing class (`run` passes one that also remembers Keap's daily quota for the status page)."""
    credentials = keap_credentials(settings)
    limits = keap_limits(settings, credentials)
    return KeapConnector(
        credentials, base_url(settings.keap_api_url), limits=limits, retry=retry,
        pacer=pacer(limits, max_wait=retry.max_wait),
    )


def explain_failure(settings: Settings, error: ApiError) -> str | None:
    """The line to show for a pass that ended on refused credentials or an unreachable API (naming the system
    and the setting to look at, as `check_credentials` does), or on Keap's used-up daily quota (when it resumes:
    no setting is wrong); None for any other error."""
    if not isinstance(error, AuthenticationFailed) and error.status is not None:
        return None
    if isinstance(error, QuotaExhausted) or (error.url or "").startswith(base_url(settings.keap_api_url)):
        return _explain("Keap", _keap_key_setting(settings), "KEAP_API_URL", error)  # only Keap has a daily quota
    return _explain("Invoiced", "INVOICED_API_KEY", "INVOICED_API_URL", error)


def _keap_key_setting(settings: Settings) -> str:
    credentials = keap_credentials(settings)
    return ("KEAP_API_KEY" if isinstance(credentials, ApiKey) else "KEAP_ACCESS_TOKEN"
            if isinstance(credentials, AccessToken) else "the Keap OAuth tokens (run `invoiced-keap auth keap`)")


async def check_credentials(settings: Settings) -> None:
    """One listing call of one record on each side; raises `CannotConnect` naming the system that failed."""
    async with open_invoiced(settings, QUICK_CHECK) as invoiced:
        try:
            await invoiced.api.request("GET", "/customers", params={"per_page": 1})
        except ApiError as error:
            raise CannotConnect(_explain("Invoiced", "INVOICED_API_KEY", "INVOICED_API_URL", error)) from None
    key_setting = _keap_key_setting(settings)
    async with open_keap(settings, QUICK_CHECK) as keap:
        try:
            await keap.api.request("GET", "/v2/companies", params={"page_size": 1, "fields": "company_name"})
        except ApiError as error:
            raise CannotConnect(_explain("Keap", key_setting, "KEAP_API_URL", error)) from None


def _explain(system: str, key_setting: str, url_setting: str, error: ApiError) -> str:
    if isinstance(error, AuthenticationFailed):
        return f"{system} refused the credentials ({error.status or 'no token'}: {error.message}); check {key_setting}"
    if isinstance(error, QuotaExhausted):
        return (f"{system}'s rate limit quota is used up ({error}): this pass stopped and sends it nothing more; what is "
                "left waits for the next pass after that time")
    if error.status is None:
        return f"{system} could not be reached ({error}); check {url_setting}"
    return f"{system} answered the credential check with {error.status}: {error.message}; check {url_setting}"
