"""The flows, each one declaration: what it syncs on each side, how fields map, how records match. No I/O.

    flow       Invoiced                                      Keap      field rules (profile "default")
    companies  customer, type company/government/non_profit  company   name, email, phone, address
               (or no type)
    contacts   customer, type person                         contact   name (split/joined), email (EMAIL1),
                                                                       phone (PHONE1), address (BILLING)
    products   item                                          product   name, description

A `Flow` names its Invoiced `Resource` (endpoint, listings, how a delete shows) and `KeapObject`
(endpoint, incremental filter, id-list filter), which of the resource's records it owns (`belongs`),
its field rules, the fields set on create only, its match and adoption keys (`keys.MatchKey`), the
Invoiced metadata key that carries the Keap id (how `relink` rebuilds links), and its watermark names
(`mark`, namespaced by flow). The Keap fields a pass reads (`keap_fields`) are derived from the rules
and keys, and checked against the object's v2 properties when flows are built. The engine reads only
the declaration. Profile "spec" keeps exactly the specification's table; the configuration may `add`
and `drop` rules per flow (`build_flows`).

A `FieldRule` is one field group. Its *neutral value* (str, None, or a dict of those; JSON-ready) is
what both sides are compared in and what the per-side shadows store: `rule.value(side, record)`.
`rule.write(side, value, current_record) -> Mapped` gives the fields to send to that side (for Keap,
top-level fields: the keys are the update_mask), merged into the current record where Keap keeps
several values in one field, and what it could not carry exactly (`mapping.LossyCarry`). `rule.parts(value)`
splits a value into the parts a user edits one by one (a name's given and family name, an address's lines), so
a write-back merges parts instead of overwriting the whole group (`engine.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence

from invoiced_keap import mapping
from invoiced_keap.connectors.invoiced import CONTACT, CUSTOMER, ITEM, Resource
from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, PRODUCTS, KeapObject
from invoiced_keap.keys import MatchKey, contact_identity, email_key, emails_key, name_key, sku_key
from invoiced_keap.mapping import KeapPlace, Mapped, Record, Side

SIDES: tuple[Side, Side] = ("invoiced", "keap")
NAME_RULE = "name"
"""The rule of a record's name: a shadow's value under it is the name the state knows."""
Value = Any  # str | None | dict[str, str | None]


@dataclass(frozen=True)
class Shadow:
    """A side's record as last read or written: its neutral value per rule (`values`), its own update time as
    the API gave it (`updated`: Invoiced epoch seconds, Keap ISO text), and, where a later write merges into
    it, its raw mapped fields (`record`)."""

    values: dict[str, Value]
    updated: str | int | float | None = None
    record: dict[str, Any] | None = None


def other_side(side: Side) -> Side:
    return "keap" if side == "invoiced" else "invoiced"


def whole(value: Value) -> dict[str, Value]:
    """A value's parts: a dict's own keys, or the value as one part."""
    return dict(value) if isinstance(value, Mapping) else {"": value}


def from_parts(parts: Mapping[str, Value]) -> Value:
    return parts[""] if set(parts) == {""} else dict(parts)


def is_blank(value: Value) -> bool:
    """An empty neutral value: None, or a dict with nothing in it."""
    if isinstance(value, Mapping):
        return not any(value.values())
    return value is None


@dataclass(frozen=True)
class FieldRule:
    """One field group: a set of Invoiced fields <-> a set of top-level Keap fields.

    `required` marks a value that neither system accepts empty (names): a clear is never written,
    it is reported instead. `blank` says when a value is empty for "an empty value never wins". `one_way`
    names the only side the value comes from (it wins every merge and conflict); the other side's edits of it
    are noted as lossy carries and never written back.
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
    parts: Callable[[Value], dict[str, Value]] = whole
    join: Callable[[Mapping[str, Value]], Value] = from_parts
    one_way: Side | None = None
    one_way_reason: str = ""

    def value(self, side: Side, record: Record) -> Value:
        return self.invoiced_value(record) if side == "invoiced" else self.keap_value(record)

    def write(self, side: Side, value: Value, record: Record) -> Mapped:
        return self.invoiced_write(value, record) if side == "invoiced" else self.keap_write(value, record)


