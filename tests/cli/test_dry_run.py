"""sync --dry-run: its exit code is the following sync's, it writes no state (no database, no lock files), and
printed lines cut long values (--json keeps them whole); explain of an unknown record exits 1."""

from __future__ import annotations

import json

from invoiced_keap.emulators.sample import INVOICED_SAMPLE, KEAP_SAMPLE

LONG_NOTE = "N" * 10_000


def test_a_dry_run_exits_as_the_sync_after_it_when_it_plans_a_refused_create(connected, invoiced, keap) -> None:
    invoiced[0].seed(INVOICED_SAMPLE)  # holds a person with no email, phone or address: Keap refuses it
    keap[0].seed(KEAP_SAMPLE)
    planned = connected("sync", "--dry-run")
    assert "refuse" in planned.stdout and "Open failures: 1" in planned.stdout, planned.stdout
    assert planned.exit_code == 2
    done = connected("sync")
    assert done.exit_code == 2 and "Open failures: 1" in done.stdout


def test_a_dry_run_exits_2_when_it_plans_a_review_item(connected, invoiced, keap) -> None:
    invoiced[0].seed({"customers": [{"name": "Initech", "type": "company"}]})
    keap[0].seed({"companies": [{"company_name": "Initech"}, {"company_name": "INITECH"}]})
    planned = connected("sync", "--dry-run", "--flow", "companies")
    assert "review" in planned.stdout and "Waiting for review: 1" in planned.stdout, planned.stdout
    assert planned.exit_code == 2
    assert connected("sync", "--flow", "companies").exit_code == 2
    assert connected("sync", "--dry-run", "--flow", "companies").exit_code == 2  # the item waits: still 2


def test_a_dry_run_without_a_state_database_creates_none_and_takes_no_lock(connected, invoiced, keap) -> None:
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company", "email": "a@acme.example"}]})
    before = sorted(path.name for path in connected.directory.iterdir())
    planned = connected("sync", "--dry-run")
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    assert "companies create keap:(new)" in " ".join(planned.stdout.split())
    assert '"company_name": "Acme"' in planned.stdout  # the plan of a first sync
    stamp = next(line for line in planned.stdout.splitlines() if " stamp " in line)
    assert '{"keap_company_id": "(new)"}' in stamp and "null" not in stamp  # the id of the company to be created
    assert sorted(path.name for path in connected.directory.iterdir()) == before  # no state.db, no *.lock


def test_a_first_dry_run_says_the_people_of_companies_it_would_link_are_not_in_its_plan(connected, invoiced, keap) -> None:
    acme = invoiced[0].create_customer({"name": "Acme", "type": "company"})
    invoiced[0].create_contact(acme["id"], {"name": "Ann Acme", "email": "ann@acme.example"})
    planned = connected("sync", "--dry-run")
    text = " ".join(planned.stdout.split())
    assert ("company_contacts: the records under the 1 companies this pass would link are not in this plan: they are "
            "read once their parent is linked") in text, planned.stdout
    assert connected("sync").exit_code == 0
    assert "not in this plan" not in connected("sync", "--dry-run").stdout  # linked: its people are planned


def test_long_values_are_cut_in_the_plan_and_explain_and_whole_in_json(connected, invoiced, keap) -> None:
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company", "email": "a@acme.example", "notes": LONG_NOTE}]})
    (connected.directory / "invoiced-keap.toml").write_text(
        '[flow.companies]\nadd = [{ name = "notes", invoiced = "notes", keap = "notes" }]\n', encoding="utf-8")
    planned = connected("sync", "--dry-run", "--flow", "companies")
    assert LONG_NOTE not in planned.stdout and "(10,000 characters)" in planned.stdout
    assert max(len(line) for line in planned.stdout.splitlines()) < 1_000
    assert connected("sync", "--flow", "companies").exit_code == 0
    customer_id = str(next(iter(invoiced[0].customers)))
    shown = connected("explain", f"invoiced:customer:{customer_id}")
    assert shown.exit_code == 0 and "…" in shown.stdout
    assert shown.stdout.count("N") < 1_000  # each place the note shows (shadows, writes) holds 120 characters of it
    whole = json.loads(connected("explain", f"invoiced:customer:{customer_id}", "--json").stdout)
    assert whole["links"][0]["shadows"]["invoiced"]["notes"] == LONG_NOTE


def test_explain_of_an_unknown_record_exits_1(cli) -> None:
    unknown = cli("explain", "nonexistent-id")
    assert unknown.exit_code == 1 and "Nothing is known about nonexistent-id" in unknown.stdout
    assert cli("explain", "nonexistent-id", "--json").exit_code == 1
