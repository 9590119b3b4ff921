"""The chaos checker finds each kind of difference it promises to, and names the records involved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.chaos.checker import ConflictRow, LinkRow, Snapshot, WriteRow, check
from tests.chaos.world import Edit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USER_MADE: dict[str, set[str]] = {"companies": set(), "contacts": set(), "products": set()}


def converged() -> Snapshot:
    """One company linked to its Keap twin, both named "Acme"."""
    return Snapshot(
        customers={"1": {"id": 1, "name": "Acme", "type": "company"}},
        items={},
        keap={"companies": {"7": {"id": "7", "company_name": "Acme"}}, "contacts": {}, "products": {}},
        links=[LinkRow("companies", "1", "7", True, None)],
        failures={}, review=set(), conflicts=[], writes=[], intents=0,
    )


def renamed_in_keap(at: datetime = T0) -> Edit:
    return Edit(0, "keap", "companies", "7", "name", "Acme Inc", at)


def test_a_converged_world_has_no_problems() -> None:
    assert check(converged(), [Edit(0, "invoiced", "companies", "1", "name", "Acme", T0)], USER_MADE).problems == []


def test_a_lost_edit_is_reported_unless_a_conflict_or_a_race_explains_it() -> None:
    lost = check(converged(), [renamed_in_keap()], USER_MADE)
    assert lost.problems == ["companies: pair invoiced 1 / keap 7: last edit #0 of name on keap ('Acme Inc') was lost: keap now has "
                             "'Acme', and no conflict went to the other side; edits: #0 keap 'Acme Inc'"]
    conflict = replace(converged(), conflicts=[ConflictRow("companies", "1", "7", "name", "invoiced")])
    assert check(conflict, [renamed_in_keap()], USER_MADE).problems == []
    race = replace(converged(), writes=[WriteRow("companies", "keap", "7", frozenset({"company_name"}), T0 - timedelta(seconds=1),
                                                 T0 + timedelta(seconds=1))])
    raced = check(race, [renamed_in_keap()], USER_MADE)
    assert raced.problems == [] and raced.raced == [renamed_in_keap()]
    assert check(race, [renamed_in_keap(T0 + timedelta(seconds=2))], USER_MADE).problems != []  # written before the edit


def test_drift_duplicates_unlinked_records_and_open_intents_are_reported() -> None:
    world = converged()
    world.keap["companies"]["7"]["company_name"] = "Acme Corp"
    world.keap["companies"]["8"] = {"id": "8", "company_name": "Acme"}
    world.customers["2"] = {"id": 2, "name": "Globex", "type": "company"}
    problems = check(replace(world, intents=1), [], USER_MADE).problems
    assert problems == [
        "1 create intents still open",
        "companies: invoiced 2 ('Globex') has no link and no failure, review item or deleted twin explains it",
        "companies: keap 8 ('Acme') was made by the sync but is in no link (a duplicate)",
        "companies: pair invoiced 1 / keap 7: name differs: invoiced 'Acme', keap 'Acme Corp'; edits: none",
    ]
    explained = replace(world, failures={("companies", "invoiced", "2"): "keap: refused", ("companies", "invoiced", "1"): "keap: refused"})
    assert check(explained, [], {**USER_MADE, "companies": {"8"}}).problems == []


def test_twice_linked_records_and_links_to_gone_records_are_reported() -> None:
    world = replace(converged(), links=[LinkRow("companies", "1", "7", True, None), LinkRow("companies", "1", "9", True, None)])
    assert check(world, [], USER_MADE).problems == [
        "companies: invoiced 1 is in 2 active links",
        "companies: pair invoiced 1 / keap 9: active link to a record gone from keap",
    ]


def test_edits_of_an_earlier_twin_count_until_the_pass_that_moved_the_customer_started_unless_the_twin_was_deleted() -> None:
    moved_from = LinkRow("contacts", "1", "3", False, "type changed: customer 1 moved to companies", closed_at=T0)
    world = replace(converged(), links=[*converged().links, moved_from])
    contact_edit = [Edit(0, "keap", "contacts", "3", "name", "Acme Inc", T0 - timedelta(seconds=1))]
    assert [p.split(":")[1] for p in check(world, contact_edit, USER_MADE).problems] == [" pair invoiced 1 / keap 7"]
    late = [replace(contact_edit[0], at=T0 + timedelta(seconds=1))]
    assert check(world, late, USER_MADE).problems == []
    deleted = replace(world, links=[*converged().links, replace(moved_from, reason="not found in keap (reconcile)")])
    assert check(deleted, contact_edit, USER_MADE).problems == []


def test_a_later_edit_of_a_deleted_twin_may_stand_as_the_value_but_is_not_asked_for() -> None:
    deleted_twin = LinkRow("companies", "1", "5", False, "not found in keap (reconcile)", closed_at=T0)
    world = replace(converged(), links=[*converged().links, deleted_twin])
    invoiced_edit = Edit(0, "invoiced", "companies", "1", "name", "Acme Co", T0)
    twin_edit = Edit(1, "keap", "companies", "5", "name", "Acme", T0 + timedelta(seconds=1))
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems == []  # synced before the delete
    world.customers["1"]["name"] = world.keap["companies"]["7"]["company_name"] = "Acme Co"
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems == []  # made after the last read
    world.customers["1"]["name"] = world.keap["companies"]["7"]["company_name"] = "Acme Ltd"
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems != []
