"""The Invoiced emulator and its HTTP edge: generic list/get/create/update/delete routes over `RESOURCES`.

State lives in an `Account` (`store.py`), the rules in the resource declarations (`resources.py`). Python-level
access for tests and the demo: `customers`, `contacts`, `invoices`, `payments` (id -> record), `items` (id ->
latest version, archived ones included; see `archived_item_ids`), `events`, `webhooks`, `deliveries`, the helpers
below (the same operations as the routes, events included), and `advance_clock` to move the account's clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from invoiced_keap.emulators.invoiced import gate, webhooks
from invoiced_keap.emulators.invoiced.errors import API_HEADERS, ApiError, api_error_response, error_response
from invoiced_keap.emulators.invoiced.gate import ApiKeyAuth, ConcurrencyLimiter, Idempotency
from invoiced_keap.emulators.invoiced.listing import page_response
from invoiced_keap.emulators.invoiced.resources import RESOURCES, Action, Resource, View, catch_up
from invoiced_keap.emulators.invoiced.store import Account
from invoiced_keap.emulators.kit import AdjustableClock, Emulator, check_seed_keys
from invoiced_keap.mapping import Record


DEFAULT_MAX_IN_FLIGHT = 20
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)
SEEDED = ("customers", "contacts", "items")
CUSTOMERS, CONTACTS, ITEMS = RESOURCES["customers"], RESOURCES["contacts"], RESOURCES["items"]
INVOICES, PAYMENTS = RESOURCES["invoices"], RESOURCES["payments"]


def _json(record: Record, status: int = 200) -> JSONResponse:
    return JSONResponse(record, status_code=status, headers=API_HEADERS)


def _no_content() -> Response:
    return Response(status_code=204, headers=API_HEADERS)


async def _body(request: Request) -> Record:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body could not be parsed as JSON", "request") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object", "request")
    return body


def resource_routes(account: Account, resource: Resource) -> list[BaseRoute]:
    """The routes of one resource, under each of its paths; a record's routes find it before reading a body.

    A nested resource's paths carry its parent's id (`parent_id`), which every operation is given."""

    def found(request: Request) -> Record:
        return resource.get(account, request.path_params["id"], request.path_params.get("parent_id"))

    async def list_records(request: Request) -> Response:
        return page_response(request, resource.list(account, request.query_params, request.path_params.get("parent_id")))

    async def create_record(request: Request) -> Response:
        return _json(resource.create(account, await _body(request), request.path_params.get("parent_id")), 201)

    async def get_record(request: Request) -> Response:
        return _json(found(request))

    async def update_record(request: Request) -> Response:
        record = found(request)
        return _json(resource.update(account, record, await _body(request)))

    async def delete_record(request: Request) -> Response:
        voided = resource.delete(account, found(request))
        return _no_content() if voided is None else _json(voided)

    def acting(action: Action) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def act(request: Request) -> Response:
            record = found(request)
            action(account, record, await _body(request))
            return _no_content()

        return act

    def viewing(view: View) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def show(request: Request) -> Response:
            return _json(view(account, found(request), request.query_params))

        return show

    routes: list[BaseRoute] = []
    for path in resource.paths:
        record_path = f"{path}/{{id}}"
        routes.append(Route(path, list_records, methods=["GET"]))
        if resource.create_hook is not None:
            routes.append(Route(path, create_record, methods=["POST"]))
        routes.append(Route(record_path, get_record, methods=["GET"]))
        if resource.update_hook is not None:
            routes.append(Route(record_path, update_record, methods=["PATCH"]))
        if resource.delete_hook is not None or resource.void_hook is not None:
            routes.append(Route(record_path, delete_record, methods=["DELETE"]))
        routes.extend(Route(f"{record_path}/{name}", acting(action), methods=["POST"])
                      for name, action in resource.actions.items())
        routes.extend(Route(f"{record_path}/{name}", viewing(view), methods=["GET"])
                      for name, view in resource.views.items())
    return routes


class InvoicedEmulator(Emulator):
    """Invoiced's REST API for one account with one API key."""

    default_rate_limit = {"max_in_flight": DEFAULT_MAX_IN_FLIGHT}

    def __init__(
        self,
        api_key: str = "test",
        random_seed: int | None = None,
        clock: Callable[[], float] = time.time,
        webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    ) -> None:
        self.adjustable_clock = AdjustableClock(clock)  # every part reads it, so `advance_clock` moves them all
        super().__init__(random_seed=random_seed, clock=self.adjustable_clock)
        self.api_key = api_key
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.limiter = ConcurrencyLimiter(self._max_in_flight)
        self.idempotency = Idempotency(self.adjustable_clock)
        self.account = Account(self.adjustable_clock, self.random)
        self.account.listeners.append(self._deliver)
        self.customers = self.account.tables["customers"]
        self.contacts = self.account.contacts
        self.invoices = self.account.invoices
        self.payments = self.account.tables["payments"]
        self.items = self.account.tables["items"]
        self.webhooks = self.account.tables["webhooks"]
        self.archived_item_ids = self.account.archived_item_ids
        self.deliveries: list[webhooks.Delivery] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None] | concurrent.futures.Future[None]] = set()

    @property
    def events(self) -> list[Record]:
        """The event log, oldest first (with what the clock's passing did, as an API read would see it)."""
        catch_up(self.account)
        return list(self.account.tables["events"].values())

    def advance_clock(self, seconds: float) -> None:
        """Move the account's clock forward (as `POST /_emulator/clock` does): record times, `Date` headers,
        idempotency expiry, and due dates (an open invoice whose due date the clock passes is past due from the next
        operation on)."""
        self.adjustable_clock.advance(seconds)

    # --- kit hooks ---------------------------------------------------------------------------
    def reset_data(self) -> None:
        self.account.reset()
        self.deliveries.clear()
        self.idempotency.cache.clear()

    def error_response(self, status: int) -> Response:
        if status == 429:
            limit = self._max_in_flight() or DEFAULT_MAX_IN_FLIGHT
            return error_response(status, gate.too_many_requests(limit))
        if status >= 500:
            return error_response(status, "An unknown error has occurred. Correlation ID: emulator-fault-injection")
        return error_response(status, f"Fault injection: status {status}")

    def seed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Create `customers`, then `contacts`, then `items` through the API's own validation; failures are listed,
        not raised. A contact names its customer by position in this payload's `customers` (`"customer": 0`).

        The answer is `{"customers": [id, ...], "contacts": [...], "items": [...], "errors": [{"collection",
        "index", "message", "param"}]}`; a rejected body has no id in its list (nor have the contacts of a
        rejected customer). ValueError for a key besides those collections (`check_seed_keys`).
        """
        check_seed_keys(payload, SEEDED)
        created: dict[str, Any] = {name: [] for name in SEEDED}
        created["errors"] = []
        customers: dict[int, int] = {}  # position in payload["customers"] -> id, for those created
        for name in SEEDED:
            for index, body in enumerate(payload.get(name, [])):
                try:
                    if name == "contacts":
                        record = CONTACTS.create(self.account, body, self._seeded_customer(body, customers))
                    else:
                        record = RESOURCES[name].create(self.account, body)
                except ApiError as error:
                    created["errors"].append(
                        {"collection": name, "index": index, "message": error.message, "param": error.param}
                    )
                    continue
                created[name].append(record["id"])
                if name == "customers":
                    customers[index] = record["id"]
        return created

    @staticmethod
    def _seeded_customer(contact: Record, customers: dict[int, int]) -> int:
        """The id of the customer a seeded contact names by position (`customers`: position -> id of those
        created); ApiError (param `customer`) when it names none of them."""
        position = contact.get("customer")
        if isinstance(position, bool) or not isinstance(position, int) or position not in customers:
            raise ApiError(400, f"customer: expected the position of a customer this seed created, got {position!r}",
                           "customer")
        return customers[position]

    def wrap_api(self, app: ASGIApp) -> ASGIApp:
        if isinstance(app, Starlette):
            app.add_exception_handler(ApiError, self._api_error)  # type: ignore[arg-type]
            app.add_exception_handler(HTTPException, self._routing_error)  # type: ignore[arg-type]
        return ApiKeyAuth(self.limiter.enforce(self.idempotency.wrap(app)), self.api_key)

    def asgi(self) -> Starlette:
        """The kit's app inside the in-flight limiter; remembers the serving loop for webhook deliveries."""
        served = self.limiter.admit(super().asgi())

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            self._loop = asyncio.get_running_loop()
            await served(scope, receive, send)

        return app  # type: ignore[return-value]

    def api_routes(self) -> list[BaseRoute]:
        return [route for resource in RESOURCES.values() for route in resource_routes(self.account, resource)]

    # --- Python-level helpers (the same operations as the routes) --------------------------------
    def create_customer(self, body: Record) -> Record:
        return CUSTOMERS.create(self.account, body)

    def update_customer(self, customer_id: int | str, body: Record) -> Record:
        return CUSTOMERS.update(self.account, self.customer(customer_id), body)

    def delete_customer(self, customer_id: int | str) -> None:
        CUSTOMERS.delete(self.account, self.customer(customer_id))

    def merge_customers(self, survivor_id: int | str, merged_id: int | str) -> None:
        """`POST /customers/{survivor_id}/merge` with `{"customer": merged_id}` (see `customers.merge`)."""
        CUSTOMERS.actions["merge"](self.account, self.customer(survivor_id), {"customer": merged_id})

    def customer(self, customer_id: int | str) -> Record:
        return CUSTOMERS.get(self.account, customer_id)

    def create_contact(self, customer_id: int | str, body: Record) -> Record:
        return CONTACTS.create(self.account, body, customer_id)

    def update_contact(self, customer_id: int | str, contact_id: int | str, body: Record) -> Record:
        return CONTACTS.update(self.account, self.contact(customer_id, contact_id), body)

    def delete_contact(self, customer_id: int | str, contact_id: int | str) -> None:
        CONTACTS.delete(self.account, self.contact(customer_id, contact_id))

    def contact(self, customer_id: int | str, contact_id: int | str) -> Record:
        return CONTACTS.get(self.account, contact_id, customer_id)

    def customer_contacts(self, customer_id: int | str) -> list[Record]:
        """The customer's contacts in id order, as `GET /customers/{id}/contacts` lists them."""
        return CONTACTS.list(self.account, QueryParams(), customer_id)

    def customer_balance(self, customer_id: int | str, currency: str | None = None) -> Record:
        """`GET /customers/{id}/balance` (the client's `customer.balance()`)."""
        query = QueryParams({} if currency is None else {"currency": currency})
        return CUSTOMERS.views["balance"](self.account, self.customer(customer_id), query)

    def create_invoice(self, body: Record) -> Record:
        return INVOICES.create(self.account, body)

    def update_invoice(self, invoice_id: int | str, body: Record) -> Record:
        return INVOICES.update(self.account, self.invoice(invoice_id), body)

    def delete_invoice(self, invoice_id: int | str) -> None:
        INVOICES.delete(self.account, self.invoice(invoice_id))

    def invoice(self, invoice_id: int | str) -> Record:
        return INVOICES.get(self.account, invoice_id)

    def create_payment(self, body: Record) -> Record:
        """A payment; its `applied_to` invoices are paid down (with their `invoice.updated`/`invoice.paid` events)."""
        return PAYMENTS.create(self.account, body)

    def void_payment(self, payment_id: int | str) -> Record:
        """`DELETE /payments/{id}`: the payment voided (kept, `voided: true`), what it paid back on its invoices."""
        voided = PAYMENTS.delete(self.account, PAYMENTS.get(self.account, payment_id))
        assert voided is not None
        return voided

    def payment(self, payment_id: int | str) -> Record:
        return PAYMENTS.get(self.account, payment_id)

    def create_item(self, body: Record) -> Record:
        return ITEMS.create(self.account, body)

    def update_item(self, item_id: str, body: Record) -> Record:
        return ITEMS.update(self.account, self.item(item_id), body)

    def item(self, item_id: str) -> Record:
        """The latest version, archived or not, as the real server resolves an item id."""
        return ITEMS.get(self.account, item_id)

    # --- internals -------------------------------------------------------------------------------
    def _max_in_flight(self) -> int | None:
        setting = self.faults.rate_limit
        return None if setting is None else setting.get("max_in_flight")

    def _deliver(self, event: Record) -> None:
        """Account listener: a delivery of `event` to every webhook subscribed to its type."""
        for webhook in list(self.webhooks.values()):
            if webhooks.subscribes(webhook, event["type"]):
                self._spawn(webhooks.deliver(
                    event, webhook["id"], self.webhooks.get, self.webhook_retry_delays, self.deliveries.append,
                    partial(webhooks.disable, self.account),
                ))

    def _spawn(self, delivery: Coroutine[Any, Any, None]) -> None:
        """Fire and forget on the server's loop, also when called from another thread (a test, the demo)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        task: asyncio.Future[None] | concurrent.futures.Future[None]
        if running is not None:
            task = running.create_task(delivery)
        elif self._loop is not None and self._loop.is_running():
            task = asyncio.run_coroutine_threadsafe(delivery, self._loop)
        else:
            delivery.close()  # never served: there is no loop to deliver on
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _api_error(self, _: Request, error: ApiError) -> Response:
        return api_error_response(error)

    async def _routing_error(self, request: Request, error: HTTPException) -> Response:
        where = f"{request.method} {request.url.path}"
        if error.status_code == 405:
            return error_response(405, f"Method not allowed: {where}")
        return error_response(error.status_code, f"Request was not recognized: {where}")
