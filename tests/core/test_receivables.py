"""The pure part of what customers owe (`engine.receivables`): figures from invoices, Keap values, what to write."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap.connectors.invoiced import Event, removed_customer_id
from invoiced_keap.engine.receivables import (
    Change, Figures, ReceivablesOptions, SharedLabel, Wanted, Written, after, decide, drift, keap_values,
    merged_custom_fields, named_by,
    owed, payment_date,
)

NOW = int(datetime(2025, 6, 4, 12, tzinfo=UTC).timestamp())
DAY = 86_400
OPTIONS = ReceivablesOptions()

cents = st.decimals(min_value=0, max_value=10_000, places=2).map(float)
invoices = st.lists(st.one_of(  # amounts in each currency's smallest unit, as Invoiced keeps them
    st.fixed_dictionaries({"currency": st.sampled_from(["usd", "eur"]), "balance": cents}),
    st.fixed_dictionaries({"currency": st.just("jpy"), "balance": st.integers(min_value=0, max_value=10**7)}),
).flatmap(lambda money: st.fixed_dictionaries({
    "currency": st.just(money["currency"]), "balance": st.just(money["balance"]),
    "status": st.sampled_from(["not_sent", "sent", "past_due", "paid", "draft"]),
    "due_date": st.integers(min_value=NOW - 90 * DAY, max_value=NOW + 90 * DAY),
    "date": st.integers(min_value=NOW - 120 * DAY, max_value=NOW + 5 * DAY),
    "draft": st.booleans(), "paid": st.booleans(), "closed": st.booleans(),
})), max_size=8)
payment_dates = st.none() | st.dates().map(lambda day: day.isoformat())


def figures_of(records: list[dict], last_payment: str | None = None) -> Figures:
    return owed(records, NOW, last_payment)


@given(invoices, payment_dates)
def test_written_figures_need_no_second_write(records: list[dict], last_payment: str | None) -> None:
    wanted = keap_values(figures_of(records, last_payment), OPTIONS, "USD")
    change = decide(wanted, None)
    written = after(None, change, values_written=True, tag_written=True) if change else None
    assert decide(wanted, written) is None


@given(invoices, invoices, payment_dates)
def test_a_change_brings_any_record_to_what_is_wanted(first: list[dict], second: list[dict], paid: str | None) -> None:
    before = keap_values(figures_of(first), OPTIONS, "USD")
    held = after(None, decide(before, None) or Change({}, None), values_written=True, tag_written=True)
    wanted = keap_values(figures_of(second, paid), OPTIONS, "USD")
    change = decide(wanted, held)
    now = after(held, change, values_written=True, tag_written=True) if change else held
    assert decide(wanted, now) is None
    assert {label: value for label, value in now.values.items() if value} == \
           {label: value for label, value in wanted.values.items() if value}


@given(invoices)
def test_figures_count_only_open_invoices_in_any_order_and_keep_when_the_next_one_opens(records: list[dict]) -> None:
    unsettled = [r for r in records if not (r["draft"] or r["paid"] or r["closed"])]
    open_ones = [r for r in unsettled if r["date"] <= NOW]
    figures = figures_of(records)
    assert figures == figures_of(list(reversed(records))) == Figures.from_json(figures.to_json())
    assert replace(figures, opens_at=None) == figures_of(open_ones)
    ahead = [r["date"] for r in unsettled if r["date"] > NOW]
    assert figures.opens() == (datetime.fromtimestamp(min(ahead), UTC) if ahead else None)  # read again then
    assert figures.open_invoices == len(open_ones)
    for currency, total in figures.balances.items():
        assert Decimal(total) == sum(Decimal(str(r["balance"])) for r in open_ones if r["currency"].upper() == currency)
    assert set(figures.past_due) <= set(figures.balances)


def test_dates_beyond_what_a_date_holds_are_held_to_it_and_one_dated_past_year_9999_never_opens() -> None:
    """Invoiced keeps a typo'd year as sent: the figures of the customer (and of the pass) are still worked out."""
    records = [{"currency": "usd", "balance": 10, "status": "past_due", "due_date": -10**13, "date": NOW - DAY},
               {"currency": "usd", "balance": 20, "status": "not_sent", "due_date": None, "date": 10**13}]
    figures = owed(records, NOW, None)
    assert (figures.balances, figures.oldest_past_due, figures.opens_at) == ({"USD": "10.00"}, "0001-01-01", None)
    assert payment_date({"date": 10**13}) == "9999-12-31"


