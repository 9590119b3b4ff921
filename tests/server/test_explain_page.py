"""The status page names the records it lists and links each to `/explain/{reference}`, a record's history
(the view `explain` prints), escaped and behind the same token as the status page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE, Shadow
from invoiced_keap.mapping import LossyCarry
from invoiced_keap.server.app import ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.state import AuditOperation, Store
from tests.server.conftest import Served

HOSTILE = "<script>alert(1)</script> Ltd"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; Ltd"


def named(store: Store) -> None:
    """companies: customer 7 <-> Keap company k7 (a hostile Invoiced name, a conflict, a lossy note), a failed update
    of Keap company k2; contacts: a refused create of customer 41 (its name only in the payload), customer 50 <->
    Keap contact 7 (the id 7 again), a review item for customer 43."""
    hostile = store.upsert_link("companies", "7", "k7", invoiced=Shadow({"name": HOSTILE}), keap=Shadow({"name": "Acme Keap"}))
    store.upsert_link("companies", "2", "k2", invoiced=Shadow({"name": "Globex"}), keap=Shadow({"name": "Globex Corp"}))
    store.record_conflict(hostile, "name", invoiced_value=HOSTILE, keap_value="Acme Keap", winner="invoiced", reason="newest")
    store.record_lossy_carries(hostile, [("keap", "name")], [LossyCarry("keap", "company_name", HOSTILE, "cut", "too long", "name")])
    store.append_audit("companies", "keap", "k7", AuditOperation.UPDATE, after={"company_name": HOSTILE})
    store.record_failure("companies", "keap", "k2", "update", "Region is invalid", payload={"address": {}})
    store.record_failure("contacts", "invoiced", "41", "create", "Contact must contain at least one email address",
                         payload={"given_name": "Jane", "family_name": "Cooper"})
    store.upsert_link("contacts", "50", "7", invoiced=Shadow({"name": "Sam Seven"}))
    store.add_review_item("contacts", "43", ["k43", "k44"], "two contacts share the email")


def test_the_status_page_names_each_record_and_links_it_to_its_history(served: Served) -> None:
    named(served.store)
    html = httpx.get(f"{served.url}/status").text
    assert HOSTILE not in html and ESCAPED in html
    for reference, name in (("invoiced%3Acustomer%3A7", ESCAPED), ("keap%3Acompany%3Ak7", "Acme Keap"),  # conflict, lossy note
                            ("keap%3Acompany%3Ak2", "Globex Corp"),  # a failure of a linked record: the link's shadow
                            ("invoiced%3Acustomer%3A41", "Jane Cooper")):  # a refused create: the payload
        assert f'href="explain/{reference}"' in html
        assert f'{reference.split("%3A")[-1]}</a> <span class="name">{name}</span>' in html
    assert 'href="explain/invoiced%3Acustomer%3A43"' in html  # the review item
    assert 'data-testid="conflict-list"' in html and 'data-testid="lossy-list"' in html


def test_the_explain_page_shows_one_records_history_escaped(served: Served) -> None:
    named(served.store)
    page = httpx.get(f"{served.url}/explain/invoiced:customer:7")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert HOSTILE not in page.text and ESCAPED in page.text
    assert 'data-ref="keap:company:k7"' in page.text and 'href="keap%3Acompany%3Ak7"' in page.text  # its twin, linked
    assert "newest" in page.text and "too long" in page.text and "company_name" in page.text
    followed = httpx.get(f"{served.url}/explain/keap%3Acompany%3Ak7")
    assert followed.status_code == 200 and ESCAPED in followed.text
    refused = httpx.get(f"{served.url}/explain/41")  # one record: a bare id needs no question
    assert refused.status_code == 200 and "Jane Cooper" in refused.text and "at least one email" in refused.text


def test_a_bare_id_of_several_records_lists_them_and_a_wrong_reference_is_refused(served: Served) -> None:
    named(served.store)
    asked = httpx.get(f"{served.url}/explain/7")  # customer 7 (companies) and Keap contact 7 (contacts)
    assert asked.status_code == 300
    assert 'href="invoiced%3Acustomer%3A7"' in asked.text and 'href="keap%3Acontact%3A7"' in asked.text
    narrowed = httpx.get(f"{served.url}/explain/7", params={"side": "keap"})
    assert narrowed.status_code == 200 and "Sam Seven" in narrowed.text and HOSTILE not in narrowed.text
    assert httpx.get(f"{served.url}/explain/invoiced:customer:999").status_code == 404
    wrong = httpx.get(f"{served.url}/explain/keap:<script>:1")
    assert wrong.status_code == 400 and "<script>" not in wrong.text and "&lt;script&gt;" in wrong.text


@pytest.fixture
def guarded(store: Store) -> Iterator[str]:
    app = create_app(store, CATALOGUE, DirtyQueue(), Metrics(store), ServerSettings(status_token="s3cret-token"))
    with BackgroundServer(app) as server:
        yield server.url


def test_the_explain_page_needs_the_status_token_when_one_is_set(guarded: str, store: Store) -> None:
    named(store)
    asked = httpx.get(f"{guarded}/explain/invoiced:customer:7")
    assert asked.status_code == 401 and 'action="../status"' in asked.text and "Acme Keap" not in asked.text
    bearer = httpx.get(f"{guarded}/explain/invoiced:customer:7", headers={"Authorization": "Bearer s3cret-token"})
    assert bearer.status_code == 200 and "Acme Keap" in bearer.text
    with httpx.Client(base_url=guarded) as browser:
        browser.post("/status", data={"token": "s3cret-token"})
        assert browser.get("/explain/invoiced:customer:7").status_code == 200
