"""`emulate --oauth-client ID:SECRET` registers a client, so `auth keap` works end to end against it and says how
long the tokens last."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx

REDIRECT = "https://example.com/keap/callback"


def test_auth_keap_works_end_to_end_against_emulate(cli, monkeypatch) -> None:
    emulate = subprocess.Popen([sys.executable, "-m", "invoiced_keap", "emulate", "--invoiced-port", "0", "--keap-port", "0",
                                "--oauth-client", "my-app:my-secret"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [emulate.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        invoiced_url = re.search(r"(http://\S+)", lines[0])[1]  # type: ignore[index]
        keap_url = re.search(r"(http://\S+)", lines[1])[1]  # type: ignore[index]
        authorize_url = re.search(r"KEAP_AUTHORIZE_URL=(\S+)", lines[2])[1]  # type: ignore[index]
        token_url = re.search(r"KEAP_TOKEN_URL=(\S+)", lines[2])[1]  # type: ignore[index]
        for name, value in {"KEAP_CLIENT_ID": "my-app", "KEAP_CLIENT_SECRET": "my-secret", "KEAP_REDIRECT_URI": REDIRECT,
                            "KEAP_AUTHORIZE_URL": authorize_url, "KEAP_TOKEN_URL": token_url, "KEAP_API_URL": keap_url,
                            "INVOICED_API_KEY": "test", "INVOICED_API_URL": invoiced_url}.items():
            monkeypatch.setenv(name, value)

        def browser(printed_url: str) -> str:
            """The account owner opens the printed URL and allows access; Keap redirects back with the code."""
            answer = httpx.get(printed_url)
            assert answer.status_code == 302
            return answer.headers["location"]

        shown = cli("auth", "keap", input="not-yet\n")  # the URL to open (the code pasted here is refused)
        printed = next(line for line in shown.stdout.splitlines() if line.startswith("http"))
        code = httpx.URL(browser(printed)).params["code"]
        result = cli("auth", "keap", "--code", code)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert re.search(r"The access token lasts until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(24 h\)", result.stdout), result.stdout
        assert set(json.loads((cli.directory / "keap-tokens.json").read_text())) == {"access_token", "refresh_token", "expires_at"}
        synced = cli("sync", "--flow", "products")  # the stored tokens authenticate against the emulator
        assert synced.exit_code in (0, 2), synced.stdout + synced.stderr
    finally:
        emulate.send_signal(signal.SIGINT)
        emulate.wait(timeout=10)
