"""`GET /customers/{id}/balance` (the official client's `customer.balance()`): what a customer owes, worked out as the
server's CustomerBalanceGenerator does, over that customer's invoices only.

Inference: the emulator has no credit notes and no credit balances, so `open_credit_notes` and `available_credits`
are 0 and `history` (the credit balance history) is empty; without `?currency=` the currency is the customer's, else
the account's (the server's choice for accounts without multi-currency).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced.invoices import DEFAULT_CURRENCY
from invoiced_keap.emulators.invoiced.lines import money
from invoiced_keap.emulators.invoiced.store import Account
from invoiced_keap.mapping import Record


def customer_balance(customer: Record, invoices: Iterable[Record], *, currency: str | None, now: int) -> Record:
    """Outstanding: the balances of issued, open, unpaid invoices dated up to now, in the currency; due now: those
    without AutoPay, or past due; past due: any issued invoice past due, in any currency."""
    currency = (currency or customer["currency"] or DEFAULT_CURRENCY).lower()
    invoices = list(invoices)
    outstanding = [invoice for invoice in invoices if invoice["currency"] == currency and invoice["date"] <= now
                   and not (invoice["paid"] or invoice["draft"] or invoice["closed"])]
    due_now = [invoice for invoice in outstanding if not invoice["autopay"] or invoice["status"] == "past_due"]
    return {
        "currency": currency,
        "total_outstanding": money(sum(invoice["balance"] for invoice in outstanding), currency),
        "due_now": money(sum(invoice["balance"] for invoice in due_now), currency),
        "past_due": any(invoice["status"] == "past_due" and not invoice["draft"] for invoice in invoices),
        "open_credit_notes": 0,
        "available_credits": 0,
        "history": [],
    }


def view(account: Account, customer: Record, query: QueryParams) -> Record:
    return customer_balance(customer, account.invoices.group(customer["id"]).values(), currency=query.get("currency"),
                            now=account.now())
