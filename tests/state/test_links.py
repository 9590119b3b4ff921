from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from invoiced_keap.flows import Shadow
from invoiced_keap.state import LinkConflict, LinkStatus, NewLink, Store
from invoiced_keap.state.models import Link
from tests.state.conftest import ManualClock

FLOW = "companies"


def test_upsert_link_stores_both_shadows_with_timestamps_as_given(store: Store) -> None:
    created = store.upsert_link(
        FLOW,
        "101",
        "7",
        invoiced=Shadow({"name": "Acme"}, 1_700_000_000),
        keap=Shadow({"name": "ACME"}, "2025-01-01T12:00:00.123Z"),
    )
    found = store.find_link(FLOW, "keap", "7")
    assert found is not None and found.id == created.id
    assert (found.invoiced_id, found.status) == ("101", LinkStatus.ACTIVE)
    invoiced, keap = found.shadow("invoiced"), found.shadow("keap")
    assert invoiced is not None and keap is not None
    assert (invoiced.field_values, invoiced.source_updated) == ({"name": "Acme"}, 1_700_000_000)
    assert (keap.field_values, keap.source_updated) == (
        {"name": "ACME"},
        "2025-01-01T12:00:00.123Z",
    )


def test_upsert_link_refreshes_one_side_and_keeps_the_other(
    store: Store, clock: ManualClock
) -> None:
    store.upsert_link(
        FLOW, "101", "7", invoiced=Shadow({"name": "A"}, 1), keap=Shadow({"name": "A"}, "t1")
    )
    clock.advance(timedelta(minutes=1))
    store.upsert_link(FLOW, "101", "7", keap=Shadow({"name": "B"}, "t2"))
    link = store.find_link(FLOW, "invoiced", "101")
    assert link is not None and link.updated_at == clock.now and link.created_at < clock.now
    assert link.shadow("invoiced").field_values == {"name": "A"}  # type: ignore[union-attr]
    assert link.shadow("keap").source_updated == "t2"  # type: ignore[union-attr]


def test_find_link_ignores_other_flows_and_unknown_ids(store: Store) -> None:
    store.upsert_link(FLOW, "101", "7")
    assert store.find_link("contacts", "invoiced", "101") is None
    assert store.find_link(FLOW, "invoiced", "999") is None
    link = store.find_link(FLOW, "invoiced", "101")
    assert link is not None and link.shadows == []


def test_an_active_link_is_unique_per_record_on_each_side(store: Store) -> None:
    store.upsert_link(FLOW, "101", "7")
    with pytest.raises(LinkConflict, match="Invoiced 101 is linked to Keap 7"):
        store.upsert_link(FLOW, "101", "8")
    with pytest.raises(LinkConflict, match="Keap 7 is linked to Invoiced 101"):
        store.upsert_link(FLOW, "102", "7")
    store.upsert_link("products", "101", "7")  # other flows are independent
    assert store.active_link_ids(FLOW) == {"101": "7"}


def test_the_database_itself_refuses_a_second_active_link(store: Store) -> None:
    """The partial unique indexes guard against races the API's own check cannot see."""
    store.upsert_link(FLOW, "101", "7")
    now = store.clock()
    row = {"flow": FLOW, "status": "active", "created_at": now, "updated_at": now}
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(Link), [{**row, "invoiced_id": "102", "keap_id": "7"}])
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(insert(Link), [{**row, "invoiced_id": "101", "keap_id": "8"}])
    with store.engine.begin() as connection:  # closed links don't count
        connection.execute(
            insert(Link), [{**row, "invoiced_id": "101", "keap_id": "8", "status": "closed"}]
        )


def test_closing_a_link_frees_both_records_and_keeps_the_history(store: Store) -> None:
    old = store.upsert_link(FLOW, "101", "7", invoiced=Shadow({"name": "A"}))
    store.close_link(old.id, "type changed to person")
    assert store.find_link(FLOW, "invoiced", "101") is None
    new = store.upsert_link(FLOW, "101", "8")
    assert new.id != old.id
    store.upsert_link(FLOW, "102", "7")
    assert store.active_link_ids(FLOW) == {"101": "8", "102": "7"}
    with pytest.raises(LookupError):
        store.close_link(old.id, "again")


def test_links_of_a_record_include_closed_ones_of_every_flow(store: Store) -> None:
    old = store.upsert_link(FLOW, "101", "7")
    store.close_link(old.id, "type changed: customer 101 moved to contacts")
    store.upsert_link("contacts", "101", "8", keap=Shadow({"name": "Ann"}))
    store.upsert_link(FLOW, "102", "101")  # a Keap id equal to the Invoiced id asked about
    store.upsert_link(FLOW, "103", "9")
    found = store.links_of_record("101")
    assert [(link.flow, link.invoiced_id, link.keap_id, link.status) for link in found] == [
        (FLOW, "101", "7", "closed"), ("contacts", "101", "8", "active"), (FLOW, "102", "101", "active")]
    assert found[0].closed_reason.startswith("type changed") and found[1].shadow("keap").field_values == {"name": "Ann"}
    assert store.links_of_record("nope") == []


def test_find_links_in_bulk_spans_several_in_clauses(store: Store) -> None:
    store.add_links(FLOW, [NewLink(f"i{n}", f"k{n}", keap=Shadow({"n": n})) for n in range(1200)])
    wanted = [f"k{number}" for number in range(0, 1200, 2)] + ["unknown", "k0"]
    found = store.find_links(FLOW, "keap", wanted)
    assert set(found) == {f"k{number}" for number in range(0, 1200, 2)}
    assert found["k998"].invoiced_id == "i998"
    assert found["k998"].shadow("keap").field_values == {"n": 998}  # type: ignore[union-attr]


def test_iter_links_pages_through_every_active_link_in_order(store: Store) -> None:
    with store.transaction() as tx:
        links = [tx.upsert_link(FLOW, f"i{number}", f"k{number}") for number in range(25)]
    store.close_link(links[3].id, "deleted")
    streamed = list(store.iter_links(FLOW, batch_size=10))
    assert [link.invoiced_id for link in streamed] == [f"i{n}" for n in range(25) if n != 3]
    assert list(store.iter_links("products")) == []


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.dictionaries(
        st.text(min_size=1), st.one_of(st.none(), st.text(), st.lists(st.text()))
    )
)
def test_shadow_values_round_trip_any_unicode(store: Store, values: dict[str, object]) -> None:
    link = store.upsert_link(FLOW, "101", "7", invoiced=Shadow(values, "Zoë ✓"))
    stored = store.find_link(FLOW, "invoiced", "101")
    assert stored is not None and stored.id == link.id
    shadow = stored.shadow("invoiced")
    assert shadow is not None and shadow.field_values == values and shadow.source_updated == "Zoë ✓"
