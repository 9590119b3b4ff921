"""The customer resource's rules: validation and normalisation of create/PATCH bodies (pure), and the hooks
that apply them to an account (numbers unique and generated, updated_at filters, merging)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from invoiced_keap.emulators.invoiced import fields
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.store import Account, numeric_key
from invoiced_keap.mapping import Record


CUSTOMER_TYPES = ("company", "person", "government", "non_profit")
DEFAULT_COUNTRY = "US"
MASS_ASSIGNMENT_BLOCKED = frozenset(
    {"client_id", "client_id_exp", "credit_balance", "object", "statement_pdf_url", "sign_up_url", "created_at",
     "updated_at"}
)
FILTERABLE = frozenset(
    {"id", "name", "number", "email", "type", "active", "autopay", "chase", "credit_hold", "taxable", "country",
     "state", "city", "postal_code", "currency", "language", "payment_terms", "owner", "parent_customer",
     "chasing_cadence", "created_at", "updated_at"}
)
UNTRACKED = frozenset({"updated_at"})
NUMBER_FORMAT = "CUST-{:04d}"

DEFAULTS: Record = {
    "name": None, "number": None, "email": None, "type": "company", "autopay": False, "autopay_delay_days": -1,
    "payment_terms": None, "payment_source": None, "taxes": [], "attention_to": None, "address1": None,
    "address2": None, "city": None, "state": None, "postal_code": None, "country": DEFAULT_COUNTRY,
    "language": None, "currency": None, "tax_id": None, "phone": None, "notes": None, "sign_up_page": None,
    "sign_up_url": None, "statement_pdf_url": None, "metadata": {}, "avalara_entity_use_code": None,
    "avalara_exemption_number": None, "chase": True, "chasing_cadence": None, "next_chase_step": None,
    "credit_hold": False, "credit_limit": None, "owner": None, "parent_customer": None, "taxable": True,
    "ach_gateway": None, "cc_gateway": None, "active": True, "bill_to_parent": False, "consolidated": False,
}

_FREE_TEXT = ("attention_to", "address1", "address2", "city", "state", "postal_code", "phone", "notes", "tax_id",
              "avalara_entity_use_code", "avalara_exemption_number")
_BOOLEANS = ("autopay", "chase", "credit_hold", "taxable", "active", "bill_to_parent", "consolidated")
_REFERENCES = ("owner", "parent_customer", "chasing_cadence", "next_chase_step", "sign_up_page", "ach_gateway",
               "cc_gateway", "autopay_delay_days")

Normaliser = Callable[[Any], Any]
NORMALISERS: dict[str, Normaliser] = {
    "name": lambda v: fields.string("name", v, 1, 255, nullable=False),
    "number": lambda v: fields.string("number", v, 1, 32, nullable=False),
    "email": partial(fields.email, "email"),
    "type": lambda v: fields.choice("type", v, CUSTOMER_TYPES),
    "payment_terms": lambda v: fields.string("payment_terms", v, 1, 255, nullable=True),
    "language": partial(fields.language, "language"),
    "country": lambda v: DEFAULT_COUNTRY if fields.blank_to_none(v) is None else fields.country("country", v),
    "currency": lambda v: fields.currency("currency", v, nullable=True),
    "credit_limit": lambda v: fields.number("credit_limit", v, nullable=True),
    "metadata": fields.metadata,
    "taxes": lambda v: list(v or []),
    **{name: partial(fields.free_text, name) for name in _FREE_TEXT},
    **{name: partial(fields.boolean, name) for name in _BOOLEANS},
    **{name: partial(fields.number, name, nullable=True) for name in _REFERENCES},
}


def _validated(body: Record) -> Record:
    """Writable fields of `body`, normalised; read-only ones are refused, unknown ones ignored (warn mode)."""
    fields.refuse_read_only(body, MASS_ASSIGNMENT_BLOCKED, "Customer")
    return {name: NORMALISERS[name](value) for name, value in body.items() if name in NORMALISERS}


def new_customer(body: Record, *, now: int) -> Record:
    """A validated new customer; the caller assigns `id`, and `number` when the body has none."""
    fields.required("name", body.get("name"))
    values = {**DEFAULTS, **_validated(body)}
    return {"id": None, "object": "customer", **values, "created_at": now, "updated_at": now}


def updated_customer(record: Record, body: Record, *, now: int) -> tuple[Record, Record]:
    """The record after a PATCH and the old values that changed (empty: a no-op, which keeps `updated_at`).

    Metadata is replaced, not merged: the real server deletes all keys and inserts the new map.
    """
    changed = {**record, **_validated(body)}
    previous = fields.changes(record, changed, UNTRACKED)
    if previous:
        changed["updated_at"] = now
        return changed, previous
    return record, {}


# --- hooks on an account ------------------------------------------------------------------------------
def create(account: Account, body: Record) -> Record:
    """A new customer with its id, and the next free generated number when the body has none."""
    record = new_customer(body, now=account.now())
    table = account.tables["customers"]
    if record["number"] is None:
        record["number"] = fields.next_free_number(NUMBER_FORMAT, account.counters["numbers"], table)
    fields.check_number_free("customer", record["number"], table)
    record["id"] = account.next_id("customers")
    return record


def update(account: Account, record: Record, body: Record) -> tuple[Record, Record]:
    changed, previous = updated_customer(record, body, now=account.now())
    if "number" in previous:
        fields.check_number_free("customer", changed["number"], account.tables["customers"], record["id"])
    return changed, previous


def delete(account: Account, record: Record) -> None:
    """A customer with invoices stays (the server refuses customers with transactions); otherwise it goes, and its
    contacts go with it. Inference: without `contact.deleted` events, as a database cascade would (the
    `customer.deleted` event is the only signal; the real Customer model deletes no contacts itself)."""
    if account.invoices.group(record["id"]):
        raise ApiError(400, "Customers with transactions cannot be deleted")
    account.tables["customers"].pop(record["id"])
    for contact_id in list(account.contacts.group(record["id"])):
        account.contacts.pop(contact_id)


def _hand_over(account: Account, merged_id: int, survivor_id: int) -> None:
    """The merged customer's contacts, invoices and payments now belong to the survivor: rewritten in place, as the
    server's CustomerMerger does with one UPDATE per table (no events, no new `updated_at`)."""
    for contact in list(account.contacts.group(merged_id).values()):
        account.contacts.put(contact["id"], {**contact, "customer": survivor_id, "customer_id": survivor_id})
    for invoice in list(account.invoices.group(merged_id).values()):
        account.invoices.put(invoice["id"], {**invoice, "customer": survivor_id})
    payments = account.tables["payments"]
    for payment in [payment for payment in payments.values() if payment["customer"] == merged_id]:
        payments.put(payment["id"], {**payment, "customer": survivor_id})


def merge(account: Account, survivor: Record, body: Record) -> None:
    """`POST /customers/{survivor}/merge` with `{"customer": merged}`: fold the merged customer in.

    The merged customer disappears without a `customer.deleted` event; the survivor gets `customer.merged`
    with `original_customer` (the merged record) in the object data, and inherits its event history, its contacts,
    invoices and payments.
    """
    merged_id = body.get("customer")
    table = account.tables["customers"]
    merged = table.get(numeric_key(merged_id))
    if merged is None:
        raise ApiError(400, f"No such customer: {merged_id}")
    if survivor is merged:
        raise ApiError(500, "A customer cannot be merged into itself.")
    if not (survivor["active"] and merged["active"]):
        raise ApiError(400, "Inactive customers cannot be merged")
    _hand_over(account, merged["id"], survivor["id"])
    table.pop(merged["id"])
    account.move_events(("customer", str(merged["id"])), ("customer", str(survivor["id"])))
    account.emit("customer.merged", survivor, extra={"original_customer": merged})