# --- rule constructors -----------------------------------------------------------------------------------

def _limited(field_name: str, value: str | None, limit: int | None, side: Side) -> Mapped:
    cut, lossy = mapping.truncate(value, limit, side, field_name) if limit else (value, ())
    return Mapped({field_name: cut}, lossy)


def text_rule(name: str, invoiced_field: str, keap_field: str, *, required: bool = False,
              invoiced_limit: int | None = None, keap_limit: int | None = None) -> FieldRule:
    """One Invoiced text field <-> one top-level Keap text field."""
    return FieldRule(
        name=name,
        invoiced_fields=(invoiced_field,),
        keap_fields=(keap_field,),
        invoiced_value=lambda record: mapping.text(record.get(invoiced_field)),
        keap_value=lambda record: mapping.text(record.get(keap_field)),
        invoiced_write=lambda value, _: _limited(invoiced_field, value, invoiced_limit, "invoiced"),
        keap_write=lambda value, _: _limited(keap_field, value, keap_limit, "keap"),
        required=required,
    )


def place_text_rule(name: str, invoiced_field: str, place: KeapPlace, key: str, keap_limit: int) -> FieldRule:
    """One Invoiced text field <-> one key of a Keap sub-object (`email_address.email`, a PHONE1 slot's number).
    A value longer than Keap's limit is left out (noted): a cut phone number or email address is a wrong one."""

    def keap_write(value: Value, record: Record) -> Mapped:
        kept, lossy = mapping.leave_out(value, keap_limit, "keap", f"{place.key}[{place.slot}].{key}")
        return Mapped(place.write(record, {key: kept}), lossy)

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
        fields, lossy = mapping.keap_address_fields(value, f"{place.key}[{place.slot}]" if place.slot else place.key)
        return Mapped(place.write(record, fields), lossy)

    return FieldRule(
        name="address",
        invoiced_fields=("address1", "address2", "city", "state", "postal_code", "country"),
        keap_fields=(place.key,),
        invoiced_value=mapping.invoiced_address,
        keap_value=lambda record: mapping.keap_address(place.read(record)),
        invoiced_write=lambda value, record: Mapped(mapping.invoiced_address_fields(value, record)),
        keap_write=keap_write,
        blank=mapping.is_blank_address,
        parts=mapping.address_parts,
        join=mapping.address_from_parts,
    )


def person_name_rule() -> FieldRule:
    """Invoiced `name` <-> Keap `given_name` + `family_name`, split on the way in and joined on the way out;
    its parts are the given and the family name."""

    def keap_write(value: Value, _: Record) -> Mapped:
        given, family = mapping.split_name(value)
        given, given_cut = mapping.truncate(given, mapping.GIVEN_NAME_LIMIT, "keap", "given_name")
        family, family_cut = mapping.truncate(family, mapping.FAMILY_NAME_LIMIT, "keap", "family_name")
        return Mapped({"given_name": given, "family_name": family}, given_cut + family_cut)

    def parts(value: Value) -> dict[str, Value]:
        given, family = mapping.split_name(value)
        return {"given": given, "family": family}

    return FieldRule(
        name="name",
        invoiced_fields=("name",),
        keap_fields=("given_name", "family_name"),
        invoiced_value=lambda record: mapping.join_name(*mapping.split_name(record.get("name"))),
        keap_value=lambda record: mapping.join_name(record.get("given_name"), record.get("family_name")),
        invoiced_write=lambda value, record: _limited("name", mapping.name_as_written(value, record.get("name")),
                                                      mapping.INVOICED_NAME_LIMIT, "invoiced"),
        keap_write=keap_write,
        required=True,
        parts=parts,
        join=lambda parts: mapping.join_name(parts["given"], parts["family"]),
    )


