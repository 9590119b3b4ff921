"""The invoice resource's rules: validation of create/PATCH bodies; the balance, `paid`, `closed` and `status` the
server works out again on every save (pure); the hooks that apply them to an account; what a payment applied does
to an invoice; and the past-due sweep (the server's MarkInvoicesPastDue cron job).

`status` as the server's InvoiceStatusGenerator derives it: `draft`, else `paid`, else `past_due` once the
account's clock is past `due_date`, else `not_sent`. The emulator models no sending, viewing, gateway payments,
voiding or write-offs, so `sent`, `viewed`, `pending`, `voided` and `bad_debt` never occur.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from functools import partial
from typing import Any

from invoiced_keap.emulators.invoiced import fields, lines
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.store import Account, numeric_key
from invoiced_keap.mapping import Record

Change = tuple[Record, Record, Record]  # (record, record after, old values that changed)

OPEN = ("not_sent", "sent", "viewed")  # the statuses the past-due job looks at
DEFAULT_CURRENCY = "usd"  # inference: the emulated account's own currency, for customers without one
NUMBER_FORMAT = "INV-{:04d}"
CLOSED = ("Your changes cannot be saved because this document is closed. Please re-open the document to make any "
          "changes.")
MASS_ASSIGNMENT_BLOCKED = frozenset(
    {"subtotal", "total", "status", "viewed", "client_id", "client_id_exp", "date_paid", "date_bad_debt",
     "subscription_id", "amount_paid", "amount_credited", "paid", "balance", "last_sent", "attempt_count",
     "recalculate_chase", "payment_plan_id", "created_at", "updated_at"}
)
# Inference: the server's filterable invoice fields (objectFields/invoice.yaml) are not in the source at hand.
FILTERABLE = frozenset(
    {"id", "customer", "number", "name", "currency", "status", "draft", "closed", "paid", "autopay", "chase", "date",
     "due_date", "payment_terms", "purchase_order", "subtotal", "total", "balance", "created_at", "updated_at"}
)
UNTRACKED = frozenset({"updated_at"})
DOCUMENT = ("items", "discounts", "taxes")  # the parts a total is worked out from

# Inference: the URLs need the account's customer portal, so they stay null; chasing and AutoPay scheduling are not
# modelled, so their fields keep these values.
DEFAULTS: Record = {
    "name": "Invoice", "number": None, "currency": None, "date": None, "due_date": None, "payment_terms": None,
    "purchase_order": None, "items": [], "notes": None, "subtotal": 0, "discounts": [], "taxes": [], "shipping": [],
    "total": 0, "balance": 0, "draft": False, "closed": False, "paid": False, "status": "not_sent", "autopay": False,
    "attempt_count": 0, "next_payment_attempt": None, "chase": False, "next_chase_on": None,
    "needs_attention": False, "late_fees": True, "subscription": None, "payment_plan": None, "ship_to": None,
    "payment_source": None, "url": None, "payment_url": None, "pdf_url": None, "csv_url": None, "metadata": {},
}

NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "name": partial(fields.free_text, "name"),
    "number": lambda v: fields.string("number", v, 1, 32, nullable=False),
    "currency": lambda v: fields.currency("currency", v, nullable=True),
    "date": lambda v: fields.timestamp("date", v, nullable=False),
    "due_date": lambda v: fields.timestamp("due_date", v, nullable=True),
    "payment_terms": lambda v: fields.string("payment_terms", v, 1, 255, nullable=True),
    "purchase_order": lambda v: fields.string("purchase_order", v, 0, 32, nullable=True),
    "notes": partial(fields.free_text, "notes"),
    "metadata": fields.metadata,
    **{name: partial(fields.boolean, name) for name in ("draft", "closed", "autopay", "chase", "late_fees",
                                                        "needs_attention")},
}


def _validated(body: Record) -> Record:
    """Writable fields of `body`, normalised; read-only ones are refused, unknown ones ignored (inference)."""
    fields.refuse_read_only(body, MASS_ASSIGNMENT_BLOCKED, "Invoice")
    return {name: NORMALISERS[name](value) for name, value in body.items() if name in NORMALISERS}


# --- what every save works out again (pure) -------------------------------------------------------------
def status(invoice: Record, now: int) -> str:
    if invoice["draft"]:
        return "draft"
    if invoice["paid"]:
        return "paid"
    if (invoice["due_date"] or 0) > 0 and invoice["due_date"] < now:
        return "past_due"
    return "not_sent"


def amount_paid(invoice: Record) -> float | int:
    """What payments took off the total (the server's `amount_paid`, which the API does not show)."""
    return lines.money(invoice["total"] - invoice["balance"], invoice["currency"])


def settled(invoice: Record, paid_so_far: float, now: int, *, creating: bool = False,
            closed_given: bool = False) -> Record:
    """The invoice with `balance`, `paid`, `closed` and `status` worked out as the server's calculateInvoice (on
    create) and beforeUpdateInvoice (on update) do: paid when nothing is left on an issued invoice (on create, an
    invoice created closed is not paid), and a paid invoice closed unless the request set `closed` itself."""
    balance = lines.money(invoice["total"] - paid_so_far, invoice["currency"])
    paid = balance <= 0 and not invoice["draft"] and not (creating and invoice["closed"])
    closed = invoice["closed"] or (paid and not closed_given)
    worked_out = {**invoice, "balance": balance, "paid": paid, "closed": closed}
    return {**worked_out, "status": status(worked_out, now)}


def updated_event(invoice: Record, previous: Record | None) -> str:
    """`invoice.paid` instead of `invoice.updated` for the save that pays an issued invoice of a positive total."""
    newly_paid = previous is not None and previous.get("paid") is False and invoice["paid"]
    return "invoice.paid" if newly_paid and not invoice["draft"] and invoice["total"] > 0 else "invoice.updated"


# --- hooks on an account ------------------------------------------------------------------------------
def _customer(account: Account, raw: Any) -> Record:
    if fields.blank_to_none(raw) is None:
        raise ApiError(400, "Customer missing", "customer")
    customer = account.tables["customers"].get(numeric_key(raw))
    if customer is None:
        raise ApiError(400, f"No such customer: {raw}", "customer")
    if not customer["active"]:
        raise ApiError(400, "This cannot be created because the customer is inactive", "customer")
    if customer["credit_hold"]:
        raise ApiError(400, "New invoices cannot be created for this account because it has a credit hold.", "total")
    return customer


def _document(account: Account, body: Record, invoice: Record, currency: str) -> Record:
    """Lines, discounts, taxes and the totals in `currency`: each part from the body when it gives one, else the
    invoice's own."""
    next_line, next_rate = partial(account.next_id, "line_items"), partial(account.next_id, "rates")
    catalog = account.tables["items"].get
    items = (lines.line_items(body["items"], catalog=catalog, next_id=next_line, currency=currency,
                              kept=[line["id"] for line in invoice["items"]])
             if "items" in body else invoice["items"])
    discounts = lines.rates(body["discounts"], "discounts", next_id=next_rate, currency=currency) \
        if "discounts" in body else invoice["discounts"]
    taxes = lines.rates(body["taxes"], "taxes", next_id=next_rate, currency=currency) if "taxes" in body \
        else invoice["taxes"]
    subtotal, total = lines.totals(items, discounts, taxes, currency)
    return {"items": items, "discounts": discounts, "taxes": taxes, "subtotal": subtotal, "total": total}


def watch(account: Account, invoice: Record) -> None:
    """An open invoice with a due date: the sweep marks it past due once the clock passes that date."""
    if invoice["status"] in OPEN and invoice["due_date"]:
        heapq.heappush(account.due_dates, (invoice["due_date"], invoice["id"]))


def create(account: Account, body: Record) -> Record:
    """A new invoice. Without a due date and without terms it takes the customer's payment terms, and the terms give
    the due date; without a currency it takes the customer's (or the account's); `autopay` follows the customer."""
    values = _validated(body)
    customer = _customer(account, body.get("customer"))
    now = account.now()
    date = values.get("date", now)
    terms = values["payment_terms"] if "payment_terms" in values else (
        customer["payment_terms"] if values.get("due_date") is None else None)
    due_date = values["due_date"] if values.get("due_date") is not None else lines.due_date(terms, date)
    currency = values.get("currency") or customer["currency"] or DEFAULT_CURRENCY
    record = {
        "id": None, "object": "invoice", "customer": customer["id"], **DEFAULTS, "autopay": customer["autopay"],
        **values, "currency": currency, "date": date,
        "due_date": due_date, "payment_terms": terms, **_document(account, body, DEFAULTS, currency),
        "created_at": now, "updated_at": now,
    }
    if record["number"] is None:
        record["number"] = fields.next_free_number(NUMBER_FORMAT, account.counters["invoice_numbers"], account.invoices)
    fields.check_number_free("invoice", record["number"], account.invoices)
    record["id"] = account.next_id("invoices")
    record = settled(record, 0, now, creating=True)
    watch(account, record)
    return record


def update(account: Account, record: Record, body: Record) -> tuple[Record, Record]:
    """A PATCH: the customer stays, a closed invoice takes changes only while being reopened, an issued one never
    turns back into a draft; a new date or new terms move the due date unless the body sets one."""
    if "customer" in body and numeric_key(body["customer"]) != record["customer"]:
        raise ApiError(400, "Invalid request parameter `customer`. The customer cannot be modified.", "customer")
    values = _validated(body)
    if record["closed"] and values.get("closed", True):
        raise ApiError(400, CLOSED, "closed")
    if values.get("draft") and not record["draft"]:
        raise ApiError(400, "Cannot save as a draft because the document has already been issued.", "draft")
    if "currency" in values and values["currency"] is None:
        raise ApiError(400, "The currency cannot be unset.", "currency")
    now = account.now()
    changed = {**record, **values}
    moved = (changed["date"], changed["payment_terms"]) != (record["date"], record["payment_terms"])
    if moved and "due_date" not in values and changed["payment_terms"]:
        changed["due_date"] = lines.due_date(changed["payment_terms"], changed["date"])
    if any(part in body for part in DOCUMENT):
        changed.update(_document(account, body, record, changed["currency"]))
    if changed["number"] != record["number"]:
        fields.check_number_free("invoice", changed["number"], account.invoices, record["id"])
    changed = settled(changed, amount_paid(record), now, closed_given="closed" in values)
    return _dated(account, record, changed, now)


def paid_towards(account: Account, invoice: Record, amount: float) -> tuple[Record, Record]:
    """The invoice after `amount` of a payment is applied to it (the server's Invoice::applyPayment): no longer a
    draft, its balance down, paid and closed once nothing is left, even when it was closed before."""
    now = account.now()
    changed = settled({**invoice, "draft": False}, amount_paid(invoice) + amount, now)
    return _dated(account, invoice, changed, now)


def unpaid_towards(account: Account, invoice: Record, amount: float) -> tuple[Record, Record]:
    """The invoice after `amount` a voided payment had applied goes back onto it: its balance up, no longer paid,
    and open again when that payment had paid (and so closed) it [inference: one closed by hand stays closed]."""
    now = account.now()
    reopened = {**invoice, "closed": invoice["closed"] and not invoice["paid"]}
    changed = settled(reopened, amount_paid(invoice) - amount, now)
    return _dated(account, invoice, changed, now)


def _dated(account: Account, record: Record, changed: Record, now: int) -> tuple[Record, Record]:
    """(record after, old values that changed); a change moves `updated_at` and is watched for its due date."""
    previous = fields.changes(record, changed, UNTRACKED)
    if not previous:
        return record, {}
    changed["updated_at"] = now
    watch(account, changed)
    return changed, previous


def delete(account: Account, record: Record) -> None:
    """Refused once a payment was applied, as the server refuses to void such an invoice."""
    if amount_paid(record) > 0:
        raise ApiError(400, "This invoice cannot be voided because it has a payment applied.", "voided")
    account.invoices.pop(record["id"])


def sweep(account: Account) -> list[Change]:
    """Open invoices whose due date the clock has passed, marked `past_due` as the server's MarkInvoicesPastDue job
    does (`updateStatus()`, a save). Inference: that save moves `updated_at` and makes an `invoice.updated` event
    with the old status; the job runs every minute, the emulator at the next operation, stamped with its time."""
    now = account.now()
    invoices, due_dates = account.invoices, account.due_dates
    swept: list[Change] = []
    while due_dates and due_dates[0][0] < now:
        due_date, invoice_id = heapq.heappop(due_dates)
        invoice = invoices.get(invoice_id)
        if invoice is None or invoice["due_date"] != due_date or invoice["status"] not in OPEN:
            continue  # gone, moved to another date, or paid since
        changed = {**invoice, "status": status(invoice, now), "updated_at": now}
        swept.append((invoice, changed, {"status": invoice["status"]}))
    return swept
