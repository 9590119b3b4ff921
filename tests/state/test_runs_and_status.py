from __future__ import annotations

from datetime import timedelta

from invoiced_keap.state import Store
from tests.state.conftest import ManualClock


def test_a_run_is_started_and_finished_with_its_counts(store: Store, clock: ManualClock) -> None:
    run = store.start_run(["companies", "contacts"], dry_run=True)
    assert (run.flows, run.dry_run, run.finished_at, run.result) == (
        ["companies", "contacts"],
        True,
        None,
        None,
    )
    clock.advance(timedelta(seconds=42))
    finished = store.finish_run(run.id, "ok", {"companies": {"created": 3, "updated": 1}})
    assert finished.finished_at - finished.started_at == timedelta(seconds=42)  # type: ignore[operator]
    second = store.start_run(["products"], dry_run=False)
    assert [r.id for r in store.runs()] == [second.id, run.id]
    assert store.runs()[1].counts == {"companies": {"created": 3, "updated": 1}}


def test_status_counts_summarise_every_list(store: Store) -> None:
    empty = store.status_counts()
    assert (empty.active_links, empty.open_intents, empty.conflicts, empty.last_run) == (
        {},
        0,
        0,
        None,
    )
    link = store.upsert_link("companies", "1", "a")
    store.upsert_link("companies", "2", "b")
    store.close_link(store.upsert_link("products", "3", "c").id, "deleted")
    store.upsert_link("products", "4", "d")
    store.open_intent("contacts", "invoiced", "5", "email:x@example.com")
    store.record_failure("contacts", "invoiced", "6", "create", "bad email")
    store.record_failure("products", "keap", "7", "update", "bad price")
    store.resolve_failures("products", "keap", "7")
    store.add_review_item("companies", "8", ["x", "y"], "two candidates")
    store.record_conflict(
        link, "name", invoiced_value="A", keap_value="B", winner="invoiced", reason="tie"
    )
    run = store.start_run(["companies"], dry_run=False)
    counts = store.status_counts()
    assert counts.active_links == {"companies": 2, "products": 1}
    assert counts.open_failures == {"contacts": 1}
    assert counts.open_review_items == {"companies": 1}
    assert (counts.open_intents, counts.conflicts) == (1, 1)
    assert counts.last_run is not None and counts.last_run.id == run.id
