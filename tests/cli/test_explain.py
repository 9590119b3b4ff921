"""explain: a reference names one record (`invoiced:customer:2`, `keap:company:1`, ...); a bare id is narrowed by
--flow and --side, and one that means records of several flows or sides is asked about, never mixed."""

from __future__ import annotations

import json

from invoiced_keap.flows import SIDES


def synced(connected, invoiced) -> dict[str, tuple[str, str]]:
    """A company, a person and an item synced to Keap: flow -> (Invoiced id, Keap id)."""
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company", "email": "a@acme.example"},
                                    {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}],
                      "items": [{"id": "widget-1", "name": "Widget"}]})
    assert connected("sync").exit_code == 0
    with connected.store() as store:
        return {flow: next((link.invoiced_id, link.keap_id) for link in store.iter_links(flow))
                for flow in ("companies", "contacts", "products")}


def explained(connected, *args: str) -> dict:
    shown = connected("explain", *args, "--json")
    assert shown.exit_code == 0, shown.stdout + shown.stderr
    return json.loads(shown.stdout)


def test_each_reference_names_one_record_and_its_twin(connected, invoiced, keap) -> None:
    ids = synced(connected, invoiced)
    for reference, flow in ((f"invoiced:customer:{ids['companies'][0]}", "companies"),
                            (f"keap:company:{ids['companies'][1]}", "companies"),
                            (f"invoiced:customer:{ids['contacts'][0]}", "contacts"),
                            (f"keap:contact:{ids['contacts'][1]}", "contacts"),
                            ("invoiced:item:widget-1", "products"),
                            (f"keap:product:{ids['products'][1]}", "products")):
        history = explained(connected, reference)
        assert history["record"] == reference
        assert [(link["flow"], link["invoiced_id"], link["keap_id"]) for link in history["links"]] == [(flow, *ids[flow])]
        pair = dict(zip(SIDES, ids[flow]))
        assert history["writes"] and all((w["flow"], w["record_id"]) == (flow, pair[w["side"]]) for w in history["writes"])
    assert "Jane Cooper" in connected("explain", f"keap:contact:{ids['contacts'][1]}").stdout


def test_a_bare_id_of_several_records_is_asked_about_and_narrowed_by_flow_and_side(connected, invoiced, keap) -> None:
    ids = synced(connected, invoiced)
    shared = ids["companies"][0]
    assert shared == ids["companies"][1]  # both emulators number from 1: customer 1 and Keap company 1
    asked = connected("explain", shared)
    assert asked.exit_code == 1
    assert f"invoiced:customer:{shared}" in asked.stdout and f"keap:company:{shared}" in asked.stdout
    assert len(asked.stderr.strip().splitlines()) == 1 and "--flow/--side" in asked.stderr
    as_json = connected("explain", shared, "--json")
    assert as_json.exit_code == 1
    assert set(json.loads(as_json.stdout)["matches"]) >= {f"invoiced:customer:{shared}", f"keap:company:{shared}"}
    assert connected("explain", shared, "--flow", "companies").exit_code == 1  # both sides of the flow: still asked
    by_side = explained(connected, shared, "--flow", "companies", "--side", "keap")
    assert by_side["record"] == f"keap:company:{shared}"
    assert [link["invoiced_id"] for link in by_side["links"]] == [ids["companies"][0]]
    assert explained(connected, "widget-1")["record"] == "invoiced:item:widget-1"  # one record: no question


def test_a_wrong_reference_or_an_unknown_record_exits_1(connected, invoiced, keap) -> None:
    ids = synced(connected, invoiced)
    wrong_type = connected("explain", "keap:customer:1")
    assert wrong_type.exit_code == 1 and "company, contact, product" in wrong_type.stderr
    both = connected("explain", f"keap:company:{ids['companies'][1]}", "--side", "keap")
    assert both.exit_code == 1 and "narrows a bare id" in both.stderr
    assert connected("explain", "1", "--side", "neither").exit_code == 1
    unknown = connected("explain", "invoiced:customer:999")
    assert unknown.exit_code == 1 and "Nothing is known about invoiced:customer:999" in unknown.stdout
    assert connected("explain", f"keap:product:{ids['companies'][1]}0").exit_code == 1