def test_keap_values_in_the_account_currency_and_naming_others() -> None:
    figures = figures_of([
        {"currency": "usd", "balance": 100.5, "status": "past_due", "due_date": NOW - 12 * DAY, "date": NOW - 40 * DAY},
        {"currency": "eur", "balance": 20, "status": "not_sent", "due_date": NOW + DAY, "date": NOW - DAY},
        {"currency": "usd", "balance": 50, "status": "past_due", "due_date": NOW - 2 * DAY, "date": NOW - 30 * DAY},
    ], "2025-05-01")
    wanted = keap_values(figures, OPTIONS, "USD")
    assert wanted.values == {"Invoiced balance": 150.5, "Invoiced balance (EUR)": 20, "Invoiced past due": 150.5,
                             "Invoiced days past due": 12, "Invoiced open invoices": 3,
                             "Invoiced last payment": "2025-05-01"}
    assert wanted.types["Invoiced balance (EUR)"] == "DECIMAL_NUMBER" and wanted.types["Invoiced balance"] == "CURRENCY"
    assert wanted.tagged


def test_amounts_round_to_the_currency_smallest_unit() -> None:
    figures = figures_of([{"currency": "jpy", "balance": 1000.4, "status": "sent", "due_date": NOW, "date": NOW},
                          {"currency": "usd", "balance": 0.1, "status": "sent", "due_date": NOW, "date": NOW},
                          {"currency": "usd", "balance": 0.2, "status": "sent", "due_date": NOW, "date": NOW}])
    assert figures.balances == {"JPY": "1000", "USD": "0.30"}
    assert keap_values(figures, OPTIONS, "USD").values["Invoiced balance"] == 0.3


def test_nothing_owed_and_nothing_written_is_no_write() -> None:
    assert decide(keap_values(figures_of([]), OPTIONS, "USD"), None) is None


def test_a_currency_no_longer_owed_in_is_cleared_and_the_tag_removed_only_where_we_put_it() -> None:
    held = Written({"Invoiced balance (EUR)": 20, "Invoiced balance": 5}, tagged=True)
    change = decide(keap_values(figures_of([]), OPTIONS, "USD"), held)
    assert change == Change({"Invoiced balance": 0, "Invoiced balance (EUR)": None, "Invoiced days past due": 0,
                             "Invoiced open invoices": 0, "Invoiced past due": 0}, tag=False)
    assert decide(keap_values(figures_of([]), OPTIONS, "USD"), Written({}, tagged=None)) is None


def test_no_tag_configured_means_no_tag() -> None:
    late = [{"currency": "usd", "balance": 1, "status": "past_due", "due_date": NOW - DAY, "date": NOW - DAY}]
    assert not keap_values(figures_of(late), ReceivablesOptions(tag=""), "USD").tagged


def test_a_failed_write_keeps_what_was_there() -> None:
    held = Written({"Invoiced balance": 5}, tagged=False)
    change = Change({"Invoiced balance": 7}, tag=True)
    assert after(held, change, values_written=False, tag_written=True) == Written({"Invoiced balance": 5}, tagged=True)
    assert after(held, change, values_written=True, tag_written=False) == Written({"Invoiced balance": 7}, tagged=False)


def test_a_tag_put_on_under_a_former_name_comes_off_and_the_configured_one_goes_on() -> None:
    late = [{"currency": "usd", "balance": 1, "status": "past_due", "due_date": NOW - DAY, "date": NOW - DAY}]
    chase = ReceivablesOptions(tag="Chase")
    held = after(None, decide(keap_values(figures_of(late), OPTIONS, "USD"), None) or Change({}, None),
                 values_written=True, tag_written=True)
    assert (held.tagged, held.tag) == (True, "Invoiced: past due")
    assert decide(keap_values(figures_of(late), OPTIONS, "USD"), held) is None

    renamed = decide(keap_values(figures_of(late), chase, "USD"), held)
    assert renamed == Change({}, tag=True, untag="Invoiced: past due", tag_name="Chase")
    assert after(held, renamed, values_written=True, tag_written=True, untag_written=True) == Written(
        held.values, tagged=True, tag="Chase")
    assert after(held, renamed, values_written=True, tag_written=False, untag_written=True) == Written(
        held.values, tagged=False)
    assert after(held, renamed, values_written=True, tag_written=False) == held  # the former tag is still on

    settled = decide(keap_values(figures_of([]), chase, "USD"), held)  # nothing past due: only the former one comes off
    assert (settled.tag, settled.untag) == (None, "Invoiced: past due")  # type: ignore[union-attr]
    turned_off = decide(keap_values(figures_of(late), ReceivablesOptions(tag=""), "USD"), held)
    assert (turned_off.tag, turned_off.untag) == (None, "Invoiced: past due")  # type: ignore[union-attr]
    legacy = Written(held.values, tagged=True)  # tagged before names were kept: the configured tag
    assert decide(keap_values(figures_of(late), OPTIONS, "USD"), legacy) is None


