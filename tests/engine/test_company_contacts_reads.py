"""The people of many companies are read side by side (issue 13: one listing after another took minutes at 10,000
companies): `changes.children_of` keeps the order and the calls of one listing after another, runs at most the
connector's in-flight limit of them at once and holds a page or two per listing; over HTTP, a first sync of
`company_contacts` and `relink` read them overlapping, one listing per company (and per further page)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from invoiced_keap.connectors.invoiced import CONTACT, PER_PAGE, Resource
from invoiced_keap.engine.changes import children_of
from invoiced_keap.mapping import Record
from invoiced_keap.state import Store
from tests.engine.conftest import World

NESTED = "GET /customers/{parent_id}/contacts"


class FakeInvoiced:
    """`children` of parent "p" as `sizes[p]` records, each after a random short wait; counts listings running."""

    def __init__(self, sizes: dict[str, int], *, failing: str | None = None, max_in_flight: int = 20) -> None:
        self.sizes = sizes
        self.failing = failing
        self.max_in_flight = max_in_flight
        self.running = self.peak = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.produced: dict[str, int] = {}
        self.random = random.Random(7)

    async def children(self, resource: Resource, parent: str) -> AsyncGenerator[Record, None]:
        self.started.append(parent)
        self.running += 1
        self.peak = max(self.peak, self.running)
        finished = False
        try:
            for n in range(self.sizes[parent]):
                await asyncio.sleep(self.random.random() / 1000)
                if parent == self.failing and n == 1:
                    raise RuntimeError(f"listing of {parent} failed")
                self.produced[parent] = n + 1
                yield {"id": f"{parent}/{n}", "customer": parent}
            finished = True
        finally:
            self.running -= 1
            if not finished and parent != self.failing:
                self.cancelled.append(parent)  # closed (or cancelled) before its end


async def collect(records: AsyncIterator[Record]) -> list[str]:
    return [str(record["id"]) async for record in records]


async def test_children_come_in_the_parents_order_as_one_listing_after_another_would_give_them() -> None:
    sizes = {str(p): (p * 7) % 5 for p in range(1, 60)} | {"30": 2 * PER_PAGE + 3}  # some with none, one of three pages
    fake = FakeInvoiced(sizes, max_in_flight=6)

    read = await collect(children_of(fake, CONTACT, list(sizes)))  # type: ignore[arg-type]

    assert read == [f"{parent}/{n}" for parent, size in sizes.items() for n in range(size)]
    assert fake.started == list(sizes) and 1 < fake.peak <= 6  # overlapping, never more than the limit


async def test_a_listing_waiting_its_turn_holds_a_page_or_two_not_the_parents_whole() -> None:
    sizes = {"1": 3, "2": 10 * PER_PAGE, "3": 10 * PER_PAGE}
    fake = FakeInvoiced(sizes, max_in_flight=3)
    records = children_of(fake, CONTACT, list(sizes))  # type: ignore[arg-type]
    first = await anext(records)  # "1"'s first record; "2" and "3" run ahead meanwhile
    for _ in range(100):
        await asyncio.sleep(0.002)

    assert first["id"] == "1/0"
    # "2" and "3" wait, paused, for their turn, each with a page read (the fake's listing yields a record at a time;
    # the connector's, a page at a time: a page queued and one read)
    assert fake.produced == {"1": 3, "2": PER_PAGE + 1, "3": PER_PAGE + 1} and fake.cancelled == []
    await records.aclose()  # the caller stops: the listings still running are cancelled
    assert sorted(fake.cancelled) == ["2", "3"] and fake.running == 0


async def test_an_error_comes_in_its_listings_turn_and_the_others_are_cancelled() -> None:
    sizes = {str(p): 3 for p in range(1, 30)}
    fake = FakeInvoiced(sizes, failing="5", max_in_flight=4)
    read: list[str] = []

    with pytest.raises(RuntimeError, match="listing of 5 failed"):
        async for record in children_of(fake, CONTACT, list(sizes)):  # type: ignore[arg-type]
            read.append(str(record["id"]))

    assert read == [f"{parent}/{n}" for parent in ("1", "2", "3", "4") for n in range(3)] + ["5/0"]
    assert fake.running == 0 and len(fake.started) <= 4 + 4  # no listing left running, none begun past the window


def seed_companies(world: World, count: int) -> list[dict[str, Any]]:
    """`count` companies with one or two people each (every third has two), each with an email."""
    people = []
    for n in range(count):
        company = world.invoiced.create_customer({"name": f"Company {n}", "type": "company"})
        for m in range(1 + (n % 3 == 0)):
            people.append(world.invoiced.create_contact(company["id"], {"name": f"Person {n} {m}", "email": f"p{n}.{m}@example.com"}))
    return people


COMPANIES = 40


async def test_a_first_sync_and_relink_read_the_companies_people_side_by_side(world: World, tmp_path: Path) -> None:
    people = seed_companies(world, COMPANIES)
    world.invoiced.faults.latency_ms = 20  # each call takes a while, so overlapping ones show
    world.invoiced.reset_peaks()

    first = await world.sync(flows=["companies", "company_contacts"])

    assert first.exit_code == 0, first.flows["company_contacts"].actions
    assert first.flows["company_contacts"].counts["created.keap"] == len(people)
    assert world.invoiced.requests[NESTED] == COMPANIES  # one listing per company linked in the pass
    assert world.invoiced.peaks[NESTED] > 1  # the listings themselves overlapped
    keap_ids = {f"{person['customer']}/{person['id']}": world.link_of("company_contacts", f"{person['customer']}/{person['id']}")
                for person in people}

    world.store = Store(f"sqlite:///{tmp_path}/lost.db")  # the state database is lost: a new, empty one
    world.store.migrate()
    await world.syncer_call("relink", flows=["companies"])
    world.invoiced.requests.clear()
    world.invoiced.reset_peaks()
    relinked = await world.syncer_call("relink", flows=["company_contacts"])

    assert relinked.flows["company_contacts"].counts["linked"] == len(people)
    assert world.store.active_link_ids("company_contacts") == keap_ids
    assert world.invoiced.requests[NESTED] == COMPANIES and world.invoiced.peaks[NESTED] > 1
