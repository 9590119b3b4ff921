"""The three v2 record types as data (body models, filters, orderings, hidden fields) and their operations.

Operations take the store and plain values and raise `KeapError`; `records.py` is only the HTTP edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from invoiced_keap.emulators.keap.bodies import (
    Body,
    CompanyRequest,
    ContactRequest,
    CreateProductRequest,
    UpdateProductRequest,
    parse_body,
)
from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.emulators.keap.listing import FilterField, apply_filter, page, parse_filter, sort_records
from invoiced_keap.emulators.keap.store import Record, RecordStore

READ_ONLY = frozenset({"id", "create_time", "update_time", "account_id", "created_by", "last_updated_by", "groups"})
INVENTORY_UPDATES = ("inventory_limit", "out_of_stock_enabled", "email_for_inventory_notifications")
CURRENCY = "USD"  # an emulated account bills in one currency, as a Keap account does
# properties made of a record's tags: contacts' `tag_ids`, and `groups`, the spec's "Comma-delimited list of tag IDs"
# (described on companies; taken to mean the same on contacts [inference]). They are shown only when named in
# `fields` [inference: the spec lists them among the properties `fields` may name].
TAG_PROPERTIES = {"companies": frozenset({"groups"}), "contacts": frozenset({"tag_ids", "groups"})}


def one(path: str) -> Callable[[Record], Iterable[Any]]:
    """Filter values from a dotted path into a nested object (`email_address.email`)."""

    def values(record: Record) -> Iterable[Any]:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return [value]

    return values


def each(array: str, key: str) -> Callable[[Record], Iterable[Any]]:
    """Filter values from every item of an array field (`email_addresses[].email`)."""
    return lambda record: [item.get(key) for item in record.get(array) or []]


def primary_address(key: str) -> Callable[[Record], Iterable[Any]]:
    """A contact's primary address (Contact.City/State) is its BILLING address."""
    return lambda record: [a.get(key) for a in record.get("addresses") or [] if a.get("field") == "BILLING"]


def sort_key(path: str) -> Callable[[Record], Any]:
    return lambda record: next(iter(one(path)(record)))


def first_email(record: Record) -> Any:
    emails = record.get("email_addresses") or []
    return min((e["field"], e["email"].casefold()) for e in emails)[1] if emails else None