def parent_rule(name: str, parent_field: str, keap_field: str, reason: str) -> FieldRule:
    """The Keap record a record hangs under (a contact's `company`) <- the Keap twin of its Invoiced parent (the
    `parent_field` the engine adds from the parent flow's link, `ParentLink`). One way: the Invoiced parent is
    set on create and never changes, so a Keap user's move or detach is noted (`reason`), not carried back."""

    def keap_id(record: Record) -> Value:
        return mapping.text(str((record.get(keap_field) or {}).get("id") or "")) if record.get(keap_field) else None

    return FieldRule(
        name=name,
        invoiced_fields=(parent_field,),
        keap_fields=(keap_field,),
        invoiced_value=lambda record: mapping.text(record.get(parent_field)),
        keap_value=keap_id,
        invoiced_write=lambda value, _: Mapped({}),
        keap_write=lambda value, _: Mapped({keap_field: {"id": value} if value else None}),
        one_way="invoiced",
        one_way_reason=reason,
    )


# --- create-only fields ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateExtras:
    """Fields a create sets besides the rules' (a customer's type, a product's price), mapped from the source
    record by `make`; `fields` names them, so that no configured rule writes one of them too."""

    fields: frozenset[str] = frozenset()
    make: Callable[[Record], Mapped] = lambda _: Mapped({})

    def __call__(self, record: Record) -> Mapped:
        return self.make(record)


def _customer_of_type(customer_type: str) -> CreateExtras:
    return CreateExtras(frozenset({"type"}), lambda _: Mapped({"type": customer_type}))


def keap_product_extras(keap_currency: str) -> CreateExtras:
    """Keap v2 requires `price` (minor units of the account's one currency, `mapping.keap_price`) and
    `short_description` on create; `sku` carries the item id."""

    def extras(item: Record) -> Mapped:
        price, lossy = mapping.keap_price(item.get("unit_cost"), item["currency"], keap_currency)
        return Mapped({"sku": str(item["id"]), "price": price, "short_description": mapping.text(item.get("name"))}, lossy)

    return CreateExtras(frozenset({"sku", "price", "short_description"}), extras)


def _invoiced_item_extras(product: Record) -> Mapped:
    price = product.get("price") or {}
    if price.get("amount") is None or not price.get("currency_code"):
        return Mapped({})
    currency = price["currency_code"]
    return Mapped({"unit_cost": mapping.major_units(price["amount"], currency), "currency": currency.lower()})


INVOICED_ITEM_EXTRAS = CreateExtras(frozenset({"unit_cost", "currency"}), _invoiced_item_extras)


# --- the flows ---------------------------------------------------------------------------------------

class KeapNeeds(NamedTuple):
    """A Keap create needs at least one of `fields`; without, Keap answers `refusal` (its documented rule)."""

    fields: tuple[str, ...]
    refusal: str


@dataclass(frozen=True)
class ParentLink:
    """A flow whose Invoiced records live under records of another flow (a company customer's contacts): the
    parent `flow`, the field of a child that names its Invoiced parent (`invoiced_parent`) and of a Keap child
    that names its Keap parent (`keap_parent`, an `{id}` object), and the fields the engine adds to each child
    from the parent flow's links: the Keap twin of the Invoiced parent (`keap_twin`), the Invoiced twin of the
    Keap parent (`invoiced_twin`)."""

    flow: str
    invoiced_parent: str
    keap_parent: str
    keap_twin: str
    invoiced_twin: str


