"""A document's lines and totals, worked out the way the server's InvoiceCalculator does (pure): each line's amount
is its quantity times its unit cost, the subtotal their sum, the total the subtotal less discounts plus taxes.

Amounts are rounded to the currency's smallest unit (ISO 4217 minor units: cents for USD, none for JPY, fils for
BHD), as the server's Money normalises every amount to "the lowest denominated unit for a given currency" (half away
from zero, as PHP's round). Inference: discounts and taxes are taken as flat
amounts (`[{"amount": 5}]`), without coupons, tax rates or shipping; a line naming a catalog item takes the item's
name, description, type, unit cost and flags unless the line gives its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import get_currency_precision

from invoiced_keap.emulators.invoiced import fields
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.mapping import Record

Catalog = Callable[[str], Record | None]  # item id -> catalog item
NextId = Callable[[], int]

LINE_DEFAULTS: Record = {
    "catalog_item": None, "type": None, "name": None, "description": None, "quantity": 1, "unit_cost": 0,
    "amount": 0, "discountable": True, "discounts": [], "taxable": True, "taxes": [], "metadata": {},
}
FROM_CATALOG = ("name", "description", "type", "unit_cost", "discountable", "taxable")
RATE_KINDS = {"discounts": ("discount", "coupon"), "taxes": ("tax", "tax_rate")}  # kind -> (object, its rate field)
NET_TERMS = re.compile(r"^\s*net\s*(\d+)\s*$", re.IGNORECASE)
DUE_ON_RECEIPT = "due on receipt"
DAY = 86400


def money(value: float | int, currency: str) -> float | int:
    """Rounded to the currency's smallest unit (`minor_units`); a whole amount as an integer, as the docs print them
    (`45`, `51.15`)."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    rounded = Decimal(repr(value + 0.0)).quantize(exponent, rounding=ROUND_HALF_UP)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def minor_units(currency: str) -> int:
    """The digits after the decimal point of the currency's smallest unit (ISO 4217 via Babel's CLDR data)."""
    return int(get_currency_precision(currency.upper()))


def _amount(value: Any, what: str) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ApiError(400, f"{fields.title(what)} only allows numbers", "items")


def line_item(entry: Any, *, catalog: Catalog, line_id: int, currency: str) -> Record:
    if not isinstance(entry, dict):
        raise ApiError(400, "Items is invalid", "items")
    given = {name: value for name, value in entry.items() if name in LINE_DEFAULTS}
    if (item_id := given.get("catalog_item")) is not None:
        item = catalog(str(item_id))
        if item is None:
            raise ApiError(400, f"No such item: {item_id}", "items")  # inference: the message
        given = {**{name: item[name] for name in FROM_CATALOG}, **given}
    line = {"id": line_id, "object": "line_item", **LINE_DEFAULTS, **given}
    quantity, unit_cost = _amount(line["quantity"], "quantity"), _amount(line["unit_cost"], "unit_cost")
    return {**line, "amount": money(quantity * unit_cost, currency)}


def line_items(raw: Any, *, catalog: Catalog, next_id: NextId, currency: str, kept: Iterable[int] = ()) -> list[Record]:
    """The lines of a body's `items`; a line giving the id of one in `kept` (the invoice's lines) keeps it."""
    if not isinstance(raw, list):
        raise ApiError(400, "Items is invalid", "items")
    keep = set(kept)
    lines = []
    for entry in raw:
        given_id = entry.get("id") if isinstance(entry, dict) else None
        lines.append(line_item(entry, catalog=catalog, line_id=given_id if given_id in keep else next_id(),
                               currency=currency))
    return lines


def rates(raw: Any, kind: str, *, next_id: NextId, currency: str) -> list[Record]:
    """`discounts` or `taxes` as applied rate objects `{id, object, amount, coupon|tax_rate}`."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(rate, dict) for rate in raw):
        raise ApiError(400, f"{fields.title(kind)} is invalid", kind)
    obj, rate_field = RATE_KINDS[kind]
    return [{"id": next_id(), "object": obj, "amount": money(_amount(rate.get("amount"), "amount"), currency), rate_field: None}
            for rate in raw]


def totals(items: list[Record], discounts: list[Record], taxes: list[Record], currency: str) -> tuple[float | int, float | int]:
    """(subtotal, total); a negative total is refused (the model's `notNegative`)."""
    subtotal = money(sum(line["amount"] for line in items), currency)
    total = money(subtotal - sum(rate["amount"] for rate in discounts) + sum(rate["amount"] for rate in taxes), currency)
    if total < 0:
        raise ApiError(400, "Total is invalid", "total")
    return subtotal, total


def due_date(payment_terms: str | None, date: int) -> int | None:
    """The due date the terms give from the invoice date: `NET 30` thirty days on, `Due on receipt` the date itself.
    Inference: other terms (and none) give no due date; the server's PaymentTermsFactory is not public."""
    if payment_terms is None:
        return None
    if match := NET_TERMS.match(payment_terms):
        return date + int(match.group(1)) * DAY
    return date if payment_terms.strip().lower() == DUE_ON_RECEIPT else None
