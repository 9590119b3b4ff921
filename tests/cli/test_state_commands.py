"""status, links, failures, conflicts, review and explain over a prepared state database."""

from __future__ import annotations

import json

from invoiced_keap.flows import Shadow
from invoiced_keap.state import AuditOperation


def prepare(cli) -> None:
    with cli.store() as store:
        acme = store.upsert_link("companies", "11", "k-101", invoiced=Shadow({"name": "Acme Corporation"}))
        store.upsert_link("contacts", "12", "k-201", invoiced=Shadow({"name": "Jane Cooper"}))
        store.append_audit("companies", "keap", "k-101", AuditOperation.UPDATE,
                           before={"company_name": "Acme"}, after={"company_name": "Acme Corporation"})
        store.record_conflict(acme, "name", invoiced_value="Acme Corp", keap_value="ACME", winner="invoiced",
                              reason="newest: invoiced was updated later")
        store.record_failure("contacts", "invoiced", "13", "create", "Contact must contain at least one email address")
        store.add_review_item("companies", "14", ["k-301", "k-302"], "2 Keap companies named 'Globex'")


def test_status_counts_per_flow_and_exits_2_while_records_wait(cli) -> None:
    assert cli("status").exit_code == 0
    prepare(cli)
    table = cli("status")
    assert table.exit_code == 2
    assert "companies" in table.stdout and "Last run: never" in table.stdout
    data = json.loads(cli("status", "--json").stdout)
    assert data["flows"]["companies"] == {"active_links": 1, "open_failures": 0, "open_review_items": 1}
    assert data["flows"]["contacts"] == {"active_links": 1, "open_failures": 1, "open_review_items": 0}
    assert data["conflicts"] == 1


def test_status_names_open_create_intents_as_creates_to_finish_or_adopt_not_creates_in_progress(cli) -> None:
    """Intents left open by a pass that stopped (no process running): the next pass completes them."""
    with cli.store() as store:
        store.open_intents("companies", "invoiced", [("21", "acme"), ("22", "globex")])
    shown = cli("status")
    assert "Creates to finish or adopt: 2 (the next pass completes them)" in shown.stdout, shown.stdout
    assert "in progress" not in shown.stdout
    assert json.loads(cli("status", "--json").stdout)["open_intents"] == 2


def test_links_filter_by_flow_and_search(cli) -> None:
    prepare(cli)
    everything = json.loads(cli("links", "--json").stdout)
    assert [(link["flow"], link["invoiced_id"], link["keap_id"]) for link in everything] == [
        ("companies", "11", "k-101"), ("contacts", "12", "k-201")]
    assert [link["name"] for link in json.loads(cli("links", "--search", "jane", "--json").stdout)] == ["Jane Cooper"]
    assert json.loads(cli("links", "--flow", "products", "--json").stdout) == []
    assert "Acme Corporation" in cli("links", "--flow", "companies").stdout


def test_failures_and_conflicts_listings(cli) -> None:
    prepare(cli)
    failures = json.loads(cli("failures", "--json").stdout)
    assert [(f["flow"], f["record_id"], f["attempts"]) for f in failures] == [("contacts", "13", 1)]
    assert cli("failures", "--flow", "companies").stdout.strip() == "Failures: none"
    conflicts = json.loads(cli("conflicts", "--json").stdout)
    assert [(c["field"], c["invoiced_value"], c["keap_value"], c["winner"]) for c in conflicts] == [
        ("name", "Acme Corp", "ACME", "invoiced")]


def test_review_pick_records_the_decision_the_next_sync_links(cli) -> None:
    prepare(cli)
    assert "k-301" in cli("review").stdout
    wrong = cli("review", "14", "--pick", "k-999")
    assert wrong.exit_code == 1 and "not a candidate" in wrong.stderr
    picked = cli("review", "14", "--pick", "k-302")
    assert picked.exit_code == 0, picked.stderr
    assert "linked to Keap k-302 by the next sync" in picked.stdout
    with cli.store() as store:
        assert store.review_items() == []
        assert [item.resolution for item in store.review_items(include_resolved=True)] == ["linked k-302"]
        assert store.pick_decisions("companies") == {"14": "k-302"} and store.create_decisions("companies") == {}


def test_dismiss_says_what_it_replaces_stores_no_reason_unless_given_and_undismiss_says_when_there_was_nothing(cli) -> None:
    prepare(cli)
    [failure] = json.loads(cli("failures", "--json").stdout)
    about = f"Failure {failure['id']} (contacts invoiced 13)"

    assert f"{about} dismissed (no reason given)" in cli("failures", "dismiss", str(failure["id"])).stdout
    [row] = json.loads(cli("failures", "--json").stdout)
    assert row["dismissed_at"] is not None and row["dismissed_reason"] is None  # no reason stored, not "yes"
    again = cli("failures", "dismiss", str(failure["id"]), "--reason", "a walk-in")
    assert f"{about} was dismissed already (no reason given); now reason: 'a walk-in'." in again.stdout
    assert json.loads(cli("failures", "--json").stdout)[0]["dismissed_reason"] == "a walk-in"

    assert f"{about} counts and is retried again." in cli("failures", "undismiss", str(failure["id"])).stdout
    second = cli("failures", "undismiss", str(failure["id"]))
    assert second.exit_code == 0 and f"{about} was not dismissed; nothing changed." in second.stdout


def test_review_create_records_the_decision(cli) -> None:
    prepare(cli)
    assert cli("review", "14", "--create").exit_code == 0
    assert cli("review", "14", "--create").exit_code == 1  # no open item any more
    with cli.store() as store:
        assert [item.resolution for item in store.review_items(include_resolved=True)] == ["create"]


def test_explain_gathers_links_writes_conflicts_and_failures(cli) -> None:
    prepare(cli)
    history = json.loads(cli("explain", "11", "--json").stdout)
    assert [(link["invoiced_id"], link["keap_id"]) for link in history["links"]] == [("11", "k-101")]
    assert [(w["record_id"], w["operation"]) for w in history["writes"]] == [("k-101", "update")]
    assert [c["winner"] for c in history["conflicts"]] == ["invoiced"]
    assert json.loads(cli("explain", "13", "--json").stdout)["failures"][0]["attempts"] == 1
    assert "Nothing is known about 404." in cli("explain", "404").stdout
    assert "Nothing is known about garbage:x (read as a bare id: a reference is invoiced:TYPE:ID or keap:TYPE:ID)." in \
        " ".join(cli("explain", "garbage:x").stdout.split())  # break-it: a mistyped reference was not called one
    assert "k-101" in cli("explain", "k-101").stdout


def test_explain_shows_closed_links_with_their_reason(cli) -> None:
    prepare(cli)
    with cli.store() as store:
        store.close_link(store.find_link("companies", "invoiced", "11").id, "type changed: customer 11 moved to contacts")
        store.upsert_link("contacts", "11", "k-205")
    links = json.loads(cli("explain", "11", "--json").stdout)["links"]
    assert [(link["flow"], link["keap_id"], link["status"], link["closed_reason"]) for link in links] == [
        ("companies", "k-101", "closed", "type changed: customer 11 moved to contacts"),
        ("contacts", "k-205", "active", None)]
    by_keap_id = json.loads(cli("explain", "k-101", "--json").stdout)["links"]
    assert [(link["invoiced_id"], link["status"]) for link in by_keap_id] == [("11", "closed")]
