"""Deletes made in Keap reach a cron-style `sync` once a reconcile is due (the time of the last one is kept in
the state database), and `sync --full` reconciles at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from invoiced_keap.state.models import Reconcile, utcnow


def seed(invoiced) -> None:
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}]})


def delete_in_keap(connected, keap, invoiced_id: str) -> None:
    with connected.store() as store:
        keap[0].store.delete("companies", store.active_link_ids("companies")[invoiced_id])


def active_companies(connected) -> set[str]:
    with connected.store() as store:
        return set(store.active_link_ids("companies"))


def test_a_cron_style_sync_unlinks_keap_deletes_once_a_reconcile_is_due(connected, invoiced, keap) -> None:
    seed(invoiced)
    assert connected("sync", "--flow", "companies").exit_code == 0  # never reconciled: it reconciles too
    delete_in_keap(connected, keap, "1")

    assert connected("sync", "--flow", "companies").exit_code == 0
    assert active_companies(connected) == {"1", "2"}  # not due: the reconcile ran minutes ago, not a day

    with connected.store() as store, store.engine.begin() as connection:  # a day goes by
        connection.execute(update(Reconcile).values(finished_at=utcnow() - timedelta(days=1, seconds=1)))
    result = connected("sync", "--flow", "companies")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert active_companies(connected) == {"2"}
    assert "unlinked" in result.stdout


def test_sync_full_reconciles_whether_due_or_not(connected, invoiced, keap) -> None:
    seed(invoiced)
    assert connected("sync", "--flow", "companies").exit_code == 0
    delete_in_keap(connected, keap, "2")

    result = connected("sync", "--flow", "companies", "--full")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert active_companies(connected) == {"1"}