@dataclass(frozen=True)
class Flow:
    """One flow, declared (see the module docstring). `adoption_keys` find, besides the match keys, the twin a
    create cut short may have made (`match.decide(adopting=True)`); `metadata_key` is the Invoiced metadata key
    that records the linked Keap id (stamped where a lost link could not be found again otherwise: `relink`
    pairs records by it, or, for a flow without one, by its first match key: a product's sku is its item id).
    `keap_needs`: what a Keap create needs (Keap's documented rules); a create without it is refused before it
    is sent (`keap_refusal`). `create_rules`: the rules a Keap create carries even where the flow syncs none
    of them (`create_only_rules`: a link-only profile still makes a twin Keap accepts and a person recognises);
    `keap_create` / `invoiced_create`: the create-only extras of each target side. `parent`: the flow whose
    links a nested flow's records hang under (`ParentLink`). `keap_belongs`: which unlinked Keap records of
    the object are the flow's to match or create from (two flows may share a Keap object), read with
    `keap_belongs_fields`."""

    name: str
    invoiced: Resource
    keap: KeapObject
    belongs: Callable[[Record], bool]
    metadata_key: str | None
    rules: tuple[FieldRule, ...]
    match_keys: tuple[MatchKey, ...]
    adoption_keys: tuple[MatchKey, ...] = ()
    create_rules: tuple[FieldRule, ...] = ()
    keap_create: CreateExtras = CreateExtras()
    invoiced_create: CreateExtras = CreateExtras()
    keap_needs: KeapNeeds | None = None
    parent: ParentLink | None = None
    keap_belongs: Callable[[Record], bool] = lambda _: True
    keap_belongs_fields: tuple[str, ...] = ()

    def keap_refusal(self, body: Record) -> str | None:
        """Keap's own refusal of a create `body` that has none of the `keap_needs` fields, or None."""
        needs = self.keap_needs
        if needs is None or any(body.get(name) for name in needs.fields):
            return None
        return needs.refusal

    def rule(self, name: str) -> FieldRule:
        return next(rule for rule in self.rules if rule.name == name)

    def record_type(self, side: Side) -> str:
        """What a record reference calls the flow's records of `side` (`invoiced:customer:2`, `keap:company:1`):
        the Invoiced resource, or the Keap object as its hooks name it."""
        return self.invoiced.name if side == "invoiced" else self.keap.hook_object

    def name_of(self, side: Side, record: Record) -> str | None:
        """A record's name for people, read from `side`'s raw fields by the flow's name rule (synced or create-only)."""
        rule = next((rule for rule in (*self.rules, *self.create_rules) if rule.name == NAME_RULE), None)
        return None if rule is None else rule.value(side, record)

    @property
    def create_only_rules(self) -> tuple[FieldRule, ...]:
        """The `create_rules` the flow does not sync: a Keap create carries them, nothing else reads them."""
        synced = {rule.name for rule in self.rules}
        return tuple(rule for rule in self.create_rules if rule.name not in synced)

    @property
    def keap_fields(self) -> tuple[str, ...]:
        """The Keap fields a read asks for: every field a rule or key uses, and the update time."""
        used = {name for rule in self.rules for name in rule.keap_fields}
        used |= {name for key in (*self.match_keys, *self.adoption_keys) for name in key.keap_fields}
        return tuple(sorted(used | set(self.keap_belongs_fields) | {"update_time"}))

    def mark(self, stream: Literal["invoiced", "events", "keap", "parents", "rules"]) -> str:
        """The watermark name of one of the flow's reads: `companies.invoiced`, `companies.events`, `companies.keap`;
        a nested flow's `<flow>.parents`: the newest parent link whose children it has read; `<flow>.rules`: the rules
        its linked pairs were last settled for (`planner.Planner`: a rule added since reads them once)."""
        return f"{self.name}.{stream}"

    def check(self) -> None:
        """Raise ValueError naming a Keap field that no v2 property of the flow's object has, or a field of either
        side that two rules (or a rule and a create-only field) would both write: one would undo the other."""
        unknown = sorted(set(self.keap_fields) - self.keap.properties)
        if unknown:
            raise ValueError(f"flow.{self.name}: Keap {self.keap.name} have no field {unknown[0]!r}; "
                             f"expected one of {sorted(self.keap.properties - {'id'})}")
        for side in SIDES:
            extras = self.invoiced_create if side == "invoiced" else self.keap_create
            owners = {name: "set on create (create-only)" for name in extras.fields}
            for rule, owner in [*((rule, f"used by the create-only rule {rule.name!r}") for rule in self.create_only_rules),
                                *((rule, f"mapped by rule {rule.name!r}") for rule in self.rules)]:
                for name in rule.invoiced_fields if side == "invoiced" else rule.keap_fields:
                    if name in owners:
                        raise ValueError(f"flow.{self.name}: rule {rule.name!r}: {side} = {name!r} is already "
                                         f"{owners[name]}; a field has one rule")
                    owners[name] = owner


