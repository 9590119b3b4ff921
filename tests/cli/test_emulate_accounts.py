"""Each `emulate` start is a Keap account of its own (its records live in memory only), so a state made with one
stops before writing to another, as with real Keap (break-it: every emulator answered as one account)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def emulators() -> Iterator[tuple[str, str, str]]:
    """(Invoiced URL, Keap URL, Keap account) of an `emulate` process on free ports."""
    emulate = subprocess.Popen([sys.executable, "-m", "invoiced_keap", "emulate", "--invoiced-port", "0", "--keap-port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        invoiced_line, keap_line = (emulate.stdout.readline() for _ in range(2))  # type: ignore[union-attr]
        yield (re.search(r"(http://\S+)", invoiced_line)[1], re.search(r"(http://\S+)", keap_line)[1],  # type: ignore[index]
               re.search(r"account (\S+)\)", keap_line)[1])  # type: ignore[index]
    finally:
        emulate.send_signal(signal.SIGINT)
        emulate.wait(timeout=10)


def test_a_state_made_with_one_emulator_stops_before_writing_to_another(cli, monkeypatch) -> None:
    with emulators() as (invoiced_url, first_keap, first), emulators() as (_, second_keap, second):
        assert first != second
        assert httpx.get(f"{second_keap}/v2/companies", headers={"X-Keap-API-Key": "test"}).headers["x-keap-tenant-id"] == second
        for name, value in {"INVOICED_API_URL": invoiced_url, "INVOICED_API_KEY": "test", "KEAP_API_URL": first_keap,
                            "KEAP_API_KEY": "test"}.items():
            monkeypatch.setenv(name, value)
        assert cli("sync", "--flow", "companies").exit_code in (0, 2)

        monkeypatch.setenv("KEAP_API_URL", second_keap)
        before = companies(second_keap)
        stopped = cli("sync", "--flow", "companies")

        assert stopped.exit_code == 1 and first in stopped.stderr and second in stopped.stderr
        assert companies(second_keap) == before  # nothing written to the other account


def companies(keap_url: str) -> list[dict]:
    return httpx.get(f"{keap_url}/v2/companies", headers={"X-Keap-API-Key": "test"}).json()["companies"]
