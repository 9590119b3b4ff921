from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from invoiced_keap.flows import Shadow
from invoiced_keap.state import NewLink, Store

FLOW = "contacts"
MANY = 100_000


def test_add_links_inserts_pairs_with_their_shadows(store: Store) -> None:
    ids = store.add_links(
        FLOW,
        [
            NewLink(
                "1",
                "a",
                invoiced=Shadow({"name": "Åsa Öberg"}, 5),
                keap=Shadow({"name": "Åsa Öberg"}, "t"),
            ),
            NewLink("2", "b"),
        ],
    )
    found = store.find_links(FLOW, "invoiced", ["1", "2"])
    assert [found["1"].id, found["2"].id] == ids
    assert found["1"].shadow("keap").field_values == {"name": "Åsa Öberg"}  # type: ignore[union-attr]
    assert found["2"].shadows == []
    assert store.add_links(FLOW, []) == []


def test_add_links_refuses_an_already_linked_record_and_adds_nothing(store: Store) -> None:
    store.upsert_link(FLOW, "1", "a")
    with pytest.raises(IntegrityError):
        store.add_links(FLOW, [NewLink("2", "b"), NewLink("3", "a")])
    assert store.active_link_ids(FLOW) == {"1": "a"}


def test_a_flow_of_100_000_links_is_planned_from_two_columns(store: Store) -> None:
    for start in range(0, MANY, 20_000):
        store.add_links(FLOW, [NewLink(str(n), f"k{n}") for n in range(start, start + 20_000)])
    pairs = store.active_link_ids(FLOW)
    assert len(pairs) == MANY and pairs["99999"] == "k99999"
    wanted = [f"k{n}" for n in range(0, MANY, 97)]
    assert len(store.find_links(FLOW, "keap", wanted)) == len(wanted)
