"""The Invoiced resources as data: paths, list rules, create/update hooks, what a delete does, which events.

Each `Resource` also carries the generic operations (list, get, create, update, delete, actions) that the
HTTP edge (`app.py`) and the Python-level helpers route to; the rules particular to a resource live in its
module (`customers`, `items`, `events`, `webhooks`) and are named here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import partial

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced import customers, events, items, webhooks
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.listing import PAGING, filter_records, sort_records
from invoiced_keap.emulators.invoiced.store import Account, numeric_key
from invoiced_keap.emulators.table import Table
from invoiced_keap.mapping import Record

Create = Callable[[Account, Record], Record]
Update = Callable[[Account, Record, Record], tuple[Record, Record]]  # -> (record after, old values that changed)
Delete = Callable[[Account, Record], None]
Scope = Callable[[Account, list[Record], QueryParams], list[Record]]
Action = Callable[[Account, Record, Record], None]  # POST {path}/{id}/{name}: (account, record, body)


def remove(account: Account, record: Record, *, table: str) -> None:
    """The plain delete: the record is gone."""
    account.tables[table].pop(record["id"])


def canonical_key(raw: str) -> int | None:
    """Event ids match as text: `01` is not event 1 (customer and webhook ids are read as numbers)."""
    key = numeric_key(raw)
    return key if str(key) == raw else None


@dataclass(frozen=True)
class Resource:
    """One collection of the API. Operations missing (None) have no route."""

    name: str  # its table and its path
    noun: str  # as in "Customer was not found: 7"
    key: Callable[[str], Hashable | None]  # the table key for an id in a path
    aliases: tuple[str, ...] = ()  # further paths to the same records
    filterable: frozenset[str] | None = None  # `filter[field]` names; None: filters are ignored
    scope: Scope | None = None  # the resource's own list parameters, before filters
    scope_filters: frozenset[str] = frozenset()  # `filter[...]` names the scope applies itself
    newest_first: bool = False  # the default order, before `sort`: id ascending, or descending
    create_hook: Create | None = None  # a validated new record, id assigned
    update_hook: Update | None = None
    delete_hook: Delete | None = None
    emits: Mapping[str, str] = field(default_factory=dict)  # operation -> event type
    actions: Mapping[str, Action] = field(default_factory=dict)

    @property
    def paths(self) -> tuple[str, ...]:
        return (f"/{self.name}", *self.aliases)

    def table(self, account: Account) -> Table:
        return account.tables[self.name]

    # --- operations ------------------------------------------------------------------------
    def list(self, account: Account, query: QueryParams) -> list[Record]:
        """Every record the query selects, in order; built once per query until the next write."""
        params = tuple((name, value) for name, value in query.multi_items() if name not in PAGING)
        return self.table(account).view(params, lambda records: self.select(account, records, query))

    def get(self, account: Account, record_id: int | str) -> Record:
        record = self.table(account).get(self.key(str(record_id)))
        if record is None:
            raise ApiError(404, f"{self.noun} was not found: {record_id}")
        return record

    def create(self, account: Account, body: Record) -> Record:
        assert self.create_hook is not None
        record = self.create_hook(account, body)
        self.table(account).put(record["id"], record)
        self.emit(account, "create", record)
        return record

    def update(self, account: Account, record: Record, body: Record) -> Record:
        """A PATCH; a no-op keeps the stored record (and `updated_at`) and makes no event."""
        assert self.update_hook is not None
        changed, previous = self.update_hook(account, record, body)
        if changed is not record:
            self.table(account).put(record["id"], changed)
        if previous:
            self.emit(account, "update", changed, previous)
        return changed

    def delete(self, account: Account, record: Record) -> None:
        assert self.delete_hook is not None
        self.delete_hook(account, record)
        self.emit(account, "delete", record)

    # --- rules -----------------------------------------------------------------------------
    def select(self, account: Account, records: list[Record], query: QueryParams) -> list[Record]:
        """From all records in id order: the default order, the scope, the filters, then `sort`."""
        if self.newest_first:
            records.reverse()
        if self.scope is not None:
            records = self.scope(account, records, query)
        if self.filterable is not None:
            records = filter_records(records, query, self.filterable, self.scope_filters)
        return sort_records(records, query.get("sort"))

    def emit(self, account: Account, operation: str, record: Record, previous: Record | None = None) -> None:
        if event_type := self.emits.get(operation):
            account.emit(event_type, record, previous=previous)


RESOURCES: dict[str, Resource] = {resource.name: resource for resource in (
    Resource(
        name="customers",
        noun="Customer",
        key=numeric_key,
        filterable=customers.FILTERABLE,
        scope=customers.scope,
        create_hook=customers.create,
        update_hook=customers.update,
        delete_hook=partial(remove, table="customers"),
        emits={"create": "customer.created", "update": "customer.updated", "delete": "customer.deleted"},
        actions={"merge": customers.merge},
    ),
    Resource(
        name="items",
        noun="Item",
        key=str,
        aliases=("/catalog_items",),
        filterable=items.FILTERABLE,
        scope=items.scope,
        scope_filters=frozenset({"archived"}),
        create_hook=items.create,
        update_hook=items.update,
        delete_hook=items.archive,
    ),
    Resource(
        name="events",
        noun="Event",
        key=canonical_key,
        filterable=events.FILTERABLE,
        scope=events.scope,
        newest_first=True,
    ),
    Resource(
        name="webhooks",
        noun="Webhook",
        key=numeric_key,
        create_hook=webhooks.create,
        update_hook=webhooks.update,
        delete_hook=partial(remove, table="webhooks"),
    ),
)}