COMPANY_EMAIL = KeapPlace("email_address", "EMAIL1")
COMPANY_PHONE = KeapPlace("phone_number", "PHONE1")
COMPANY_ADDRESS = KeapPlace("address")
CONTACT_EMAIL = KeapPlace("email_addresses", "EMAIL1", in_array=True, swaps=True)
CONTACT_PHONE = KeapPlace("phone_numbers", "PHONE1", in_array=True)
CONTACT_ADDRESS = KeapPlace("addresses", "BILLING", in_array=True)

ORGANISATION_TYPES = frozenset({"company", "government", "non_profit"})
PERSON_TYPES = frozenset({"person"})


def _is_person(customer: Record) -> bool:
    return customer.get("type") in PERSON_TYPES


COMPANY_NAME = text_rule("name", "name", "company_name", required=True, invoiced_limit=mapping.INVOICED_NAME_LIMIT)
CONTACT_NAME = person_name_rule()
CONTACT_EMAIL_RULE = place_text_rule("email", "email", CONTACT_EMAIL, "email", mapping.EMAIL1_LIMIT)
CONTACT_PHONE_RULE = place_text_rule("phone", "phone", CONTACT_PHONE, "number", mapping.PHONE1_LIMIT)
PRODUCT_NAME = text_rule("name", "name", "name", required=True)
CONTACT_ADDRESS_RULE = address_rule(CONTACT_ADDRESS)
COMPANY_OF_CONTACT = ParentLink("companies", invoiced_parent="customer", keap_parent="company",
                                keap_twin="keap_company_id", invoiced_twin="invoiced_customer_id")
CONTACT_COMPANY_RULE = parent_rule(
    "company", COMPANY_OF_CONTACT.keap_twin, COMPANY_OF_CONTACT.keap_parent,
    "an Invoiced contact cannot move to another customer; the Keap contact's company was changed in Keap and is left so")


def _keap_parent(contact: Record) -> str | None:
    return str((contact.get("company") or {}).get("id") or "") or None

