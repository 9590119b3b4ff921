"""The item (catalog item) resource's rules: string ids, create-only fields (pure), and the hooks that apply
them to an account (given or generated ids, the archived listing, delete as archiving)."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced import fields
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.store import Account
from invoiced_keap.mapping import Record


ITEM_ID = re.compile(r"^[a-z0-9_\-:]{2,}$", re.IGNORECASE)
GL_ACCOUNT = re.compile(r"^[a-z0-9-]{4,}$", re.IGNORECASE)
GENERATED_ID_LENGTH = 6
DEFAULT_CURRENCY = "usd"
FILTERABLE = frozenset({"id", "name", "currency", "unit_cost", "type", "taxable", "discountable", "gl_account",
                        "archived", "created_at", "updated_at"})
# PATCH silently ignores these: "for other updates... delete and recreate".
CREATE_ONLY = frozenset({"id", "currency", "unit_cost", "discountable", "taxable", "taxes"})
UNTRACKED = frozenset({"updated_at"})

DEFAULTS: Record = {
    "name": None, "currency": DEFAULT_CURRENCY, "unit_cost": 0, "description": None, "type": None, "taxes": [],
    "gl_account": None, "discountable": True, "taxable": True, "avalara_tax_code": None,
    "avalara_location_code": None, "metadata": {},
}


def _gl_account(value: Any) -> str | None:
    value = fields.blank_to_none(value)
    if value is not None and not (isinstance(value, str) and GL_ACCOUNT.match(value)):
        raise ApiError(400, "Gl Account is invalid", "gl_account")
    return value


NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: fields.string("name", v, 1, 255, nullable=False),
    "currency": lambda v: fields.currency("currency", v, nullable=True) or DEFAULT_CURRENCY,
    "unit_cost": partial(fields.number, "unit_cost", nullable=False),
    "description": partial(fields.free_text, "description"),
    "type": partial(fields.free_text, "type"),
    "taxes": lambda v: list(v or []),
    "gl_account": _gl_account,
    "discountable": partial(fields.boolean, "discountable"),
    "taxable": partial(fields.boolean, "taxable"),
    "avalara_tax_code": partial(fields.free_text, "avalara_tax_code"),
    "avalara_location_code": partial(fields.free_text, "avalara_location_code"),
    "metadata": fields.metadata,
}
DEFINED_OPTIONS = ("id", *NORMALISERS)


def _check_options(body: Record) -> None:
    """Unknown body params are refused with Symfony OptionsResolver's message."""
    unknown = [name for name in body if name not in DEFINED_OPTIONS]
    if not unknown:
        return
    names, defined = '", "'.join(unknown), '", "'.join(DEFINED_OPTIONS)
    verb = "options \"{}\" do" if len(unknown) > 1 else "option \"{}\" does"
    raise ApiError(400, f"The {verb.format(names)} not exist. Defined options are: \"{defined}\".", "request")


def generated_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(GENERATED_ID_LENGTH))


def valid_id(value: Any) -> str:
    if not isinstance(value, str) or not ITEM_ID.match(value):
        raise ApiError(400, "ID is invalid", "id")
    return value


def new_item(body: Record, *, item_id: str, now: int) -> Record:
    _check_options(body)
    fields.required("name", body.get("name"))
    values = {name: NORMALISERS[name](value) for name, value in body.items() if name in NORMALISERS}
    return {"id": item_id, "object": "item", **DEFAULTS, **values, "created_at": now, "updated_at": now}


def updated_item(record: Record, body: Record, *, now: int) -> tuple[Record, Record]:
    """The item after a PATCH (create-only fields ignored) and the old values that changed."""
    _check_options(body)
    values = {name: NORMALISERS[name](value) for name, value in body.items() if name not in CREATE_ONLY}
    changed = {**record, **values}
    previous = fields.changes(record, changed, UNTRACKED)
    if previous:
        changed["updated_at"] = now
        return changed, previous
    return record, {}


# --- hooks on an account ------------------------------------------------------------------------------
def create(account: Account, body: Record) -> Record:
    """A new item; a given id may be an archived item's, which the new one replaces."""
    table = account.tables["items"]
    if "id" in body:
        item_id = valid_id(body["id"])
        if item_id in table and item_id not in account.archived_item_ids:
            raise ApiError(400, f"An item already exists with ID: {item_id}", "id")
    else:
        item_id = next(i for i in iter(lambda: generated_id(account.random), None) if i not in table)
    record = new_item(body, item_id=item_id, now=account.now())
    account.archived_item_ids.discard(item_id)
    return record


def update(account: Account, record: Record, body: Record) -> tuple[Record, Record]:
    return updated_item(record, body, now=account.now())


def scope(account: Account, records: list[Record], query: QueryParams) -> list[Record]:
    """Live items, or with `archived=1` (or `filter[archived]=1`) the archived ones."""
    wanted = (query.get("archived") or query.get("filter[archived]") or "0").lower() in ("1", "true")
    return [record for record in records if (record["id"] in account.archived_item_ids) == wanted]


def archive(account: Account, record: Record) -> None:
    """DELETE archives: the item keeps answering GET by id, and only the archived listing shows it."""
    account.archived_item_ids.add(record["id"])
