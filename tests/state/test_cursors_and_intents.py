from __future__ import annotations

from invoiced_keap.state import Store


def test_watermarks_and_event_cursors_are_set_read_and_listed(store: Store) -> None:
    assert store.get_watermark("invoiced.customers") is None
    store.set_watermark("invoiced.customers", "1700000000")
    store.set_watermark("invoiced.customers", "1700000100")
    store.set_watermark("invoiced.events", "evt_123")
    assert store.get_watermark("invoiced.customers") == "1700000100"
    assert store.watermarks() == {"invoiced.customers": "1700000100", "invoiced.events": "evt_123"}


def test_an_open_intent_is_reused_so_the_idempotency_key_survives_a_crash(store: Store) -> None:
    first = store.open_intent("companies", "invoiced", "101", "name:acme")
    again = store.open_intent("companies", "invoiced", "101", "name:acme")
    other = store.open_intent("companies", "keap", "101", None)
    assert again.id == first.id and again.idempotency_key == first.idempotency_key
    assert other.idempotency_key != first.idempotency_key
    assert (first.match_key, first.source_side, first.created_at) == (
        "name:acme",
        "invoiced",
        store.clock(),
    )
    assert [intent.id for intent in store.intents("companies")] == [first.id, other.id]
    assert store.intents("products") == []


def test_closing_an_intent_removes_it_once(store: Store) -> None:
    store.open_intent("companies", "invoiced", "101", "name:acme")
    assert store.close_intent("companies", "invoiced", "101")
    assert not store.close_intent("companies", "invoiced", "101")
    assert store.intents() == []
