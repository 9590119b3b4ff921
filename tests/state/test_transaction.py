from __future__ import annotations

import pytest

from invoiced_keap.flows import Shadow
from invoiced_keap.state import Store

FLOW = "products"


class Crash(Exception):
    pass


def test_link_shadows_watermark_and_intent_commit_together(store: Store) -> None:
    store.open_intent(FLOW, "invoiced", "item-1", "sku:item-1")
    with store.transaction() as tx:
        tx.upsert_link(
            FLOW,
            "item-1",
            "55",
            invoiced=Shadow({"name": "Tea"}, 10),
            keap=Shadow({"name": "Tea"}, "t"),
        )
        tx.set_watermark("invoiced.items", "10")
        assert tx.close_intent(FLOW, "invoiced", "item-1")
    assert store.active_link_ids(FLOW) == {"item-1": "55"}
    assert store.get_watermark("invoiced.items") == "10"
    assert store.intents() == []


def test_a_failure_mid_transaction_stores_none_of_it(store: Store) -> None:
    store.set_watermark("invoiced.items", "5")
    intent = store.open_intent(FLOW, "invoiced", "item-1", "sku:item-1")
    with pytest.raises(Crash), store.transaction() as tx:
        tx.upsert_link(FLOW, "item-1", "55", invoiced=Shadow({"name": "Tea"}, 10))
        tx.set_watermark("invoiced.items", "10")
        tx.close_intent(FLOW, "invoiced", "item-1")
        assert tx.find_link(FLOW, "invoiced", "item-1") is not None  # visible inside
        raise Crash
    assert store.find_link(FLOW, "invoiced", "item-1") is None
    assert store.get_watermark("invoiced.items") == "5"
    assert [open_intent.idempotency_key for open_intent in store.intents()] == [
        intent.idempotency_key
    ]
