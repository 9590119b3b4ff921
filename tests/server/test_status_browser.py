"""The status page in a real headless browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.app import ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.state import Store
from tests.server.state_samples import fill

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-token-42"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (scripts/ci-system-deps.sh installs it)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (test extras)")


@pytest.fixture
def page() -> Iterator["sync_api.Page"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def status_url(store: Store) -> Iterator[str]:
    fill(store)
    app = create_app(
        store, CATALOGUE, DirtyQueue(), Metrics(store), ServerSettings(status_token=TOKEN), keap_quota=lambda: 12_345
    )
    with BackgroundServer(app) as server:
        yield f"{server.url}/status"


def test_status_page_in_chromium_shows_the_state_after_the_token(page: "sync_api.Page", status_url: str) -> None:
    expect = sync_api.expect
    page.goto(status_url)
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_test_id("wrong-token")).to_be_visible()

    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()

    companies = page.locator("tr[data-flow=companies]")
    expect(companies.get_by_test_id("links")).to_have_text("3")
    expect(companies.get_by_test_id("failures")).to_have_text("1")
    expect(companies.get_by_test_id("last-result")).to_have_text("ok")
    contacts = page.locator("tr[data-flow=contacts]")
    expect(contacts.get_by_test_id("links")).to_have_text("1")
    expect(contacts.get_by_test_id("review")).to_have_text("2")
    products = page.locator("tr[data-flow=products]")
    expect(products.get_by_test_id("links")).to_have_text("0")
    expect(products.get_by_test_id("last-result")).to_have_text("none")
    expect(page.get_by_test_id("keap-quota")).to_have_text("12345")
    expect(page.get_by_test_id("conflicts-total")).to_have_text("1")

    section = page.locator("section[data-section=companies]")
    expect(section.get_by_test_id("failure-list")).to_contain_text("Region <b>is</b> invalid")
    expect(section.get_by_test_id("write-list").locator("tr")).to_have_count(3)  # header and two writes
    expect(section.get_by_test_id("conflict-list")).to_contain_text("ACME Inc")

    page.reload()  # the cookie keeps the reader signed in
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
