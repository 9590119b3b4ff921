from __future__ import annotations

import pytest

from invoiced_keap.state import AuditOperation, Store


def test_review_items_are_added_refreshed_listed_and_resolved(store: Store) -> None:
    first = store.add_review_item("companies", "101", ["7", "8"], "2 Keap companies named Acme")
    again = store.add_review_item(
        "companies", "101", ["7", "8", "9"], "3 Keap companies named Acme"
    )
    store.add_review_item("contacts", "201", ["3", "4"], "2 contacts share the email")
    assert again.id == first.id and again.candidate_ids == ["7", "8", "9"]
    assert [item.invoiced_id for item in store.review_items()] == ["101", "201"]
    resolved = store.resolve_review_item("companies", "101", "linked 8")
    assert (resolved.resolution, resolved.resolved_at) == ("linked 8", store.clock())
    assert [item.invoiced_id for item in store.review_items()] == ["201"]
    assert [item.resolution for item in store.review_items("companies", include_resolved=True)] == [
        "linked 8"
    ]
    with pytest.raises(LookupError):
        store.resolve_review_item("companies", "101", "create")


def test_conflicts_keep_both_values_and_the_winner(store: Store) -> None:
    link = store.upsert_link("companies", "101", "7")
    run = store.start_run(["companies"], dry_run=False)
    store.record_conflict(
        link,
        "name",
        invoiced_value={"name": "Acme Ltd"},
        keap_value={"company_name": "Acme Ltée"},
        winner="keap",
        reason="newest: Keap updated later",
        run_id=run.id,
    )
    store.record_conflict(
        link,
        "phone",
        invoiced_value="1",
        keap_value="2",
        winner="invoiced",
        reason="policy invoiced",
    )
    newest, oldest = store.conflicts()
    assert (newest.field_group, oldest.field_group) == ("phone", "name")
    assert oldest.keap_value == {"company_name": "Acme Ltée"} and oldest.winner == "keap"
    assert (oldest.flow, oldest.link_id, oldest.run_id) == ("companies", link.id, run.id)
    assert store.conflicts("contacts") == []
    assert len(store.conflicts(link_id=link.id, limit=1)) == 1


def test_audit_entries_are_filtered_by_record_side_flow_and_run(store: Store) -> None:
    run = store.start_run(["companies", "products"], dry_run=False)
    store.append_audit(
        "companies",
        "keap",
        "7",
        AuditOperation.CREATE,
        after={"company_name": "Acme"},
        run_id=run.id,
    )
    store.append_audit(
        "companies",
        "invoiced",
        "101",
        AuditOperation.LINK,
        after={"keap_id": "7"},
        run_id=run.id,
    )
    store.append_audit(
        "companies",
        "keap",
        "7",
        AuditOperation.UPDATE,
        before={"company_name": "Acme"},
        after={"company_name": "Acmé"},
    )
    store.append_audit(
        "products", "invoiced", "7", AuditOperation.DELETE, before={"name": "Tea"}
    )
    history = store.audit_entries(record_id="7", side="keap")
    assert [entry.operation for entry in history] == ["update", "create"]
    assert history[0].before == {"company_name": "Acme"} and history[0].after == {
        "company_name": "Acmé"
    }
    assert len(store.audit_entries(record_id="7")) == 3
    assert [entry.record_id for entry in store.audit_entries(run_id=run.id)] == ["101", "7"]
    assert [entry.operation for entry in store.audit_entries(flow="products")] == ["delete"]
    assert len(store.audit_entries(limit=2)) == 2
    with pytest.raises(ValueError):
        store.append_audit("products", "keap", "1", "rename")  # type: ignore[arg-type]
