"""Settings from the file and the environment, and the one-line errors for everything that can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from invoiced_keap.compose import invoiced_key, keap_credentials, keap_limits, selected_flows, sync_options
from invoiced_keap.config import Settings, SettingError, load_settings
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey, FileTokenStore, OAuthClient
from invoiced_keap.engine.options import Breaker
from invoiced_keap.engine.plan import Policy

EXAMPLE = Path(__file__).parents[2] / "invoiced-keap.example.toml"


def write(directory: Path, text: str) -> Path:
    path = directory / "invoiced-keap.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(cli) -> None:
    settings = load_settings()
    assert list(selected_flows(settings)) == ["companies", "contacts", "products", "company_contacts"]
    assert settings.flow["contacts"].policy == Policy("newest", "invoiced", {})
    assert settings.flow["products"].deletes == "unlink"
    assert sync_options(settings).breaker == Breaker()
    assert str(settings.invoiced_api_url) == "https://api.invoiced.com/"


def test_the_documented_example_is_valid_and_means_the_defaults(cli) -> None:
    example = load_settings(EXAMPLE)
    defaults = Settings()
    assert example.flows == defaults.flows
    assert example.breaker == defaults.breaker
    assert example.rate_limits == defaults.rate_limits
    assert example.schedule == defaults.schedule


def test_environment_overrides_the_file_and_a_bare_database_url_is_ignored(cli, monkeypatch) -> None:
    path = write(cli.directory, 'invoiced_api_url = "http://file.example"\ndatabase_url = "sqlite:///file.db"\n'
                                'keap_api_url = "http://keap-file.example/crm/rest"\n')
    monkeypatch.setenv("INVOICED_API_URL", "http://env.example")
    monkeypatch.setenv("INVOICED_KEAP_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone-else/db")
    settings = load_settings(path)
    assert str(settings.invoiced_api_url) == "http://env.example/"
    assert str(settings.keap_api_url) == "http://keap-file.example/crm/rest"
    assert settings.database_url == "sqlite:///env.db"
    monkeypatch.delenv("INVOICED_KEAP_DATABASE_URL")
    assert load_settings(path).database_url == "sqlite:///file.db"


def test_flow_overrides_reach_rules_policies_and_deletes(cli) -> None:
    path = write(cli.directory, """