@dataclass(frozen=True)
class Resource:
    collection: str
    noun: str
    create_model: type[Body]
    update_model: type[Body]
    mask_fields: frozenset[str]
    filters: dict[str, FilterField]
    order_keys: dict[str, Callable[[Record], Any]]
    hidden_in_list: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)

    # --- operations ------------------------------------------------------------------------
    def create(self, store: RecordStore, body: Any) -> Record:
        values = self.with_custom_fields(store, parse_body(self.create_model, body))
        self.check_create(store, values)
        return self.render(store, store.insert(self.collection, {**self.defaults, **values}))

    def get(self, store: RecordStore, record_id: str, fields: list[str] | None = None) -> Record:
        return self.chosen(store, self.render(store, self.stored(store, record_id)), fields)

    def update(self, store: RecordStore, record_id: str, body: Any, mask: list[str] | None) -> Record:
        current = self.stored(store, record_id)
        values = self.with_custom_fields(store, parse_body(self.update_model, body))
        self.check_references(store, values)
        return self.render(store, store.replace(self.collection, self.merged(current, values, mask)))

    def delete(self, store: RecordStore, record_id: str) -> None:
        if not store.delete(self.collection, record_id):
            raise self.not_found(record_id)

    def list(
        self,
        store: RecordStore,
        *,
        filter_text: str | None,
        order_by: str | None,
        page_size: int,
        page_token: str | None,
        fields: list[str] | None,
    ) -> tuple[list[Record], str]:
        conditions = parse_filter(filter_text, self.filters)
        chosen = store.view(
            self.collection,
            (filter_text, order_by),
            lambda records: sort_records(apply_filter(records, conditions, self.filters), order_by, self.order_keys),
        )
        records, next_token = page(chosen, page_size, page_token)
        rendered = [self.render(store, record) for record in records]  # new objects: `chosen` is the store's
        if fields is None:
            return [strip(record, self.hidden_in_list) for record in rendered], next_token
        return [self.chosen(store, record, fields) for record in rendered], next_token

    def model(self, store: RecordStore) -> Record:
        """`ObjectModel`: the object's custom fields, and the properties shown only when named in `fields`."""
        optional = self.hidden_in_list | TAG_PROPERTIES.get(self.collection, frozenset())
        return {"custom_fields": store.custom_fields.listed(self.collection), "optional_properties": sorted(optional)}

    # --- rules -----------------------------------------------------------------------------
    def stored(self, store: RecordStore, record_id: str) -> Record:
        record = store.get(self.collection, record_id)
        if record is None:
            raise self.not_found(record_id)
        return record

    def not_found(self, record_id: str) -> KeapError:
        return KeapError(404, f"{self.noun} with id {record_id} not found", resource=self.noun.lower())

    def merged(self, current: Record, values: Record, mask: list[str] | None) -> Record:
        """PATCH: without a mask, the fields given; with one, exactly the masked fields (absent ones cleared).

        Nested objects and arrays are replaced wholesale, as Keap documents for contact arrays.
        """
        if mask is None:
            changes = values
        else:
            unknown = sorted(set(mask) - self.mask_fields)
            if unknown:
                raise KeapError(400, f"Invalid update_mask field(s): {', '.join(unknown)}")
            changes = {name: values.get(name) for name in mask if name not in READ_ONLY}
        return self.apply_changes(current, changes)

    def apply_changes(self, current: Record, changes: Record) -> Record:
        """Products take inventory settings flat in an update and keep them under `inventory`."""
        result = {**current, **changes}
        inventory_changes = {name: result.pop(name) for name in INVENTORY_UPDATES if name in result}
        if inventory_changes:
            result["inventory"] = {**(current.get("inventory") or {}), **inventory_changes}
        return result

    def check_create(self, store: RecordStore, values: Record) -> None:
        if self.collection == "companies" and not values.get("company_name"):
            raise KeapError(400, "company_name is required")
        if self.collection == "contacts" and not any(
            values.get(name) for name in ("email_addresses", "phone_numbers", "addresses")
        ):
            raise KeapError(400, "Contact must contain at least one email address, phone number or address")
        self.check_references(store, values)

    def with_custom_fields(self, store: RecordStore, values: Record) -> Record:
        """Custom field values checked against the object's model, in their stored form; like the other arrays
        they replace the record's values wholesale (the spec says so for contacts; companies alike [inference])."""
        if values.get("custom_fields") is None:
            return values
        return {**values, "custom_fields": store.custom_fields.checked(self.collection, values["custom_fields"])}

    def check_references(self, store: RecordStore, values: Record) -> None:
        company = values.get("company")
        if company and store.get("companies", company["id"]) is None:
            raise KeapError(400, f"Company with id {company['id']} not found", resource="company")

    def render(self, store: RecordStore, record: Record) -> Record:
        """The stored record as Keap returns it: products' price as money, contacts' company with its name."""
        shown = dict(record)
        if self.collection == "products" and isinstance(shown.get("price"), int):
            shown["price"] = money(shown["price"])
        if self.collection == "contacts" and shown.get("company"):
            company = store.get("companies", shown["company"]["id"])
            shown["company"] = {"id": shown["company"]["id"], "company_name": (company or {}).get("company_name")}
        return without_nulls(shown)

    def chosen(self, store: RecordStore, record: Record, fields: list[str] | None) -> Record:
        """A rendered record cut to `fields` (None: as it is), with the tag properties `fields` names."""
        if fields is None:
            return record
        return select({**record, **tag_properties(store, self.collection, record["id"], fields)}, fields)


DUPLICATE_KEYS: dict[str, Callable[[Record], Any]] = {
    "Email": lambda contact: emails_of(contact),
    "EmailAndName": lambda contact: (emails_of(contact), name_of(contact)),
    "EmailAndNameAndCompany": lambda contact: (emails_of(contact), name_of(contact), (contact.get("company") or {}).get("id")),
}


def emails_of(contact: Record) -> frozenset[str]:
    return frozenset(item["email"].casefold() for item in contact.get("email_addresses") or [])


def name_of(contact: Record) -> tuple[str, str]:
    return ((contact.get("given_name") or "").casefold(), (contact.get("family_name") or "").casefold())


def is_duplicate(option: str, existing: Record, candidate: Record) -> bool:
    """Same key under the option; emails match when the two contacts share any address."""
    key = DUPLICATE_KEYS[option]
    mine, theirs = key(existing), key(candidate)
    if option == "Email":
        return bool(mine & theirs)
    return bool(mine[0] & theirs[0]) and mine[1:] == theirs[1:]


def create_contact(store: RecordStore, body: Any, duplicate_option: str | None) -> tuple[Record, bool]:
    """POST /v2/contacts: with `duplicate_option`, a matching contact is updated instead (answer: record, created)."""
    contacts = RESOURCES["contacts"]
    if duplicate_option is None:
        return contacts.create(store, body), True
    if duplicate_option not in DUPLICATE_KEYS:
        raise KeapError(400, f"Invalid duplicate_option {duplicate_option!r}; use one of {', '.join(DUPLICATE_KEYS)}")
    values = parse_body(contacts.create_model, body)
    if not emails_of(values):
        raise KeapError(400, f"duplicate_option {duplicate_option} needs an email address")
    match = next((c for c in store.records("contacts") if is_duplicate(duplicate_option, c, values)), None)
    if match is None:
        return contacts.create(store, body), True
    return contacts.update(store, match["id"], body, None), False


def money(minor_units: int) -> dict[str, Any]:
    return {
        "amount": minor_units,
        "currency_code": CURRENCY,
        "formatted_amount": f"${minor_units // 100:,}.{minor_units % 100:02d}",
    }