CATALOGUE: dict[str, Flow] = {
    "companies": Flow(
        name="companies", invoiced=CUSTOMER, keap=COMPANIES, metadata_key="keap_company_id",
        belongs=lambda customer: not _is_person(customer),  # organisations, and customers without a type
        invoiced_create=_customer_of_type("company"),
        keap_needs=KeapNeeds(("company_name",), "company_name is required"),
        create_rules=(COMPANY_NAME,),
        rules=(
            COMPANY_NAME,
            place_text_rule("email", "email", COMPANY_EMAIL, "email", mapping.EMAIL1_LIMIT),
            place_text_rule("phone", "phone", COMPANY_PHONE, "number", mapping.PHONE1_LIMIT),
            address_rule(COMPANY_ADDRESS),
        ),
        match_keys=(name_key("company_name", "name", "company_name"),),
        # a Keap user may rename the company a cut-short create made before the next pass adopts it
        adoption_keys=(email_key("email", "email", COMPANY_EMAIL),),
    ),
    "contacts": Flow(
        name="contacts", invoiced=CUSTOMER, keap=CONTACTS, metadata_key="keap_contact_id",
        belongs=_is_person,
        invoiced_create=_customer_of_type("person"),
        # infusionsoft-php issue 140; Keap v2 create: "at least one item in email_addresses, phone_numbers, or addresses"
        keap_needs=KeapNeeds(("email_addresses", "phone_numbers", "addresses"),
                             "Contact must contain at least one email address, phone number or address"),
        create_rules=(CONTACT_NAME, CONTACT_EMAIL_RULE, CONTACT_PHONE_RULE),
        rules=(
            CONTACT_NAME,
            CONTACT_EMAIL_RULE,
            CONTACT_PHONE_RULE,
            CONTACT_ADDRESS_RULE,
        ),
        match_keys=(emails_key("email", "email", "email_addresses"),),
        adoption_keys=(contact_identity("name+phone", CONTACT_NAME, CONTACT_PHONE_RULE),
                       contact_identity("name+street", CONTACT_NAME, CONTACT_ADDRESS_RULE)),
        keap_belongs=lambda contact: not _keap_parent(contact),  # a Keap contact of a company is a company's person
        keap_belongs_fields=("company",),
    ),
    "products": Flow(
        name="products", invoiced=ITEM, keap=PRODUCTS, metadata_key=None,  # the item id travels as the sku
        belongs=lambda _: True,
        keap_create=keap_product_extras("USD"),
        invoiced_create=INVOICED_ITEM_EXTRAS,
        keap_needs=KeapNeeds(("name",), "name is required"),  # CreateProductRequest_Detail.required
        create_rules=(PRODUCT_NAME,),
        rules=(
            PRODUCT_NAME,
            text_rule("description", "description", "description"),
        ),
        match_keys=(sku_key(), name_key("name", "name", "name")),
    ),
    "company_contacts": Flow(
        name="company_contacts", invoiced=CONTACT, keap=CONTACTS, metadata_key=None,  # Invoiced contacts have no metadata
        belongs=lambda contact: bool(contact.get(COMPANY_OF_CONTACT.keap_twin)),  # under a customer with a Keap company
        parent=COMPANY_OF_CONTACT,
        invoiced_create=CreateExtras(frozenset({"customer"}), lambda contact: Mapped(
            {"customer": contact[COMPANY_OF_CONTACT.invoiced_twin]} if contact.get(COMPANY_OF_CONTACT.invoiced_twin) else {})),
        keap_needs=KeapNeeds(("email_addresses", "phone_numbers", "addresses"),
                             "Contact must contain at least one email address, phone number or address"),
        create_rules=(CONTACT_NAME, CONTACT_EMAIL_RULE, CONTACT_PHONE_RULE, CONTACT_COMPANY_RULE),
        rules=(
            CONTACT_NAME,
            CONTACT_EMAIL_RULE,
            CONTACT_PHONE_RULE,
            text_rule("title", "title", "job_title", keap_limit=mapping.KEAP_TEXT_LIMITS["contacts"]["job_title"]),
            CONTACT_ADDRESS_RULE,
            CONTACT_COMPANY_RULE,
        ),
        match_keys=(emails_key("email", "email", "email_addresses"),),
        adoption_keys=(contact_identity("name+phone", CONTACT_NAME, CONTACT_PHONE_RULE),
                       contact_identity("name+street", CONTACT_NAME, CONTACT_ADDRESS_RULE)),
        # a Keap contact of a linked company (its Invoiced twin added by the engine); of an unlinked one: no one's
        keap_belongs=lambda contact: bool(contact.get(COMPANY_OF_CONTACT.invoiced_twin)),
        keap_belongs_fields=("company",),
    ),
}

PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    "spec": {"companies": ("name",), "contacts": (), "products": ("name", "description")},
    "default": {name: tuple(rule.name for rule in flow.rules) for name, flow in CATALOGUE.items()},
}
"""A profile's rules per flow; the flows it names are the ones it runs unless `flows` is configured (a flow it
leaves out, configured on, syncs its catalogue rules)."""


def profile_flows(profile: str) -> list[str]:
    """The flows a profile runs by default, in catalogue order (`spec` leaves out `company_contacts`)."""
    return [name for name in CATALOGUE if name in PROFILES[profile]]

RuleSpec = str | Mapping[str, object]
Overrides = Mapping[str, Mapping[str, Sequence[RuleSpec]]]
ADDED_RULE_KEYS = ("name", "invoiced", "keap")


