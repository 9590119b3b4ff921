"""A state store with a known number of everything, for the status page and metrics tests."""

from __future__ import annotations

from invoiced_keap.state import AuditOperation, Store


def fill(store: Store) -> None:
    """companies: 3 links, 1 open failure, 1 conflict, 2 writes; contacts: 1 link, 2 review items; a finished run."""
    run = store.start_run(["companies", "contacts"], dry_run=False)
    links = [store.upsert_link("companies", f"{number}", f"k{number}") for number in range(1, 4)]
    store.upsert_link("contacts", "40", "k40")
    store.record_failure("companies", "keap", "k2", "update", "Region <b>is</b> invalid", field="address")
    store.add_review_item("contacts", "41", ["k41", "k42"], "two contacts share the email")
    store.add_review_item("contacts", "43", ["k43", "k44"], "two contacts share the email")
    store.record_conflict(
        links[0], "name", invoiced_value="Acme", keap_value="ACME Inc", winner="invoiced", reason="newest", run_id=run.id
    )
    store.append_audit("companies", "keap", "k1", AuditOperation.UPDATE, before={"company_name": "A"}, run_id=run.id)
    store.append_audit("companies", "invoiced", "2", AuditOperation.CREATE, after={"name": "B"}, run_id=run.id)
    store.finish_run(run.id, "ok", {"companies": {"updated.keap": 1}})
