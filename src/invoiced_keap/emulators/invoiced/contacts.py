"""The contact resource's rules (`/customers/{customer}/contacts`): validation and normalisation of create/PATCH
bodies (pure), and the hooks that apply them to an account (ids, the customer's country inherited, at most 100
contacts a customer).

Shapes follow the server's Contact model and ModelNormalizer: `customer_id` with `customer` as its alias (an id;
events embed the customer record there instead), `role_id` with `role`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from invoiced_keap.emulators.invoiced import fields
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.store import Account
from invoiced_keap.mapping import Record

MAX_PER_CUSTOMER = 100
FILTERABLE = frozenset({"customer_id"})  # the server's ListContactsRoute allows no other filter
UNTRACKED = frozenset({"updated_at"})

DEFAULTS: Record = {
    "name": None, "title": None, "email": None, "phone": None, "primary": True, "sms_enabled": False,
    "department": None, "address1": None, "address2": None, "city": None, "state": None, "postal_code": None,
    "country": None, "send_new_invoices": False, "role": None, "role_id": None,
}

_FREE_TEXT = ("title", "department", "phone", "address1", "address2", "city", "state", "postal_code")
_BOOLEANS = ("primary", "sms_enabled", "send_new_invoices")

# Inference: unknown body fields are ignored, as for customers; `role` (a contact role id) is ignored too, since the
# emulator has no contact roles, and so is `customer_id` on PATCH (the model's `customer` is create-only).
NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: fields.string("name", v, 1, 255, nullable=False),
    "email": partial(fields.email, "email"),
    "country": lambda v: None if fields.blank_to_none(v) is None else fields.country("country", v),
    **{name: partial(fields.free_text, name) for name in _FREE_TEXT},
    **{name: partial(fields.boolean, name) for name in _BOOLEANS},
}


def _validated(body: Record) -> Record:
    return {name: NORMALISERS[name](value) for name, value in body.items() if name in NORMALISERS}


def new_contact(body: Record, customer: Record, *, now: int) -> Record:
    """A validated new contact of `customer`, without a country the customer's; the caller assigns `id`."""
    fields.required("name", body.get("name"))
    values = {**DEFAULTS, **_validated(body)}
    if values["country"] is None:
        values["country"] = customer["country"]
    return {"id": None, "object": "contact", "customer": customer["id"], "customer_id": customer["id"],
            **values, "created_at": now, "updated_at": now}


def updated_contact(record: Record, body: Record, *, now: int) -> tuple[Record, Record]:
    """The contact after a PATCH and the old values that changed (empty: a no-op, which keeps `updated_at`)."""
    changed = {**record, **_validated(body)}
    previous = fields.changes(record, changed, UNTRACKED)
    if previous:
        changed["updated_at"] = now
        return changed, previous
    return record, {}


# --- hooks on an account ------------------------------------------------------------------------------
def create(account: Account, body: Record) -> Record:
    """`body["customer"]` is the id from the path, the customer known to exist."""
    customer = account.tables["customers"][body["customer"]]
    if len(account.contacts.group(customer["id"])) >= MAX_PER_CUSTOMER:
        raise ApiError(400, f"The maximum number of contacts ({MAX_PER_CUSTOMER}) per customer has been reached.")
    record = new_contact(body, customer, now=account.now())
    record["id"] = account.next_id("contacts")
    return record


def update(account: Account, record: Record, body: Record) -> tuple[Record, Record]:
    return updated_contact(record, body, now=account.now())
