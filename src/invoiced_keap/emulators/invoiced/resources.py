"""The Invoiced resources as data: paths, list rules, create/update hooks, what a delete does, which events.

Each `Resource` also carries the generic operations (list, get, create, update, delete, actions, views) that the
HTTP edge (`app.py`) and the Python-level helpers route to; the rules particular to a resource live in its
module (`customers`, `contacts`, `items`, `invoices`, `payments`, `balance`, `events`, `webhooks`) and are named
here. A nested resource (contacts) lives under its parent's records: `/customers/{parent_id}/contacts`.

Before any operation, `catch_up` writes what the clock's passing did since the last one (invoices gone past due),
as the server's cron jobs would have, so every answer and the event log see it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced import balance, contacts, customers, events, invoices, items, payments, webhooks
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.grouped import GroupedTable
from invoiced_keap.emulators.invoiced.listing import PAGING, filter_records, sort_records, updated_window
from invoiced_keap.emulators.invoiced.store import Account, numeric_key
from invoiced_keap.emulators.table import Table
from invoiced_keap.mapping import Record

Create = Callable[[Account, Record], Record]
Update = Callable[[Account, Record, Record], tuple[Record, Record]]  # -> (record after, old values that changed)
Delete = Callable[[Account, Record], None]
Void = Callable[[Account, Record], Record]  # DELETE that keeps the record, changed (a payment voided)
Scope = Callable[[Account, list[Record], QueryParams], list[Record]]
Action = Callable[[Account, Record, Record], None]  # POST {path}/{id}/{name}: (account, record, body)
View = Callable[[Account, Record, QueryParams], Record]  # GET {path}/{id}/{name}: (account, record, query)
Created = Callable[[Account, Record], None]  # what a new record does to others, after its own event
EventType = str | Callable[[Record, Record | None], str]  # a name, or one chosen from (record, previous)
Related = Callable[[Record], Iterable[events.Subject]]
Sweep = Callable[[Account], list[invoices.Change]]


def remove(account: Account, record: Record, *, table: str) -> None:
    """The plain delete: the record is gone."""
    account.tables[table].pop(record["id"])


def canonical_key(raw: str) -> int | None:
    """Event ids match as text: `01` is not event 1 (customer and webhook ids are read as numbers)."""
    key = numeric_key(raw)
    return key if str(key) == raw else None


@dataclass(frozen=True)
class Parent:
    """Where a nested resource lives: under the records of `resource`, whose id its records hold in `field`."""

    resource: str
    field: str


@dataclass(frozen=True)
class Resource:
    """One collection of the API. Operations missing (None) have no route."""

    name: str  # its table and its path
    noun: str  # as in "Customer was not found: 7"
    key: Callable[[str], Hashable | None]  # the table key for an id in a path
    aliases: tuple[str, ...] = ()  # further paths to the same records
    parent: Parent | None = None  # a nested resource: its paths are /{parent}/{parent_id}/{name}
    filterable: frozenset[str] | None = None  # `filter[field]` names; None: filters are ignored
    scope: Scope | None = None  # the resource's own list parameters, before filters
    scope_filters: frozenset[str] = frozenset()  # `filter[...]` names the scope applies itself
    newest_first: bool = False  # the default order, before `sort`: id ascending, or descending
    create_hook: Create | None = None  # a validated new record, id assigned
    update_hook: Update | None = None
    delete_hook: Delete | None = None
    void_hook: Void | None = None  # DELETE voids: the record stays, changed, answered with 200 and its delete event
    after_create: Created | None = None
    emits: Mapping[str, EventType] = field(default_factory=dict)  # operation -> event type
    references: Mapping[str, str] = field(default_factory=dict)  # field -> the resource whose id it holds
    related: Related | None = None  # further subjects of its events, besides the referenced records
    actions: Mapping[str, Action] = field(default_factory=dict)
    views: Mapping[str, View] = field(default_factory=dict)
    sweep: Sweep | None = None  # what the clock's passing does to its records

    @property
    def paths(self) -> tuple[str, ...]:
        if self.parent is not None:
            return (f"/{self.parent.resource}/{{parent_id}}/{self.name}",)
        return (f"/{self.name}", *self.aliases)

    def table(self, account: Account) -> Table:
        return account.tables[self.name]

    # --- operations ------------------------------------------------------------------------
    def list(self, account: Account, query: QueryParams, parent_id: int | str | None = None) -> list[Record]:
        """Every record the query selects, in order; built once per query until the next write."""
        catch_up(account)
        params = tuple((name, value) for name, value in query.multi_items() if name not in PAGING)
        listed = self.listed(account, query, parent_id)
        return listed.view(params, lambda records: self.select(account, records, query))

    def get(self, account: Account, record_id: int | str, parent_id: int | str | None = None) -> Record:
        """The record; a nested resource's record only under its own parent."""
        catch_up(account)
        record = self.table(account).get(self.key(str(record_id)))
        if record is None or (self.parent is not None and record[self.parent.field] != self.parent_key(parent_id)):
            raise ApiError(404, f"{self.noun} was not found: {record_id}")
        return record

    def create(self, account: Account, body: Record, parent_id: int | str | None = None) -> Record:
        """A nested record takes its parent from the path (a parent id in the body is overwritten)."""
        assert self.create_hook is not None
        catch_up(account)
        if self.parent is not None:
            body = {**body, self.parent.field: RESOURCES[self.parent.resource].get(account, str(parent_id))["id"]}
        record = self.create_hook(account, body)
        self.table(account).put(record["id"], record)
        self.emit(account, "create", record)
        if self.after_create is not None:
            self.after_create(account, record)
        return record

    def update(self, account: Account, record: Record, body: Record) -> Record:
        """A PATCH; a no-op keeps the stored record (and `updated_at`) and makes no event."""
        assert self.update_hook is not None
        catch_up(account)
        return self.store(account, record, *self.update_hook(account, record, body))

    def store(self, account: Account, record: Record, changed: Record, previous: Record) -> Record:
        """Write a change worked out elsewhere (a PATCH, a payment applied, the clock passing a due date), with its
        update event; `changed is record` (nothing changed) writes nothing."""
        if changed is not record:
            self.table(account).put(record["id"], changed)
        if previous:
            self.emit(account, "update", changed, previous)
        return changed

    def delete(self, account: Account, record: Record) -> Record | None:
        """The record deleted (None), or voided (`void_hook`: kept, changed, and answered)."""
        catch_up(account)
        if self.void_hook is not None:
            voided = self.void_hook(account, record)
            self.table(account).put(record["id"], voided)
            self.emit(account, "delete", voided)
            return voided
        assert self.delete_hook is not None
        self.delete_hook(account, record)
        self.emit(account, "delete", record)
        return None

    # --- rules -----------------------------------------------------------------------------
    def parent_key(self, parent_id: int | str | None) -> Hashable | None:
        assert self.parent is not None
        return RESOURCES[self.parent.resource].key(str(parent_id))

    def listed(self, account: Account, query: QueryParams, parent_id: int | str | None) -> Table:
        """The table a listing passes over: a nested resource's records of one parent, or of a grouped table the
        group a `filter[...]` on its field names (`/invoices?filter[customer]=7`), else every record."""
        table = self.table(account)
        if not isinstance(table, GroupedTable):
            return table
        if self.parent is not None:
            return table.group(self.parent_key(parent_id))
        referenced = self.references.get(table.field)
        if referenced is not None and (wanted := query.get(f"filter[{table.field}]")) is not None:
            return table.group(RESOURCES[referenced].key(wanted))
        return table

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
        """The operation's event: its object embeds the records `references` name (as the server's event objects
        expand `customer`), and it relates to them and to the `related` subjects."""
        event_type = self.emits.get(operation)
        if event_type is None:
            return
        if not isinstance(event_type, str):
            event_type = event_type(record, previous)
        obj, related = dict(record), []
        for name, resource in self.references.items():
            if record.get(name) is not None:
                obj[name] = account.tables[resource].get(record[name], record[name])
                related.append((name, str(record[name])))
        if self.related is not None:
            related.extend(self.related(record))
        account.emit(event_type, obj, previous=previous, related=related)