def test_merged_custom_fields_keep_the_record_s_other_values() -> None:
    current = [{"id": "3", "content": "Dana"}, {"id": "7", "content": 5}, {"id": "8", "content": 1}]
    assert merged_custom_fields(current, {"7": 9, "8": None, "9": "2025-01-02"}) == [
        {"id": "3", "content": "Dana"}, {"id": "7", "content": 9}, {"id": "9", "content": "2025-01-02"}]


def event(kind: str, obj: dict) -> Event:
    return Event.of({"id": 1, "type": kind, "data": {"object": obj}})


def test_events_name_the_customers_whose_figures_to_read() -> None:
    named = named_by([
        event("invoice.created", {"id": 1, "customer": {"id": 7, "name": "Acme"}}),
        event("payment.created", {"id": 2, "customer": 8}),
        event("customer.updated", {"id": 9}),
        event("credit_note.created", {"id": 3, "customer": 10}),
        event("customer.merged", {"id": 11, "original_customer": {"id": 12}}),
        event("invoice.updated", {"id": 4, "customer": 13}),
        event("customer.deleted", {"id": 13}),
    ], removed_customer_id)
    assert named.changed == {"7", "8", "10", "11"}
    assert named.paid == {"8", "11"}
    assert named.removed == {"12", "13"}


