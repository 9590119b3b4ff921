"""The payment resource's rules: validation of a new payment and of its `applied_to` (pure but for the invoices it
names), the create hook, and what applying it does to those invoices (after the payment's own event, as on the
server, where the payment is saved before its applications).

Shape from the docs' payment object and the server's Payment model (`balance` is what is left to apply).
Inference: the emulator applies payments to invoices only (`{"type": "invoice", "invoice": id, "amount": n}`);
credit notes, estimates, credits and convenience fees are refused.

A payment is voided, never deleted (`DELETE /payments/{id}`, the server's VoidPaymentRoute and Payment::void):
what it paid goes back onto its invoices (each written with its own event), it is kept with `voided: true`, its
balance back to its amount and nothing applied, answered with 200, and a `payment.deleted` event carries it; a
payment voided already is refused ("This payment has already been voided."). Inference: an invoice the payment had
paid (and so closed) opens again; one closed by hand stays closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from invoiced_keap.emulators.invoiced import fields, invoices
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.events import Subject
from invoiced_keap.emulators.invoiced.lines import money
from invoiced_keap.emulators.invoiced.store import Account, numeric_key
from invoiced_keap.mapping import Record

Store = Callable[[Account, Record, Record, Record], Record]  # write (record, after, previous) with its event

APPLYING = "An error occurred while trying to apply payment: "
# Inference: the server's filterable payment fields are not in the source at hand.
FILTERABLE = frozenset({"id", "customer", "currency", "method", "source", "reference", "date", "amount", "balance",
                        "voided", "created_at", "updated_at"})

DEFAULTS: Record = {
    "customer": None, "date": None, "currency": None, "amount": 0, "balance": 0, "method": "other",
    "reference": None, "source": "keyed", "notes": None, "voided": False, "matched": None, "ach_sender_id": None,
    "applied_to": [], "charge": None, "pdf_url": None, "surcharge_percentage": 0, "metadata": {},
}

NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "currency": lambda v: fields.currency("currency", v, nullable=True),
    "date": lambda v: fields.timestamp("date", v, nullable=False),
    "method": lambda v: fields.string("method", v, 1, 255, nullable=False),
    "source": lambda v: fields.string("source", v, 1, 255, nullable=False),
    "metadata": fields.metadata,
    **{name: partial(fields.free_text, name) for name in ("reference", "notes", "ach_sender_id")},
}


def _amount(raw: Any) -> float | int:
    amount = fields.number("amount", raw, nullable=False)
    assert amount is not None
    if amount < 0:
        raise ApiError(400, "The amount cannot be less than 0.", "amount")
    return amount


def _customer(account: Account, raw: Any) -> Record | None:
    if fields.blank_to_none(raw) is None:
        return None
    customer = account.tables["customers"].get(numeric_key(raw))
    if customer is None:
        raise ApiError(400, f"No such customer: {raw}")
    return customer


def _splits(raw: Any) -> list[Record]:
    """`applied_to` as a list of invoice applications, each document once."""
    if fields.blank_to_none(raw) is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(split, dict) for split in raw):
        raise ApiError(400, "Applied To is invalid", "applied_to")
    seen: set[str] = set()
    for split in raw:
        if split.get("type") != "invoice":
            raise ApiError(400, f"{APPLYING}Unsupported payment application type: {split.get('type')}", "applied_to")
        key = f"invoice:{split.get('invoice')}"
        if key in seen:
            raise ApiError(400, f"Each document can only be applied once per payment. Detected duplicate ({key})",
                           "applied_to")
        seen.add(key)
    return raw


def _application(account: Account, split: Record, customer_id: int | None, currency: str) -> tuple[Record, float | int]:
    """(invoice, amount) for one split. Inference: the invoice must be the payment customer's, in its currency, and
    owe at least the amount (the server's invoice split builder is not in the source at hand)."""
    invoice = account.invoices.get(numeric_key(split.get("invoice")))
    if invoice is None:
        raise ApiError(400, f"{APPLYING}No such invoice: {split.get('invoice')}", "applied_to")
    amount = fields.number("amount", split.get("amount"), nullable=False)
    assert amount is not None
    if amount <= 0:
        raise ApiError(400, f"{APPLYING}The amount applied must be greater than 0", "applied_to")
    if invoice["customer"] != customer_id:
        raise ApiError(400, f"{APPLYING}Invoice {invoice['id']} does not belong to customer {customer_id}", "applied_to")
    if invoice["currency"] != currency:
        raise ApiError(400, f"{APPLYING}The currency of invoice {invoice['id']} ({invoice['currency']}) does not "
                            f"match the payment currency ({currency})", "applied_to")
    if amount > invoice["balance"]:
        raise ApiError(400, f"{APPLYING}The amount applied ({money(amount, currency)}) exceeds the balance of invoice "
                            f"{invoice['id']} ({invoice['balance']})", "applied_to")
    return invoice, amount


def create(account: Account, body: Record) -> Record:
    """A new payment; without a customer it takes the first invoice's, without a currency the customer's (or the
    account's). Nothing is written to the invoices here: see `apply`."""
    values = {name: NORMALISERS[name](value) for name, value in body.items() if name in NORMALISERS}
    amount = _amount(body.get("amount", 0))
    splits = _splits(body.get("applied_to"))
    customer = _customer(account, body.get("customer"))
    if customer is None and splits:
        first = account.invoices.get(numeric_key(splits[0].get("invoice")))
        customer = account.tables["customers"].get(first["customer"]) if first is not None else None
    currency = values.get("currency") or (customer or {}).get("currency") or invoices.DEFAULT_CURRENCY
    customer_id = None if customer is None else customer["id"]
    applications = [_application(account, split, customer_id, currency) for split in splits]
    applied = money(sum(amount for _, amount in applications), currency)
    if applied > amount:
        raise ApiError(400, f"{APPLYING}Total amount applied ({applied}) cannot exceed the payment amount "
                            f"({money(amount, currency)})", "applied_to")
    now = account.now()
    applied_to = [{"id": account.next_id("transactions"), "type": "invoice", "invoice": invoice["id"],
                   "amount": money(part, currency)} for invoice, part in applications]
    record = {"id": None, "object": "payment", **DEFAULTS, **values, "customer": customer_id, "currency": currency,
              "date": values.get("date", now), "amount": money(amount, currency),
              "balance": money(amount - applied, currency),
              "applied_to": applied_to, "created_at": now, "updated_at": now}
    record["id"] = account.next_id("payments")
    return record


def apply(account: Account, payment: Record, store: Store) -> None:
    """Each application takes its amount off its invoice, each invoice written through `store` (its own event:
    `invoice.updated`, or `invoice.paid` when nothing is left)."""
    for split in payment["applied_to"]:
        invoice = account.invoices[split["invoice"]]
        store(account, invoice, *invoices.paid_towards(account, invoice, split["amount"]))


def void(account: Account, payment: Record, store: Store) -> Record:
    """The payment voided (see the module docstring): its applications taken off their invoices through `store`."""
    if payment["voided"]:
        raise ApiError(400, "This payment has already been voided.")
    for split in payment["applied_to"]:
        invoice = account.invoices.get(split["invoice"])
        if invoice is not None:
            store(account, invoice, *invoices.unpaid_towards(account, invoice, split["amount"]))
    now = account.now()
    return {**payment, "voided": True, "balance": payment["amount"], "applied_to": [], "updated_at": now}


def applied_invoices(payment: Record) -> Iterable[Subject]:
    """The invoices a payment event relates to, besides its customer."""
    return [("invoice", str(split["invoice"])) for split in payment["applied_to"]]
