"""`auth keap` against the Keap emulator's OAuth endpoints, and logs that never show a secret."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from invoiced_keap.connectors.redaction import register_secret
from invoiced_keap.logs import LogFormat, configure_logging
from tests.cli.conftest import CLIENT_ID, CLIENT_SECRET, KEAP_KEY

REDIRECT = "https://example.com/keap/callback"


@pytest.fixture
def oauth_app(connected, keap, monkeypatch):
    monkeypatch.delenv("KEAP_API_KEY")
    monkeypatch.setenv("KEAP_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("KEAP_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("KEAP_REDIRECT_URI", REDIRECT)
    monkeypatch.setenv("KEAP_TOKEN_URL", f"{keap[1].url}/token")
    monkeypatch.setenv("KEAP_AUTHORIZE_URL", f"{keap[1].url}/app/oauth/authorize")
    monkeypatch.setenv("KEAP_TOKEN_FILE", str(connected.directory / "tokens.json"))
    return connected


def consent(keap, state: str = "from-the-browser") -> str:
    """What the account owner's browser gets back from Keap's consent page: the redirect URL with the code."""
    response = httpx.get(f"{keap[1].url}/app/oauth/authorize",
                         params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "state": state})
    assert response.status_code == 302
    return response.headers["location"]


def test_auth_keap_prints_the_url_exchanges_the_code_and_the_tokens_work(oauth_app, keap) -> None:
    code = parse_qs(urlsplit(consent(keap)).query)["code"][0]
    result = oauth_app("auth", "keap", input=f"{code}\n")
    assert result.exit_code == 0, result.stdout + result.stderr
    printed = next(line for line in result.stdout.splitlines() if line.startswith("http"))
    query = parse_qs(urlsplit(printed).query)
    assert printed.startswith(f"{keap[1].url}/app/oauth/authorize?")
    assert query["client_id"] == [CLIENT_ID] and query["redirect_uri"] == [REDIRECT] and query["response_type"] == ["code"]
    tokens = json.loads((oauth_app.directory / "tokens.json").read_text())
    assert set(tokens) == {"access_token", "refresh_token", "expires_at"}
    assert tokens["access_token"] not in result.stdout + result.stderr
    assert oauth_app("verify", "--flow", "products").exit_code == 0  # the stored tokens authenticate


def test_auth_keap_refuses_a_url_from_another_attempt_and_a_bad_code(oauth_app, keap) -> None:
    stale = oauth_app("auth", "keap", "--code", consent(keap, state="someone-else"))
    assert stale.exit_code == 1 and "state differs" in stale.stderr
    wrong = oauth_app("auth", "keap", "--code", "not-a-code")
    assert wrong.exit_code == 1 and "invalid_grant" in wrong.stderr
    assert not (oauth_app.directory / "tokens.json").exists()


def test_oauth_without_stored_tokens_says_what_to_run(oauth_app) -> None:
    result = oauth_app("verify")
    assert result.exit_code == 1
    assert "Keap refused the credentials" in result.stderr and "invoiced-keap auth keap" in result.stderr
    assert CLIENT_SECRET not in result.stderr


def test_auth_keap_needs_the_redirect_uri(oauth_app, monkeypatch) -> None:
    monkeypatch.delenv("KEAP_REDIRECT_URI")
    result = oauth_app("auth", "keap", "--code", "x")
    assert result.exit_code == 1 and "KEAP_REDIRECT_URI is not set" in result.stderr


def test_json_logs_are_one_object_a_line_without_secrets(capsys) -> None:
    secret = "sk_live_log_secret_42"
    register_secret(secret)
    configure_logging(LogFormat.json, "info")
    log = logging.getLogger("invoiced_keap.test")
    log.info("calling with %s", secret)
    try:
        raise RuntimeError(f"request failed with key {secret}")
    except RuntimeError:
        log.exception("it broke")
    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [entry["message"] for entry in entries] == ["calling with ***", "it broke"]
    assert entries[1]["level"] == "error" and "request failed with key ***" in entries[1]["exception"]
    assert secret not in "".join(lines)


def test_text_logs_scrub_tracebacks_too(capsys) -> None:
    secret = "sk_live_text_secret_43"
    register_secret(secret)
    configure_logging(LogFormat.text, "warning")
    try:
        raise RuntimeError(f"key {secret}")
    except RuntimeError:
        logging.getLogger("invoiced_keap.test").exception("failed")
    err = capsys.readouterr().err
    assert "failed" in err and "key ***" in err and secret not in err


def test_cli_json_logs_during_a_run_hide_the_keys(connected) -> None:
    result = connected("--log-format", "json", "--log-level", "debug", "verify")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)
    assert KEAP_KEY not in result.stderr


def test_a_bare_keap_access_token_syncs_and_a_wrong_one_stops_with_advice(connected, keap, monkeypatch) -> None:
    auth = keap[0].auth
    tokens = auth.exchange_code(CLIENT_ID, auth.authorize(CLIENT_ID, REDIRECT), REDIRECT)
    monkeypatch.delenv("KEAP_API_KEY")
    monkeypatch.setenv("KEAP_ACCESS_TOKEN", tokens["access_token"])
    synced = connected("sync", "--flow", "products")
    assert synced.exit_code == 0, synced.stderr

    monkeypatch.setenv("KEAP_ACCESS_TOKEN", "expired-or-mistyped-token")
    refused = connected("sync", "--flow", "products")
    assert refused.exit_code == 1
    assert "expired or is wrong" in refused.stderr and "KEAP_CLIENT_ID" in refused.stderr
    assert "expired-or-mistyped-token" not in refused.stderr + refused.stdout