def _rule_from_config(flow: Flow, spec: RuleSpec) -> FieldRule:
    """A catalogued rule by name, or an added one: one free-text field of each side (`Resource.text_fields`,
    `KeapObject.text_properties`); ValueError names the setting and the value that is wrong."""
    where = f"flow.{flow.name}.add"
    if isinstance(spec, str):
        try:
            return CATALOGUE[flow.name].rule(spec)
        except StopIteration:
            raise ValueError(f"{where}: flow {flow.name!r} has no rule {spec!r}") from None
    unknown = sorted(set(spec) - set(ADDED_RULE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} in rule {dict(spec)!r}; expected {', '.join(ADDED_RULE_KEYS)}")
    missing = sorted(set(ADDED_RULE_KEYS) - set(spec))
    if missing:
        raise ValueError(f"{where}: rule {dict(spec)!r} lacks {missing}")
    for key in ADDED_RULE_KEYS:
        if not isinstance(spec[key], str) or not spec[key]:
            raise ValueError(f"{where}: {key} = {spec[key]!r}: expected a field name")
    name, invoiced, keap = (str(spec[key]) for key in ADDED_RULE_KEYS)
    if invoiced not in flow.invoiced.text_fields:
        raise ValueError(f"{where}: invoiced = {invoiced!r} is no free-text field of an Invoiced {flow.invoiced.name}; "
                         f"expected one of {sorted(flow.invoiced.text_fields)}")
    if keap not in flow.keap.text_properties:
        raise ValueError(f"{where}: keap = {keap!r} is no free-text field of Keap {flow.keap.name}; "
                         f"expected one of {sorted(flow.keap.text_properties)}")
    return text_rule(name, invoiced, keap, keap_limit=mapping.KEAP_TEXT_LIMITS.get(flow.keap.name, {}).get(keap))


def _check_drop(flow: Flow, rules: Sequence[FieldRule], dropped: set[str]) -> None:
    """`drop` names no rule the flow cannot go without: the one that puts a record under its parent's twin (a
    company's person is one because of it); ValueError names the setting and the rule."""
    for rule in rules:
        if rule.name in dropped and flow.parent is not None and flow.parent.keap_parent in rule.keap_fields:
            raise ValueError(f"flow.{flow.name}.drop: {rule.name!r} cannot be dropped: it attaches each record to its "
                             f"{flow.parent.flow} twin in Keap, which is what flow {flow.name!r} is")


def build_flows(profile: str = "default", overrides: Overrides | None = None, keap_currency: str = "USD") -> dict[str, Flow]:
    """The flows of a profile, with the configuration's `add` / `drop` lists applied per flow, each checked
    (`Flow.check`), products priced in `keap_currency`; ValueError names the profile, flow, rule or field that is wrong."""
    if profile not in PROFILES:
        raise ValueError(f"profile: unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    overrides = overrides or {}
    unknown = set(overrides) - set(CATALOGUE)
    if unknown:
        raise ValueError(f"flow: unknown flow(s) in configuration: {sorted(unknown)}")
    flows = {}
    for name, flow in CATALOGUE.items():
        override = overrides.get(name, {})
        rules = [flow.rule(rule_name) for rule_name in PROFILES[profile].get(name, PROFILES["default"][name])]
        rules += [_rule_from_config(flow, spec) for spec in override.get("add", ())]
        dropped = set(override.get("drop", ()))
        _check_drop(flow, rules, dropped)
        rules = [rule for rule in rules if rule.name not in dropped]
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"flow.{name}: duplicate rules: {names}")
        flows[name] = replace(flow, rules=tuple(rules))
        if flow.keap == PRODUCTS:
            flows[name] = replace(flows[name], keap_create=keap_product_extras(mapping.currency_code(keap_currency)))
        flows[name].check()
    return flows


def sharing_keap_object(flow: Flow, flows: Mapping[str, Flow] = CATALOGUE) -> list[Flow]:
    """The flows of `flows` on `flow`'s Keap object, itself included (the contact flows share Keap contacts: a
    Keap record is linked in one of them at most)."""
    return [other for other in flows.values() if other.keap == flow.keap]


def flow_of(resource: Resource, record: Record, flows: Mapping[str, Flow] = CATALOGUE) -> str | None:
    """The flow of `flows` that owns this record of `resource` now (a customer's type decides between
    companies and contacts); None when none of them does."""
    return next((name for name, flow in flows.items() if flow.invoiced == resource and flow.belongs(record)), None)