profile = "default"
flows = ["companies", "products"]
conflicts = "invoiced"
[flow.companies]
drop = ["phone"]
conflicts = "newest"
priority = "keap"
conflict_groups = { address = "keap" }
deletes = "propagate"
[flow.products]
drop = ["description"]
add = [{ name = "html", invoiced = "description", keap = "top_html" }]
""")
    settings = load_settings(path)
    flows = selected_flows(settings)
    assert list(flows) == ["companies", "products"]
    assert [rule.name for rule in flows["companies"].rules] == ["name", "email", "address"]
    assert [rule.name for rule in flows["products"].rules] == ["name", "html"]
    options = sync_options(settings)
    assert options.flow_options("companies").policy == Policy("newest", "keap", {"address": "keap"})
    assert options.flow_options("products").policy == Policy("invoiced", "invoiced", {})
    assert options.flow_options("companies").deletes == "propagate"
    assert options.flow_options("products").deletes == "unlink"
    assert [rule.name for rule in options.flows["companies"].rules] == ["name", "email", "address"]
    assert list(selected_flows(settings, ["contacts"])) == ["contacts"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flows = [\n", "not valid TOML"),
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("[breaker]\nmax_delete_share = 2\n", "setting breaker.max_delete_share: Input should be less than or equal to 1 (got 2)"),
        ("[flow.companies]\ndrop = ['website']\n", "flow.companies: no field rule 'website'"),
        ("[flow.companies]\nadd = [{name = 'n', invoiced = 'notes', keap = 'notes', bogus = 1}]\n",
         "setting flow.companies.add: unknown key 'bogus' in rule"),
        ("[flow.companies]\nadd = [{name = 'n', invoiced = 'notes', keap = 'company_name'}]\n",
         "setting flow.companies: rule 'n': keap = 'company_name' is already mapped by rule 'name'"),
        ("[flow.products]\nadd = [{name = 'sku', invoiced = 'id', keap = 'sku'}]\n",
         "setting flow.products.add: invoiced = 'id' is no free-text field of an Invoiced item"),
        ("[flow.invoices]\ndeletes = 'ignore'\n", "setting flow.invoices.[key]: expected one of companies, contacts, products, company_contacts"),
        ("flows = ['companies', 'invoices']\n", "setting flows.1: expected one of companies, contacts, products, company_contacts (got 'invoices')"),
        ("[flow.companies]\ncolour = 'blue'\n", "unknown setting 'flow.companies.colour'"),
        ("[breaker]\nmin_deletes = -1\n", "setting breaker.min_deletes: Input should be greater than or equal to 0"),
        ("[flow.products]\ndeletes = 'shred'\n", "setting flow.products.deletes: Input should be 'unlink', 'propagate' or 'ignore'"),
        # break-it: one wrong top-level value, copied into each flow's defaults, was "(and 4 more)"
        ("deletes = 'purge'\n", "setting deletes: Input should be 'unlink', 'propagate' or 'ignore' (got 'purge')$"),
        ("deletes = 'purge'\nprofile = 'x'\n", "(got 'x') (and 1 more)$"),
        ("flows = []\n", "setting flows: expected at least one of"),
        ("profile = 'everything'\n", "setting profile: expected one of spec, default (got 'everything')"),
        ("invoiced_api_url = 'api.invoiced.com'\n", "setting invoiced_api_url"),
        ("database_url = 'invoiced-keap.db'\n", "expected a SQLAlchemy URL"),
        ("[schedule]\npoll_interval = -5\n", "setting schedule.poll_interval: Input should be greater than 0"),
        ("[receivables.labels]\npast_due = 'Invoiced balance (EUR)'\n",
         "setting receivables: labels.past_due: 'Invoiced balance (EUR)' is a label the sync may write for balance"),
        ("keap_currency = 'dollars'\n", "setting keap_currency: 'dollars' is not a currency a Keap account prices in"),
        ("keap_currency = 'XAU'\n", "setting keap_currency: 'XAU' is not a currency a Keap account prices in; "
                                    "expected one of USD, EUR, GBP, ZAR, AUD, CAD, NZD"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(cli, monkeypatch, text: str, expected: str) -> None:
    monkeypatch.delenv("INVOICED_KEAP_DATABASE_URL")
    with pytest.raises(SettingError) as raised:
        load_settings(write(cli.directory, text))
    assert expected.removesuffix("$") in str(raised.value)
    assert not expected.endswith("$") or str(raised.value).endswith(expected[:-1])
    assert "\n" not in str(raised.value)


def test_a_wrong_environment_value_names_the_variable(cli, monkeypatch) -> None:
    monkeypatch.setenv("KEAP_API_URL", "not a url")
    with pytest.raises(SettingError, match=r"^setting KEAP_API_URL \(environment\): Input should be a valid URL"):
        load_settings()


def test_a_secret_is_never_echoed_in_an_error(cli) -> None:
    with pytest.raises(SettingError) as raised:
        load_settings(write(cli.directory, 'invoiced_api_key = ["sk_live_very_secret"]\n'))
    assert "invoiced_api_key" in str(raised.value)
    assert "sk_live_very_secret" not in str(raised.value)


def test_a_config_file_that_was_asked_for_must_exist(cli) -> None:
    with pytest.raises(SettingError, match="nowhere.toml: configuration file not found"):
        load_settings(cli.directory / "nowhere.toml")


def test_keap_credentials_prefer_the_key_then_the_oauth_app(cli, monkeypatch) -> None:
    with pytest.raises(SettingError, match="^KEAP_API_KEY is not set"):
        keap_credentials(load_settings())
    with pytest.raises(SettingError, match="^INVOICED_API_KEY is not set"):
        invoiced_key(load_settings())
    monkeypatch.setenv("KEAP_CLIENT_ID", "app")
    with pytest.raises(SettingError, match="^KEAP_CLIENT_SECRET is not set"):
        keap_credentials(load_settings())
    monkeypatch.setenv("KEAP_CLIENT_SECRET", "shh")
    monkeypatch.setenv("KEAP_TOKEN_FILE", str(cli.directory / "tokens.json"))
    credentials = keap_credentials(load_settings())
    assert isinstance(credentials, OAuthClient)
    assert isinstance(credentials.token_store, FileTokenStore)
    assert credentials.token_store.path == cli.directory / "tokens.json"
    assert keap_limits(load_settings(), credentials).windows[0].limit == 1500
    monkeypatch.setenv("KEAP_ACCESS_TOKEN", "bare-token")
    token = keap_credentials(load_settings())
    assert token == AccessToken("bare-token") and keap_limits(load_settings(), token).windows[0].limit == 1500
    assert "bare-token" in load_settings().secrets()
    monkeypatch.setenv("KEAP_API_KEY", "KeapAK-123")
    assert keap_credentials(load_settings()) == ApiKey("KeapAK-123")


def test_a_flow_table_starts_from_the_top_level_defaults(cli) -> None:
    settings = load_settings(write(cli.directory, """
conflicts = "keap"
deletes = "ignore"
create_in_invoiced = ["products"]
[flow.companies]
deletes = "propagate"
"""))
    assert (settings.flow["companies"].conflicts, settings.flow["companies"].deletes) == ("keap", "propagate")
    assert (settings.flow["contacts"].conflicts, settings.flow["contacts"].deletes) == ("keap", "ignore")
    assert [name for name, options in settings.flow.items() if options.create_in_invoiced] == ["products"]
