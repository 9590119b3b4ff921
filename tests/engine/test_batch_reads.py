"""`BatchReads`: the passes of one webhook batch on one Keap object share one read by id, and never serve a record
one of them may have written since (issue 13). Over HTTP against both emulators, on each state database."""

from __future__ import annotations

from collections import Counter

from invoiced_keap.engine.batch_reads import BatchReads
from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import World


def keap_reads(world: World) -> Counter[str]:
    return Counter({key: n for key, n in world.keap.requests.items() if key.startswith("GET ")})


async def test_a_record_one_flow_deleted_in_the_batch_is_read_again_for_the_other_not_served_stale(world: World) -> None:
    """Jane is a person customer (flow contacts) whose Keap contact a Keap user attached to the company Acme. Her
    customer is deleted in Invoiced and a hook names her contact in the same batch: the contacts pass deletes the
    twin (deletes = propagate). The company_contacts pass, which makes Invoiced contacts of Keap contacts of linked
    companies, must not get the contact as read before that delete (it would make a contact of a deleted record):
    linked in contacts at the read and not now, it is read again and found gone."""
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company"},
                                       {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}]})
    await world.sync()
    await world.sync()
    acme, jane = world.link_of("companies", 1), world.link_of("contacts", 2)
    world.keap_edit("contacts", jane, {"company": {"id": acme}})
    world.invoiced.delete_customer(2)
    options = SyncOptions(per_flow={"contacts": FlowOptions(deletes="propagate"),
                                    "company_contacts": FlowOptions(create_in_invoiced=True)})
    world.reset_stats()
    reads = BatchReads(options.flows, {"contacts": [jane], "company_contacts": [jane]})

    people = await world.syncer_call("sync_ids", options, flow="contacts", keap_ids=[jane], removed_invoiced=["2"],
                                     keap_reads=reads)
    assert people.exit_code == 0, people.error
    assert people.flows["contacts"].counts["deleted.keap"] == 1
    assert world.keap.store.get("contacts", jane) is None
    their_people = await world.syncer_call("sync_ids", options, flow="company_contacts", keap_ids=[jane], keap_reads=reads)

    assert their_people.exit_code == 0, their_people.error
    assert +their_people.flows["company_contacts"].counts == Counter()
    assert world.invoiced.customer_contacts(1) == []
    assert world.store.active_link_ids("company_contacts") == {}
    assert keap_reads(world) == Counter({"GET /crm/rest/v2/contacts": 2})  # the batch's read, then hers again


async def test_ids_linked_in_the_other_flow_are_not_served_and_cost_nothing_more(world: World) -> None:
    """A batch naming a person's contact and a company person's contact: one listing serves both passes, each with
    its own record only (the other flow's is linked there, so this pass would leave it alone anyway)."""
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company"},
                                       {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}]})
    world.invoiced.create_contact(1, {"name": "Ann Lee", "email": "ann@acme.example"})
    await world.sync()
    await world.sync()
    jane = world.link_of("contacts", 2)
    [ann] = world.store.active_link_ids("company_contacts").values()
    world.keap_edit("contacts", jane, {"given_name": "Janet"})
    world.keap_edit("contacts", ann, {"job_title": "CFO"})
    options = SyncOptions()
    world.reset_stats()
    reads = BatchReads(options.flows, {"contacts": [jane, ann], "company_contacts": [jane, ann]})

    for flow in ("contacts", "company_contacts"):
        report = await world.syncer_call("sync_ids", options, flow=flow, keap_ids=[jane, ann], keap_reads=reads)
        assert report.exit_code == 0, report.error
        assert report.flows[flow].counts["updated.invoiced"] == 1

    assert world.invoiced.customer(2)["name"] == "Janet Cooper"
    assert [contact["title"] for contact in world.invoiced.customer_contacts(1)] == ["CFO"]
    assert keap_reads(world)["GET /crm/rest/v2/contacts"] == 1
