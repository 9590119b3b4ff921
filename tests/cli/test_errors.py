"""Commands that cannot run stop with exit code 1 and one line that says why, naming the system or setting."""

from __future__ import annotations

import socket

import pytest

from tests.cli.conftest import INVOICED_KEY, KEAP_KEY


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_missing_invoiced_key(connected, monkeypatch) -> None:
    monkeypatch.delenv("INVOICED_API_KEY")
    result = connected("verify")
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith("invoiced-keap: INVOICED_API_KEY is not set")


def test_missing_keap_credentials(connected, monkeypatch) -> None:
    monkeypatch.delenv("KEAP_API_KEY")
    result = connected("verify")
    assert result.exit_code == 1
    assert "KEAP_API_KEY is not set" in one_line(result.stderr)


def test_wrong_invoiced_key_says_invoiced_refused(connected, monkeypatch) -> None:
    monkeypatch.setenv("INVOICED_API_KEY", "inv_live_wrong_key_0000")
    result = connected("verify")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "Invoiced refused the credentials (401" in line and "INVOICED_API_KEY" in line
    assert "inv_live_wrong_key_0000" not in result.output + result.stderr


def test_wrong_keap_key_says_keap_refused(connected, monkeypatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", "KeapAK-wrong-key-1111")
    result = connected("verify")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "Keap refused the credentials (401" in line and "KEAP_API_KEY" in line
    assert "KeapAK-wrong-key-1111" not in result.output + result.stderr


def test_unreachable_url_names_the_system_and_setting(connected, monkeypatch) -> None:
    monkeypatch.setenv("KEAP_API_URL", f"http://127.0.0.1:{closed_port()}/crm/rest")
    result = connected("verify")
    assert result.exit_code == 1
    assert "Keap could not be reached" in result.stderr and "check KEAP_API_URL" in result.stderr
    assert INVOICED_KEY not in result.stderr and KEAP_KEY not in result.stderr


def test_malformed_config_file(cli) -> None:
    (cli.directory / "broken.toml").write_text("flows = ['companies'\n")
    result = cli("--config", "broken.toml", "status")
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith("invoiced-keap: broken.toml: not valid TOML")


def test_unknown_setting_in_the_default_file(cli) -> None:
    (cli.directory / "invoiced-keap.toml").write_text("[breaker]\nmax_deletes = 5\n")
    result = cli("status")
    assert result.exit_code == 1
    assert one_line(result.stderr) == "invoiced-keap: invoiced-keap.toml: unknown setting 'breaker.max_deletes'"


def test_missing_config_file_that_was_named(cli) -> None:
    result = cli("--config", "absent.toml", "links")
    assert result.exit_code == 1
    assert "absent.toml: configuration file not found" in result.stderr


def test_unknown_flow_and_bad_usage_are_exit_code_1_not_2(cli) -> None:
    flow = cli("failures", "--flow", "invoices")
    assert flow.exit_code == 1
    assert "--flow 'invoices': expected one of companies, contacts, products" in flow.stderr
    usage = cli("links", "--no-such-option")
    assert usage.exit_code == 1
    assert "No such option" in usage.stderr


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("invoiced-keap ")


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("KEAP_API_KEY", "KeapAK-wrong-key-2222", "Keap refused the credentials (401"),
    ("INVOICED_API_KEY", "inv-wrong-key-3333", "Invoiced refused the credentials (401"),
])
def test_sync_checks_credentials_with_its_first_reads_and_names_the_setting(connected, monkeypatch, variable, value, expected) -> None:
    monkeypatch.setenv(variable, value)
    result = connected("sync")
    assert result.exit_code == 1
    output = result.output + result.stderr
    assert expected in output and f"check {variable}" in output
    assert value not in output
    assert result.output.count("API calls:") == 1  # one report: no reconcile (full scans) after a refused pass


def test_keap_s_used_up_quota_names_keap_and_when_it_resumes_not_the_credentials(monkeypatch) -> None:
    """The pacer's `QuotaExhausted` carries no URL: it is Keap's (Invoiced has no daily quota), never Invoiced's; a
    used-up quota is no wrong setting, so no credential or URL setting is named (issue 15)."""
    from datetime import UTC, datetime

    from invoiced_keap.compose import explain_failure
    from invoiced_keap.config import Settings
    from invoiced_keap.connectors.errors import QuotaExhausted

    monkeypatch.setenv("INVOICED_API_KEY", INVOICED_KEY)
    monkeypatch.setenv("KEAP_API_KEY", KEAP_KEY)
    error = QuotaExhausted("Quota Exceeded", resume_at=datetime(2026, 12, 1, tzinfo=UTC))
    message = explain_failure(Settings(), error)
    assert message is not None and message.startswith("Keap's ")
    assert "Invoiced" not in message and "INVOICED_API_URL" not in message
    assert "Quota Exceeded; resume at 2026-12-01T00:00:00+00:00" in message and "waits for the next pass" in message
    assert "KEAP_API_KEY" not in message and "KEAP_API_URL" not in message and "check" not in message
