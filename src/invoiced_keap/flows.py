"""The three flows as data: which records belong to them and how their fields map. No I/O.

    flow       Invoiced                                      Keap      field rules (profile "default")
    companies  customer, type company/government/non_profit  company   name, email, phone, address
               (or no type)
    contacts   customer, type person                         contact   name (split/joined), email (EMAIL1),
                                                                       phone (PHONE1), address (BILLING)
    products   item                                          product   name, description

Profile "spec" keeps exactly the specification's table: companies `name`, contacts nothing (link only),
products `name` and `description`. The configuration file may add or drop rules per flow:
`build_flows("default", {"companies": {"drop": ["phone"], "add": [{"name": "website",
"invoiced": "website_url", "keap": "website"}]}})`; a string in `add` names a rule of the flow's catalogue,
a table maps one Invoiced text field to one top-level Keap text field.

A `FieldRule` is one field group. Its *neutral value* (str, None, or a dict of those; JSON-ready) is
what both sides are compared in and what the per-side shadows store: `rule.value(side, record)`.
`rule.write(side, value, current_record) -> Mapped` gives the fields to send to that side (for Keap,
top-level fields: the keys are the update_mask), merged into the current record where Keap keeps
several values in one field. `to_keap` / `to_invoiced` compose the two across sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping, Sequence

from invoiced_keap import mapping
from invoiced_keap.mapping import KeapPlace, Mapped, Record

Side = Literal["invoiced", "keap"]
SIDES: tuple[Side, Side] = ("invoiced", "keap")
Value = Any  # str | None | dict[str, str | None]


def other_side(side: Side) -> Side:
    return "keap" if side == "invoiced" else "invoiced"


def is_blank(value: Value) -> bool:
    """An empty neutral value: None, or a dict with nothing in it."""
    if isinstance(value, Mapping):
        return not any(value.values())
    return value is None


@dataclass(frozen=True)
class FieldRule:
    """One field group: a set of Invoiced fields <-> a set of top-level Keap fields.

    `required` marks a value that neither system accepts empty (names): a clear is never written,
    it is reported instead. `blank` says when a value is empty for "an empty value never wins".
    """

    name: str
    invoiced_fields: tuple[str, ...]
    keap_fields: tuple[str, ...]
    invoiced_value: Callable[[Record], Value]
    keap_value: Callable[[Record], Value]
    invoiced_write: Callable[[Value, Record], Mapped]
    keap_write: Callable[[Value, Record], Mapped]
    required: bool = False
    blank: Callable[[Value], bool] = is_blank

    def value(self, side: Side, record: Record) -> Value:
        return self.invoiced_value(record) if side == "invoiced" else self.keap_value(record)

    def write(self, side: Side, value: Value, record: Record) -> Mapped:
        return self.invoiced_write(value, record) if side == "invoiced" else self.keap_write(value, record)

    def to_keap(self, invoiced_record: Record, keap_record: Record | None = None) -> Mapped:
        return self.keap_write(self.invoiced_value(invoiced_record), keap_record or {})

    def to_invoiced(self, keap_record: Record, invoiced_record: Record | None = None) -> Mapped:
        return self.invoiced_write(self.keap_value(keap_record), invoiced_record or {})


# --- rule constructors -----------------------------------------------------------------------------------

def _limited(field_name: str, value: str | None, limit: int | None, label: str) -> Mapped:
    cut, warnings = mapping.truncate(value, limit, label) if limit else (value, ())
    return Mapped({field_name: cut}, warnings)


def text_rule(name: str, invoiced_field: str, keap_field: str, *, required: bool = False,
              invoiced_limit: int | None = None, keap_limit: int | None = None) -> FieldRule:
    """One Invoiced text field <-> one top-level Keap text field."""
    return FieldRule(
        name=name,
        invoiced_fields=(invoiced_field,),
        keap_fields=(keap_field,),
        invoiced_value=lambda record: mapping.text(record.get(invoiced_field)),
        keap_value=lambda record: mapping.text(record.get(keap_field)),
        invoiced_write=lambda value, _: _limited(invoiced_field, value, invoiced_limit, f"invoiced {invoiced_field}"),
        keap_write=lambda value, _: _limited(keap_field, value, keap_limit, f"keap {keap_field}"),
        required=required,
    )


def place_text_rule(name: str, invoiced_field: str, place: KeapPlace, key: str, keap_limit: int) -> FieldRule:
    """One Invoiced text field <-> one key of a Keap sub-object (`email_address.email`, a PHONE1 slot's number)."""

    def keap_write(value: Value, record: Record) -> Mapped:
        cut, warnings = mapping.truncate(value, keap_limit, f"keap {place.key}[{place.slot}].{key}")
        return Mapped(place.write(record, {key: cut}), warnings)

    return FieldRule(
        name=name,
        invoiced_fields=(invoiced_field,),
        keap_fields=(place.key,),
        invoiced_value=lambda record: mapping.text(record.get(invoiced_field)),
        keap_value=lambda record: mapping.text((place.read(record) or {}).get(key)),
        invoiced_write=lambda value, _: Mapped({invoiced_field: value}),
        keap_write=keap_write,
    )


def address_rule(place: KeapPlace) -> FieldRule:
    """Invoiced address1..country <-> a Keap address object or BILLING slot (see `mapping.Address`)."""

    def keap_write(value: Value, record: Record) -> Mapped:
        fields, warnings = mapping.keap_address_fields(value, f"keap {place.key}[{place.slot}]")
        return Mapped(place.write(record, fields), warnings)

    return FieldRule(
        name="address",
        invoiced_fields=("address1", "address2", "city", "state", "postal_code", "country"),
        keap_fields=(place.key,),
        invoiced_value=mapping.invoiced_address,
        keap_value=lambda record: mapping.keap_address(place.read(record)),
        invoiced_write=lambda value, _: Mapped(mapping.invoiced_address_fields(value)),
        keap_write=keap_write,
        blank=mapping.is_blank_address,
    )


def person_name_rule() -> FieldRule:
    """Invoiced `name` <-> Keap `given_name` + `family_name`, split on the way in and joined on the way out."""

    def keap_write(value: Value, _: Record) -> Mapped:
        given, family = mapping.split_name(value)
        given, given_cut = mapping.truncate(given, mapping.GIVEN_NAME_LIMIT, "keap given_name")
        family, family_cut = mapping.truncate(family, mapping.FAMILY_NAME_LIMIT, "keap family_name")
        return Mapped({"given_name": given, "family_name": family}, given_cut + family_cut)

    return FieldRule(
        name="name",
        invoiced_fields=("name",),
        keap_fields=("given_name", "family_name"),
        invoiced_value=lambda record: mapping.join_name(*mapping.split_name(record.get("name"))),
        keap_value=lambda record: mapping.join_name(record.get("given_name"), record.get("family_name")),
        invoiced_write=lambda value, _: _limited("name", value, mapping.INVOICED_NAME_LIMIT, "invoiced name"),
        keap_write=keap_write,
        required=True,
    )


# --- create-only fields ------------------------------------------------------------------------------

def _customer_of_type(customer_type: str) -> Callable[[Record], Mapped]:
    return lambda _: Mapped({"type": customer_type})


def _nothing(_: Record) -> Mapped:
    return Mapped({})


def _keap_product_extras(item: Record) -> Mapped:
    """Keap v2 requires `price` (minor units) and `short_description` on create; `sku` carries the item id."""
    return Mapped({
        "sku": str(item["id"]),
        "price": mapping.minor_units(item.get("unit_cost") or 0, item["currency"]),
        "short_description": mapping.text(item.get("name")),
    })


def _invoiced_item_extras(product: Record) -> Mapped:
    price = product.get("price") or {}
    if price.get("amount") is None or not price.get("currency_code"):
        return Mapped({})
    currency = price["currency_code"]
    return Mapped({"unit_cost": mapping.major_units(price["amount"], currency), "currency": currency.lower()})


# --- the flows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    """One flow: the records on each side, the field rules, and the fields that are set on create only.

    `metadata_key` is the Invoiced metadata key that records the linked Keap id.
    """

    name: str
    invoiced_object: str
    keap_object: str
    metadata_key: str
    rules: tuple[FieldRule, ...]
    keap_create: Callable[[Record], Mapped] = _nothing
    invoiced_create: Callable[[Record], Mapped] = _nothing
    customer_types: frozenset[str] = field(default_factory=frozenset)

    def rule(self, name: str) -> FieldRule:
        return next(rule for rule in self.rules if rule.name == name)


COMPANY_EMAIL = KeapPlace("email_address", "EMAIL1")
COMPANY_PHONE = KeapPlace("phone_number", "PHONE1")
COMPANY_ADDRESS = KeapPlace("address")
CONTACT_EMAIL = KeapPlace("email_addresses", "EMAIL1", in_array=True)
CONTACT_PHONE = KeapPlace("phone_numbers", "PHONE1", in_array=True)
CONTACT_ADDRESS = KeapPlace("addresses", "BILLING", in_array=True)

ORGANISATION_TYPES = frozenset({"company", "government", "non_profit"})
PERSON_TYPES = frozenset({"person"})

CATALOGUE: dict[str, Flow] = {
    "companies": Flow(
        name="companies", invoiced_object="customer", keap_object="company", metadata_key="keap_company_id",
        customer_types=ORGANISATION_TYPES,
        invoiced_create=_customer_of_type("company"),
        rules=(
            text_rule("name", "name", "company_name", required=True, invoiced_limit=mapping.INVOICED_NAME_LIMIT),
            place_text_rule("email", "email", COMPANY_EMAIL, "email", mapping.EMAIL1_LIMIT),
            place_text_rule("phone", "phone", COMPANY_PHONE, "number", mapping.PHONE1_LIMIT),
            address_rule(COMPANY_ADDRESS),
        ),
    ),
    "contacts": Flow(
        name="contacts", invoiced_object="customer", keap_object="contact", metadata_key="keap_contact_id",
        customer_types=PERSON_TYPES,
        invoiced_create=_customer_of_type("person"),
        rules=(
            person_name_rule(),
            place_text_rule("email", "email", CONTACT_EMAIL, "email", mapping.EMAIL1_LIMIT),
            place_text_rule("phone", "phone", CONTACT_PHONE, "number", mapping.PHONE1_LIMIT),
            address_rule(CONTACT_ADDRESS),
        ),
    ),
    "products": Flow(
        name="products", invoiced_object="item", keap_object="product", metadata_key="keap_product_id",
        keap_create=_keap_product_extras,
        invoiced_create=_invoiced_item_extras,
        rules=(
            text_rule("name", "name", "name", required=True),
            text_rule("description", "description", "description"),
        ),
    ),
}

PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    "spec": {"companies": ("name",), "contacts": (), "products": ("name", "description")},
    "default": {name: tuple(rule.name for rule in flow.rules) for name, flow in CATALOGUE.items()},
}

RuleSpec = str | Mapping[str, str]
Overrides = Mapping[str, Mapping[str, Sequence[RuleSpec]]]


def _rule_from_config(flow: Flow, spec: RuleSpec) -> FieldRule:
    if isinstance(spec, str):
        try:
            return CATALOGUE[flow.name].rule(spec)
        except StopIteration:
            raise ValueError(f"flow {flow.name!r} has no rule {spec!r}") from None
    missing = {"name", "invoiced", "keap"} - set(spec)
    if missing:
        raise ValueError(f"rule {dict(spec)!r} in flow {flow.name!r} lacks {sorted(missing)}")
    return text_rule(spec["name"], spec["invoiced"], spec["keap"])


def build_flows(profile: str = "default", overrides: Overrides | None = None) -> dict[str, Flow]:
    """The flows of a profile, with the configuration's `add` / `drop` lists applied per flow."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    overrides = overrides or {}
    unknown = set(overrides) - set(CATALOGUE)
    if unknown:
        raise ValueError(f"unknown flow(s) in configuration: {sorted(unknown)}")
    flows = {}
    for name, flow in CATALOGUE.items():
        chosen = PROFILES[profile][name]
        override = overrides.get(name, {})
        rules = [flow.rule(rule_name) for rule_name in chosen]
        rules += [_rule_from_config(flow, spec) for spec in override.get("add", ())]
        dropped = set(override.get("drop", ()))
        rules = [rule for rule in rules if rule.name not in dropped]
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"flow {name!r} has duplicate rules: {names}")
        flows[name] = replace(flow, rules=tuple(rules))
    return flows


# --- flow membership -------------------------------------------------------------------------------

def flow_for_customer(customer: Record) -> Literal["companies", "contacts"]:
    """Persons go to contacts; companies, governments, non-profits and customers without a type to companies."""
    return "contacts" if customer.get("type") in PERSON_TYPES else "companies"


def moved_flow(linked_flow: str, customer: Record) -> str | None:
    """The flow a linked customer now belongs to, if its type change moved it out of `linked_flow`.

    run.py closes the old link (leaving the old Keap record alone) and matches/creates in the new flow.
    """
    current = flow_for_customer(customer)
    return current if current != linked_flow else None