@pytest.mark.parametrize(("settings", "problem"), [
    ({"fields": ("balance", "balance")}, "fields: a figure is named twice"),
    ({"labels": {"balance": "  "}}, "labels.balance: a label cannot be blank"),
    ({"labels": {"balance": "invoiced PAST due"}}, "labels: balance and past_due share the label"),
])
def test_options_refuse_what_keap_could_not_hold(settings: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ReceivablesOptions(**settings)


@pytest.mark.parametrize(("labels", "problem"), [
    ({"past_due": "Invoiced balance (EUR)"}, "labels.past_due: 'Invoiced balance \\(EUR\\)' is a label the sync may write for balance"),
    ({"past_due": "invoiced BALANCE (bhd)"}, "labels.past_due: 'invoiced BALANCE \\(bhd\\)' is a label the sync may write for balance"),
    ({"open_invoices": "Invoiced past due (JPY) (invoiced-keap)"}, "labels.open_invoices: .* for past_due"),
    ({"days_past_due": "Invoiced open invoices (invoiced-keap)"}, "labels.days_past_due: .* for open_invoices"),
    ({"balance": "Overdue (invoiced-keap)", "past_due": "Overdue"}, "labels.balance: 'Overdue \\(invoiced-keap\\)' .* for past_due"),
    ({"balance": "Due", "past_due": "Due (CHF)"}, "labels.past_due: 'Due \\(CHF\\)' is a label the sync may write for balance"),
])
def test_a_label_the_sync_may_write_for_another_figure_is_refused_naming_it(labels: dict, problem: str) -> None:
    """Issue 15: past_due = "Invoiced balance (EUR)" passed the check, and a customer owing EUR 500 not yet due and
    USD 70 past due had Keap's 'Invoiced balance (EUR)' set to 70."""
    with pytest.raises(ValueError, match=problem):
        ReceivablesOptions(labels=labels)


def test_labels_that_only_look_like_a_currency_form_are_kept() -> None:
    options = ReceivablesOptions(labels={"past_due": "Invoiced balance (old)", "days_past_due": "Invoiced past due days"})
    assert options.label("past_due") == "Invoiced balance (old)"  # OLD is no ISO 4217 code
    assert ReceivablesOptions(fields=("past_due",), labels={"past_due": "Invoiced balance (EUR)"}).fields == ("past_due",)


label_texts = st.text(st.sampled_from("ab (E)UR-invoicedkp"), min_size=1, max_size=24).filter(lambda text: text.strip())


@given(st.dictionaries(st.sampled_from(["balance", "past_due", "days_past_due", "open_invoices"]), label_texts),
       st.dictionaries(st.sampled_from(["EUR", "USD", "GBP", "BHD"]), cents, min_size=1),
       st.dictionaries(st.sampled_from(["EUR", "USD", "GBP", "BHD"]), cents))
def test_options_the_check_lets_through_never_write_two_figures_to_one_label(
        labels: dict, balances: dict, past_due: dict) -> None:
    try:
        options = ReceivablesOptions(labels=labels)
    except ValueError:
        return
    figures = Figures("2025-06-04", {code: str(amount) for code, amount in balances.items()},
                      {code: str(amount) for code, amount in past_due.items()}, None, 1, None)
    wanted = keap_values(figures, options, "USD")
    folded = [label.casefold() for label in wanted.values]
    assert len(folded) == len(set(folded))
    own = [label + " (invoiced-keap)" for label in folded]
    assert not set(own) & set(folded)


@given(invoices, payment_dates, invoices)
def test_what_a_write_sends_is_kept_exactly_and_a_clear_takes_all_of_it_off(
        records: list[dict], paid: str | None, later: list[dict]) -> None:
    """A zero is a value written (issue 15: zeros sent were not kept, so clears left them in Keap)."""
    wanted = keap_values(figures_of(records, paid), OPTIONS, "USD")
    change = decide(wanted, None)
    if change is None:
        assert all(not value for value in wanted.values.values())
        return
    held = after(None, change, values_written=True, tag_written=True, sent=change.sent(wanted))
    assert held.values == {label: value for label, value in wanted.values.items() if value is not None}
    assert decide(wanted, held) is None
    cleared = decide(keap_values(figures_of([]), ReceivablesOptions(fields=()), "USD"), held)
    assert cleared is not None and cleared.values == dict.fromkeys(held.values)
    next_wanted = keap_values(figures_of(later), OPTIONS, "USD")
    again = decide(next_wanted, held)
    now = after(held, again, values_written=True, tag_written=True, sent=again.sent(next_wanted)) if again else held
    assert now.values == {label: value for label, value in next_wanted.values.items() if value is not None}


def test_a_zero_is_not_a_blank() -> None:
    assert decide(Wanted({"Invoiced past due": None}, {}, False), Written({"Invoiced past due": 0})) == Change(
        {"Invoiced past due": None}, None)
    assert decide(Wanted({"Invoiced past due": 0}, {}, False), Written({"Invoiced balance": 3})) == Change(
        {"Invoiced balance": None, "Invoiced past due": 0}, None)
    assert decide(Wanted({"Invoiced past due": 0.0}, {}, False), Written({"Invoiced past due": 0})) is None


contents = st.one_of(st.none(), st.integers(min_value=0, max_value=10**6), cents, st.just(""), st.just("2025-06-01"))
some_labels = st.sampled_from(["Invoiced balance", "Invoiced past due", "Invoiced balance (EUR)", "Nickname"])


@given(st.dictionaries(some_labels, contents), st.dictionaries(some_labels, contents), st.booleans(), st.booleans())
def test_a_drifted_record_held_as_found_has_no_drift_left(written: dict, found: dict, tagged: bool, tag_on: bool) -> None:
    """What the daily look finds becomes the state's view of the record, so the next write puts right exactly that."""
    before = Written({label: value for label, value in written.items() if value not in (None, "")}, tagged, None)
    defined = ["Invoiced balance", "Invoiced past due", "Invoiced balance (EUR)"]  # not "Nickname": not ours
    tags = {"7"} if tag_on else set()
    difference = drift(before, found, defined, tags, {"Invoiced: past due": "7"}, "Invoiced: past due")
    if difference is None:
        return
    assert "Nickname" not in difference.values
    assert difference.tag_missing == (tagged and not tag_on)
    held = difference.held(before)
    assert drift(held, found, defined, tags, {"Invoiced: past due": "7"}, "Invoiced: past due") is None


def test_drift_compares_a_zero_with_a_blank_and_numbers_by_value() -> None:
    written = Written({"Invoiced past due": 0, "Invoiced balance": 10}, True, "Invoiced: past due")
    assert drift(written, {"Invoiced past due": 0, "Invoiced balance": 10.0}, ["Invoiced past due", "Invoiced balance"],
                 {"7"}, {"Invoiced: past due": "7"}, "Invoiced: past due") is None
    found = drift(written, {"Invoiced balance": 999}, ["Invoiced past due", "Invoiced balance"], set(),
                  {"Invoiced: past due": "7"}, "Invoiced: past due")
    assert found is not None and found.values == {"Invoiced balance": (10, 999), "Invoiced past due": (0, None)}
    assert found.tag_missing and found.held(written) == Written({"Invoiced balance": 999}, False, None)


def test_two_figures_never_go_to_one_label_even_past_the_settings_check() -> None:
    options = ReceivablesOptions()
    object.__setattr__(options, "labels", {"past_due": "Invoiced balance (EUR)"})  # as if the check were bypassed
    figures = Figures("2025-06-04", {"EUR": "500", "USD": "70"}, {"USD": "70"}, "2025-05-01", 2, None)
    with pytest.raises(SharedLabel, match="'Invoiced balance \\(EUR\\)'.*nothing is written"):
        keap_values(figures, options, "USD")
