"""The hostile corpus through a full sync: no crash, and every record ends as its `Case` says (see `corpus`)."""

from __future__ import annotations

from typing import Any

import pytest

from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.flows import CATALOGUE, flow_of
from tests.engine.conftest import World
from tests.hostile.corpus import CASES, Case, Failed, RejectedByInvoiced, Synced

KEAP_COLLECTION = {"companies": "companies", "contacts": "contacts", "products": "products"}


def test_the_corpus_is_big_enough_and_labels_are_unique() -> None:
    synced_or_failed = [case for case in CASES if not isinstance(case.expected, RejectedByInvoiced)]
    assert len(synced_or_failed) >= 50
    assert len({case.label for case in CASES}) == len(CASES)


def create(world: World, case: Case) -> tuple[str, str] | str:
    """(flow, Invoiced id) of the created record, or Invoiced's own message when it refuses the body."""
    try:
        if case.kind == "item":
            return "products", str(world.invoiced.create_item(case.body)["id"])
        customer = world.invoiced.create_customer(case.body)
    except ApiError as refusal:
        return refusal.message
    return flow_of(CUSTOMER, customer), str(customer["id"])


def outcome(world: World, flow: str, invoiced_id: str) -> Any:
    """What became of one record: its Keap twin's rule values, or its failure messages."""
    link = world.store.find_link(flow, "invoiced", invoiced_id)
    messages = " | ".join(f.message for f in world.store.failures(flow) if f.side == "invoiced" and f.record_id == invoiced_id)
    if link is not None:
        record = world.keap_record(KEAP_COLLECTION[flow], link.keap_id)
        lossy = tuple(sorted(note.field for note in world.store.lossy_carries(link_ids=[link.id])))
        return Synced({rule.name: rule.value("keap", record) for rule in CATALOGUE[flow].rules}, messages or None, lossy)
    return Failed(messages) if messages else "neither linked nor in the failures list"


def matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Synced):
        return (isinstance(actual, Synced) and all(actual.keap.get(rule) == value for rule, value in expected.keap.items())
                and (actual.failure is None if expected.failure is None else expected.failure in (actual.failure or ""))
                and actual.lossy == tuple(sorted(expected.lossy)))
    return type(actual) is type(expected) and expected.message in actual.message


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
async def test_every_hostile_record_ends_as_documented(world: World) -> None:
    created = {case.label: create(world, case) for case in CASES}

    report = await world.sync()
    again = await world.sync()

    assert report.error is None and again.error is None
    mismatches = []
    for case in CASES:
        made = created[case.label]
        actual: Any = RejectedByInvoiced(made) if isinstance(made, str) else outcome(world, *made)
        if not matches(case.expected, actual):
            mismatches.append(f"{case.label}: expected {case.expected}, got {actual}")
    assert mismatches == [], "\n".join(mismatches)
    writes = {f"{flow}.{key}": n for flow, counts in again.counts().items() for key, n in counts.items()
              if key.startswith(("updated.", "created."))}
    assert writes == {}, "the second pass wrote again"


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
async def test_a_refused_id_stamp_stays_in_the_failures_list(world: World) -> None:
    full = world.invoiced.create_customer({"name": "Full Metadata", "metadata": {f"key{n}": f"value {n}" for n in range(10)}})

    await world.sync()
    await world.sync()

    assert matches(Synced({"name": "Full Metadata"}, failure="metadata would have 11 keys"), outcome(world, "companies", str(full["id"])))
