"""Tags and tag categories, and tags applied to contacts and companies: the operations behind `tag_routes`.

Shapes are the v2 spec's (`Tag`, `TagCategory`, `ApplyTagsResponse`, `TaggedContact`, `TaggedCompany`,
`AppliedTag`), and so are the filters and orderings each listing documents. Where the spec is silent [inference]:
- a tag needs a name (v1's `CreateTag` requires one); tag names need not be unique (a category's request says
  "must be unique", a tag's does not), and a name is cut to 255 characters ("up to 255 characters will be saved");
- a tag's category must exist (400 otherwise, like a contact's company reference);
- applying a tag answers per contact with v1's words: SUCCESS, DUPLICATE (already tagged) or CONTACT_NOT_FOUND;
  an unknown tag is a 404 for the whole call; removing skips contacts that are missing or untagged;
- a company's tag answers 204 whether or not the company had it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invoiced_keap.emulators.keap.bodies import ApplyRemoveTagRequest, TagCategoryRequest, TagRequest, parse_body
from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.emulators.keap.listing import FilterField, ListQuery
from invoiced_keap.emulators.keap.resources import RESOURCES, each, first_email, one, sort_key, strip, without_nulls
from invoiced_keap.emulators.keap.store import RecordStore
from invoiced_keap.mapping import Record

TAG_NAME_MAX = 255
OrderKeys = dict[str, Callable[[Record], Any]]


def bounds(name: str) -> dict[str, FilterField]:
    """`since_<name>` and `until_<name>`: on or after / on or before a time."""
    return {f"since_{name}": FilterField("since", one(name)), f"until_{name}": FilterField("until", one(name))}


def text_key(path: str) -> Callable[[Record], Any]:
    return lambda row: (sort_key(path)(row) or "").casefold()


def number_key(path: str) -> Callable[[Record], Any]:
    value = sort_key(path)
    return lambda row: int(value(row)) if value(row) else None


TAG_FILTERS = {
    "name": FilterField("exact", one("name")),
    "description": FilterField("exact", one("description"), none=True),
    "category_id": FilterField("exact", one("category.id"), none=True),
    **bounds("create_time"),
    **bounds("update_time"),
}
TAG_ORDER: OrderKeys = {"name": text_key("name"), "create_time": sort_key("create_time"), "update_time": sort_key("update_time")}
CATEGORY_FILTERS = {
    "name": FilterField("exact", one("name"), none=True),
    "description": FilterField("exact", one("description"), none=True),
    **bounds("create_time"),
    **bounds("update_time"),
}


def primary_email(contact: Record) -> str | None:
    emails = sorted(contact.get("email_addresses") or [], key=lambda item: item.get("field") or "")
    return emails[0]["email"] if emails else None


def tagged_contact(_: RecordStore, row: Record) -> Record:
    shown = {name: row.get(name) for name in ("id", "given_name", "family_name", "applied_time")}
    return without_nulls({**shown, "email": primary_email(row)})


def tagged_company(store: RecordStore, row: Record) -> Record:
    companies = RESOURCES["companies"]
    company = {name: value for name, value in row.items() if name != "applied_time"}
    return {"company": strip(companies.render(store, company), companies.hidden_in_list), "applied_time": row["applied_time"]}


@dataclass(frozen=True)
class TaggedListing:
    """`GET /v2/tags/{tag_id}/<collection>`: the records with a tag, each with when it was applied."""

    key: str  # the answer's array property
    filters: dict[str, FilterField]
    order_keys: OrderKeys
    show: Callable[[RecordStore, Record], Record]


TAGGED = {
    "contacts": TaggedListing(
        "contacts",
        {
            "given_name": FilterField("exact", one("given_name"), none=True),
            "family_name": FilterField("exact", one("family_name"), none=True),
            "email": FilterField("exact", each("email_addresses", "email"), none=True),
            **bounds("applied_time"),
        },
        {
            "given_name": text_key("given_name"),
            "family_name": text_key("family_name"),
            "email": first_email,
            "applied_time": sort_key("applied_time"),
        },
        tagged_contact,
    ),
    "companies": TaggedListing(
        "tagged_companies",
        {
            "company_name": FilterField("exact", one("company_name")),
            "email": FilterField("exact", one("email_address.email"), none=True),
            **bounds("applied_time"),
        },
        {
            "company_name": text_key("company_name"),
            "email": text_key("email_address.email"),
            "applied_time": sort_key("applied_time"),
        },
        tagged_company,
    ),
}


# --- tags and categories ---------------------------------------------------------------------
def create_tag(store: RecordStore, body: Any) -> Record:
    values = parse_body(TagRequest, body)
    if not (values.get("name") or "").strip():
        raise KeapError(400, "name is required")
    if values.get("category"):
        category_id = values["category"]["id"]
        if store.get("tag_categories", category_id) is None:
            raise KeapError(400, f"Tag category with id {category_id} not found", resource="tag_category")
    return without_nulls(store.insert("tags", {**values, "name": values["name"][:TAG_NAME_MAX]}))


def get_tag(store: RecordStore, tag_id: str) -> Record:
    tag = store.get("tags", tag_id)
    if tag is None:
        raise KeapError(404, f"Tag with id {tag_id} not found", resource="tag")
    return without_nulls(tag)


def delete_tag(store: RecordStore, tag_id: str) -> None:
    """`DELETE /v2/tags/{tag_id}` (204): the tag comes off every record, with no edit of them [inference]."""
    get_tag(store, tag_id)
    store.drop_tag(tag_id)


def list_tags(store: RecordStore, query: ListQuery) -> tuple[list[Record], str]:
    filters = {**TAG_FILTERS, "tag_ids": FilterField("id_list", one("id"))}
    tags, next_token = query.run(store.records("tags"), filters, TAG_ORDER)
    return [without_nulls(tag) for tag in tags], next_token


def create_category(store: RecordStore, body: Any) -> Record:
    values = parse_body(TagCategoryRequest, body)
    name = (values.get("name") or "").strip()
    if not name:
        raise KeapError(400, "name is required")
    if any(category["name"].casefold() == name.casefold() for category in store.records("tag_categories")):
        raise KeapError(400, f"A tag category named {name!r} already exists", resource="tag_category")
    return without_nulls(store.insert("tag_categories", {**values, "name": name}))


def list_categories(store: RecordStore, query: ListQuery) -> tuple[list[Record], str]:
    categories, next_token = query.run(store.records("tag_categories"), CATEGORY_FILTERS, TAG_ORDER)
    return [without_nulls(category) for category in categories], next_token


# --- applying ----------------------------------------------------------------------------------
def contact_ids(store: RecordStore, tag_id: str, body: Any) -> list[str]:
    get_tag(store, tag_id)
    return parse_body(ApplyRemoveTagRequest, body)["contact_ids"]


def apply_to_contacts(store: RecordStore, tag_id: str, body: Any) -> dict[str, str]:
    """`POST /v2/tags/{tag_id}/contacts:applyTags`: `ApplyTagsResponse.results`, contact id -> outcome."""
    results = {}
    for contact_id in contact_ids(store, tag_id, body):
        if store.get("contacts", contact_id) is None:
            results[contact_id] = "CONTACT_NOT_FOUND"
        else:
            results[contact_id] = "SUCCESS" if store.apply_tag("contacts", contact_id, tag_id) else "DUPLICATE"
    return results


def remove_from_contacts(store: RecordStore, tag_id: str, body: Any) -> None:
    for contact_id in contact_ids(store, tag_id, body):
        if store.get("contacts", contact_id) is not None:
            store.remove_tag("contacts", contact_id, tag_id)


def tag_company(store: RecordStore, company_id: str, tag_id: str, *, applied: bool) -> None:
    """`POST` (applied) or `DELETE` `/v2/companies/{company_id}/tags/{tag_id}`."""
    RESOURCES["companies"].stored(store, company_id)
    get_tag(store, tag_id)
    if applied:
        store.apply_tag("companies", company_id, tag_id)
    else:
        store.remove_tag("companies", company_id, tag_id)


# --- listings of applications --------------------------------------------------------------------
def applied_tags(store: RecordStore, collection: str, record_id: str, query: ListQuery) -> tuple[list[Record], str]:
    """`GET /v2/{companies,contacts}/{id}/tags`: `AppliedTag`s, `{tag, applied_time}`."""
    RESOURCES[collection].stored(store, record_id)
    rows = [{**get_tag(store, tag_id), "applied_time": when} for tag_id, when in store.tags_of(collection, record_id).items()]
    filters = {**TAG_FILTERS, **bounds("applied_time")}
    order_keys = {**TAG_ORDER, "applied_time": sort_key("applied_time"), "category_id": number_key("category.id")}
    chosen, next_token = query.run(rows, filters, order_keys)
    return [{"tag": {k: v for k, v in row.items() if k != "applied_time"}, "applied_time": row["applied_time"]} for row in chosen], next_token


def tagged(store: RecordStore, collection: str, tag_id: str, query: ListQuery) -> tuple[list[Record], str]:
    """`GET /v2/tags/{tag_id}/{contacts,companies}`: the records with the tag, in the listing's shape."""
    get_tag(store, tag_id)
    listing = TAGGED[collection]
    applied = {record_id: tags[tag_id] for record_id, tags in store.applied_tags[collection].items() if tag_id in tags}
    rows = [{**RESOURCES[collection].stored(store, record_id), "applied_time": when} for record_id, when in applied.items()]
    chosen, next_token = query.run(rows, listing.filters, listing.order_keys)
    return [listing.show(store, row) for row in chosen], next_token
