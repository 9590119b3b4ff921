"""Shared fixtures. Emulators run over real HTTP on loopback; PostgreSQL is used when configured."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL_VARIABLE = "INVOICED_KEAP_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests need a server URL")
    return url