def without_nulls(value: Any) -> Any:
    """Keap leaves unset properties out rather than sending null (the spec's types are not nullable)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def strip(record: Record, hidden: frozenset[str]) -> Record:
    """Drop hidden properties; `a.b` names a property of the object under `a`."""
    shown = {key: value for key, value in record.items() if key not in hidden}
    for path in hidden:
        parent, _, child = path.partition(".")
        if child and isinstance(shown.get(parent), dict):
            shown[parent] = strip(shown[parent], frozenset({child}))
    return shown


def tag_properties(store: RecordStore, collection: str, record_id: str, fields: list[str]) -> Record:
    wanted = TAG_PROPERTIES.get(collection, frozenset()) & set(fields)
    tag_ids = sorted(store.tags_of(collection, record_id), key=int) if wanted else []
    values = {"tag_ids": tag_ids, "groups": ",".join(tag_ids) or None}
    return {name: values[name] for name in wanted if values[name] is not None}


def select(record: Record, fields: list[str] | None) -> Record:
    """`fields=a,b`: just those properties (and always `id`)."""
    if fields is None:
        return record
    wanted = set(fields) | {"id"}
    return {key: value for key, value in record.items() if key in wanted}


COMPANY_MASK = frozenset(CompanyRequest.model_fields) | READ_ONLY
CONTACT_MASK = frozenset(ContactRequest.model_fields) | READ_ONLY | {
    "links", "score_value", "tag_ids", "utm_parameters", "notes"
}
PRODUCT_MASK = frozenset(UpdateProductRequest.model_fields)

RESOURCES: dict[str, Resource] = {
    "companies": Resource(
        collection="companies",
        noun="Company",
        create_model=CompanyRequest,
        update_model=CompanyRequest,
        mask_fields=COMPANY_MASK,
        filters={
            "company_name": FilterField("exact", one("company_name")),
            "name": FilterField("prefix", one("company_name")),
            "email": FilterField("exact", one("email_address.email")),
            "city": FilterField("prefix", one("address.locality")),
            "state": FilterField("prefix", one("address.region")),
            "since_time": FilterField("since", one("update_time")),
            "until_time": FilterField("until", one("update_time")),
            "company_id": FilterField("number", one("id")),
        },
        order_keys={
            "id": lambda record: int(record["id"]),
            "create_time": sort_key("create_time"),
            "name": lambda record: (record.get("company_name") or "").casefold(),
            "email": lambda record: (sort_key("email_address.email")(record) or "").casefold(),
        },
        # the list_companies docs: these only come back when named in `fields`
        hidden_in_list=frozenset(
            {"notes", "fax_number", "address", "email_address", "phone_number", "update_time", "create_time", "custom_fields"}
        ),
    ),
    "contacts": Resource(
        collection="contacts",
        noun="Contact",
        create_model=ContactRequest,
        update_model=ContactRequest,
        mask_fields=CONTACT_MASK,
        filters={
            "email": FilterField("prefix", each("email_addresses", "email")),
            "given_name": FilterField("prefix", one("given_name")),
            "family_name": FilterField("prefix", one("family_name")),
            "middle_name": FilterField("prefix", one("middle_name")),
            "company_id": FilterField("exact", one("company.id")),
            "ids": FilterField("id_list", one("id")),
            "contact_ids": FilterField("id_list", one("id")),
            "start_update_time": FilterField("since", one("update_time")),
            "end_update_time": FilterField("until", one("update_time")),
            "city": FilterField("prefix", primary_address("locality")),
            "state": FilterField("prefix", primary_address("region")),
            "contact_id": FilterField("number", one("id")),
        },
        order_keys={
            "id": lambda record: int(record["id"]),
            "create_time": sort_key("create_time"),
            "update_time": sort_key("update_time"),
            "email": first_email,
        },
        # v1 leaves custom fields out of lists unless asked; assumed the same for v2 [inference]
        hidden_in_list=frozenset({"custom_fields", "social_accounts", "fax_numbers", "origin"}),
    ),
    "products": Resource(
        collection="products",
        noun="Product",
        create_model=CreateProductRequest,
        update_model=UpdateProductRequest,
        mask_fields=PRODUCT_MASK,
        filters={
            "name": FilterField("prefix", one("name")),
            "sku": FilterField("prefix", one("sku")),
            "description": FilterField("prefix", one("description")),
            "short_description": FilterField("prefix", one("short_description")),
            "product_id": FilterField("number", one("id")),
            "product_ids": FilterField("id_list", one("id")),
        },
        order_keys={
            "name": lambda record: (record.get("name") or "").casefold(),
            "sku": lambda record: (record.get("sku") or "").casefold(),
            "last_updated_time": sort_key("update_time"),
        },
        # RestV2Product_List has no inventory_count
        hidden_in_list=frozenset({"inventory.inventory_count"}),
        defaults={"active": True, "categories": [], "options": [], "subscription_plans": [], "has_legacy_image": False},
    ),
}