def catch_up(account: Account) -> None:
    """Write what the clock's passing did since the last operation (each resource's `sweep`)."""
    for resource in RESOURCES.values():
        if resource.sweep is not None:
            for record, changed, previous in resource.sweep(account):
                resource.store(account, record, changed, previous)


def _apply_payment(account: Account, payment: Record) -> None:
    payments.apply(account, payment, RESOURCES["invoices"].store)


def _void_payment(account: Account, payment: Record) -> Record:
    return payments.void(account, payment, RESOURCES["invoices"].store)


RESOURCES: dict[str, Resource] = {resource.name: resource for resource in (
    Resource(
        name="customers",
        noun="Customer",
        key=numeric_key,
        filterable=customers.FILTERABLE,
        scope=updated_window,
        create_hook=customers.create,
        update_hook=customers.update,
        delete_hook=customers.delete,
        emits={"create": "customer.created", "update": "customer.updated", "delete": "customer.deleted"},
        actions={"merge": customers.merge},
        views={"balance": balance.view},
    ),
    Resource(
        name="contacts",
        noun="Contact",
        key=numeric_key,
        parent=Parent("customers", "customer"),
        filterable=contacts.FILTERABLE,
        create_hook=contacts.create,
        update_hook=contacts.update,
        delete_hook=partial(remove, table="contacts"),
        emits={"create": "contact.created", "update": "contact.updated", "delete": "contact.deleted"},
        references={"customer": "customers"},
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
        name="invoices",
        noun="Invoice",
        key=numeric_key,
        filterable=invoices.FILTERABLE,
        scope=updated_window,
        create_hook=invoices.create,
        update_hook=invoices.update,
        delete_hook=invoices.delete,
        emits={"create": "invoice.created", "update": invoices.updated_event, "delete": "invoice.deleted"},
        references={"customer": "customers"},
        sweep=invoices.sweep,
    ),
    Resource(
        name="payments",
        noun="Payment",
        key=numeric_key,
        filterable=payments.FILTERABLE,
        scope=updated_window,
        create_hook=payments.create,
        after_create=_apply_payment,
        void_hook=_void_payment,
        emits={"create": "payment.created", "delete": "payment.deleted"},
        references={"customer": "customers"},
        related=payments.applied_invoices,
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
