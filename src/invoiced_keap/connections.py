"""Both APIs opened from the settings, and the one cheap call per system that proves they answer.

A run checks credentials before it reads anything, so that a wrong key or an unreachable URL stops
it with one line that names the system (and the setting to look at) instead of a traceback or a
run full of failures.
"""

from __future__ import annotations

from invoiced_keap.config import Settings, base_url
from invoiced_keap.connectors.errors import ApiError, AuthenticationFailed
from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey
from invoiced_keap.connectors.pacing import Pacer

QUICK_CHECK = RetryPolicy(attempts=2, timeout=15.0, wait_initial=0.2, wait_max=1.0, wait_jitter=0.1, max_wait=5.0)
"""A check that fails should say so within seconds, not after a run's patient backoff."""


class CannotConnect(Exception):
    """A system refused our credentials or could not be reached: the message is the line to show."""


def open_invoiced(settings: Settings, retry: RetryPolicy = RetryPolicy()) -> InvoicedConnector:
    return InvoicedConnector(
        settings.invoiced_key(), base_url(settings.invoiced_api_url), limits=settings.invoiced_limits(), retry=retry
    )


def open_keap(settings: Settings, retry: RetryPolicy = RetryPolicy(), *, pacer: type[Pacer] = Pacer) -> KeapConnector:
    """`pacer` is the pacing class (`run` passes one that also remembers Keap's daily quota for the status page)."""
    credentials = settings.keap_credentials()
    limits = settings.keap_limits(credentials)
    return KeapConnector(
        credentials, base_url(settings.keap_api_url), limits=limits, retry=retry,
        pacer=pacer(limits, max_wait=retry.max_wait),
    )


async def check_credentials(settings: Settings) -> None:
    """One listing call of one record on each side; raises `CannotConnect` naming the system that failed."""
    async with open_invoiced(settings, QUICK_CHECK) as invoiced:
        try:
            await invoiced.api.request("GET", "/customers", params={"per_page": 1})
        except ApiError as error:
            raise CannotConnect(_explain("Invoiced", "INVOICED_API_KEY", "INVOICED_API_URL", error)) from None
    keap_credentials = settings.keap_credentials()
    key_setting = ("KEAP_API_KEY" if isinstance(keap_credentials, ApiKey) else "KEAP_ACCESS_TOKEN"
                   if isinstance(keap_credentials, AccessToken) else "the Keap OAuth tokens (run `invoiced-keap auth keap`)")
    async with open_keap(settings, QUICK_CHECK) as keap:
        try:
            await keap.api.request("GET", "/v2/companies", params={"page_size": 1, "fields": "company_name"})
        except ApiError as error:
            raise CannotConnect(_explain("Keap", key_setting, "KEAP_API_URL", error)) from None


def _explain(system: str, key_setting: str, url_setting: str, error: ApiError) -> str:
    if isinstance(error, AuthenticationFailed):
        return f"{system} refused the credentials ({error.status or 'no token'}: {error.message}); check {key_setting}"
    if error.status is None:
        return f"{system} could not be reached ({error}); check {url_setting}"
    return f"{system} answered the credential check with {error.status}: {error.message}; check {url_setting}"
