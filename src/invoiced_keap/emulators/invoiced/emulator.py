"""The Invoiced emulator: customers, items, events and webhooks in memory, served by Starlette.

Validation lives in `customers`, `items` and `webhooks` (pure); this module owns the state, the routes and
the side effects (events, webhook deliveries). Python-level access for tests and the demo: `customers`
(id -> record), `items` (id -> latest version, archived ones included; see `archived_item_ids`), `events`,
`webhooks`, `deliveries`, and `merge_customers`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from invoiced_keap.emulators.invoiced import customers, events, gate, items, webhooks
from invoiced_keap.emulators.invoiced.errors import API_HEADERS, ApiError, api_error_response, error_response
from invoiced_keap.emulators.invoiced.gate import ApiKeyAuth, ConcurrencyLimiter, Idempotency
from invoiced_keap.emulators.invoiced.listing import filter_records, int_param, page_response, sort_records
from invoiced_keap.emulators.kit import Emulator

Record = dict[str, Any]

DEFAULT_MAX_IN_FLIGHT = 20
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)
NUMBER_FORMAT = "CUST-{:04d}"


def _json(record: Record | list[Record], status: int = 200) -> JSONResponse:
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
        super().__init__(random_seed=random_seed)
        self.api_key = api_key
        self.clock = clock
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.limiter = ConcurrencyLimiter(self._max_in_flight)
        self.idempotency = Idempotency(clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None] | concurrent.futures.Future[None]] = set()
        self.reset_data()

    # --- kit hooks ---------------------------------------------------------------------------
    def reset_data(self) -> None:
        self.customers: dict[int, Record] = {}
        self.items: dict[str, Record] = {}
        self.archived_item_ids: set[str] = set()
        self.events: list[Record] = []
        self.event_subjects: dict[int, events.Subject] = {}
        self.webhooks: dict[int, Record] = {}
        self.deliveries: list[webhooks.Delivery] = []
        self.idempotency.cache.clear()
        self._customer_ids = itertools.count(1)
        self._customer_numbers = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._webhook_ids = itertools.count(1)

    def error_response(self, status: int) -> Response:
        if status == 429:
            limit = self._max_in_flight() or DEFAULT_MAX_IN_FLIGHT
            return error_response(status, gate.too_many_requests(limit))
        if status >= 500:
            return error_response(status, "An unknown error has occurred. Correlation ID: emulator-fault-injection")
        return error_response(status, f"Fault injection: status {status}")

    def seed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Create `customers` and `items` through the API's own validation; failures are listed, not raised."""
        created: dict[str, Any] = {"customers": [], "items": [], "errors": []}
        creators: dict[str, Callable[[Record], Record]] = {"customers": self.create_customer, "items": self.create_item}
        for collection, create in creators.items():
            for index, body in enumerate(payload.get(collection, [])):
                try:
                    created[collection].append(create(body)["id"])
                except ApiError as error:
                    created["errors"].append(
                        {"collection": collection, "index": index, "message": error.message, "param": error.param}
                    )
        return created

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
        item_routes = [
            route
            for base in ("/items", "/catalog_items")
            for route in (
                Route(base, self._list_items, methods=["GET"]),
                Route(base, self._create_item, methods=["POST"]),
                Route(f"{base}/{{id}}", self._get_item, methods=["GET"]),
                Route(f"{base}/{{id}}", self._update_item, methods=["PATCH"]),
                Route(f"{base}/{{id}}", self._delete_item, methods=["DELETE"]),
            )
        ]
        return [
            Route("/customers", self._list_customers, methods=["GET"]),
            Route("/customers", self._create_customer, methods=["POST"]),
            Route("/customers/{id}", self._get_customer, methods=["GET"]),
            Route("/customers/{id}", self._update_customer, methods=["PATCH"]),
            Route("/customers/{id}", self._delete_customer, methods=["DELETE"]),
            Route("/customers/{id}/merge", self._merge_customer, methods=["POST"]),
            *item_routes,
            Route("/events", self._list_events, methods=["GET"]),
            Route("/events/{id}", self._get_event, methods=["GET"]),
            Route("/webhooks", self._list_webhooks, methods=["GET"]),
            Route("/webhooks", self._create_webhook, methods=["POST"]),
            Route("/webhooks/{id}", self._get_webhook, methods=["GET"]),
            Route("/webhooks/{id}", self._update_webhook, methods=["PATCH"]),
            Route("/webhooks/{id}", self._delete_webhook, methods=["DELETE"]),
        ]

    # --- operations (Python-level and HTTP share these) ----------------------------------------
    def now(self) -> int:
        return int(self.clock())

    def create_customer(self, body: Record) -> Record:
        record = customers.new_customer(body, now=self.now())
        taken = {existing["number"] for existing in self.customers.values()}
        if record["number"] is None:
            record["number"] = self._next_free_number(taken)
        customers.check_number_free(record["number"], taken)
        record["id"] = next(self._customer_ids)
        self.customers[record["id"]] = record
        self._emit("customer.created", record)
        return record

    def update_customer(self, customer_id: int, body: Record) -> Record:
        record = self.customer(customer_id)
        changed, previous = customers.updated_customer(record, body, now=self.now())
        if "number" in previous:
            customers.check_number_free(changed["number"], self._numbers_except(customer_id))
        if previous:
            self.customers[customer_id] = changed
            self._emit("customer.updated", changed, previous=previous)
        return changed

    def delete_customer(self, customer_id: int) -> None:
        record = self.customers.pop(self.customer(customer_id)["id"])
        self._emit("customer.deleted", record)

    def merge_customers(self, survivor_id: int | str, merged_id: int | str) -> None:
        """Fold `merged_id` into `survivor_id` (`POST /customers/{survivor}/merge`, body `{"customer": merged}`).

        The merged customer disappears without a `customer.deleted` event; the survivor gets `customer.merged`
        with `original_customer` (the merged record) in the object data, and inherits its event history.
        """
        survivor = self.customer(survivor_id)
        merged = self._find_customer(merged_id)
        if merged is None:
            raise ApiError(400, f"No such customer: {merged_id}")
        if survivor is merged:
            raise ApiError(500, "A customer cannot be merged into itself.")
        if not (survivor["active"] and merged["active"]):
            raise ApiError(400, "Inactive customers cannot be merged")
        del self.customers[merged["id"]]
        for event_id, subject in self.event_subjects.items():
            if subject == ("customer", str(merged["id"])):
                self.event_subjects[event_id] = ("customer", str(survivor["id"]))
        self._emit("customer.merged", survivor, extra={"original_customer": merged})

    def customer(self, customer_id: int | str) -> Record:
        record = self._find_customer(customer_id)
        if record is None:
            raise ApiError(404, f"Customer was not found: {customer_id}")
        return record

    def create_item(self, body: Record) -> Record:
        if "id" in body:
            item_id = items.valid_id(body["id"])
            if item_id in self.items and item_id not in self.archived_item_ids:
                raise ApiError(400, f"An item already exists with ID: {item_id}", "id")
        else:
            item_id = self._unused_item_id()
        record = items.new_item(body, item_id=item_id, now=self.now())
        self.items[item_id] = record
        self.archived_item_ids.discard(item_id)
        return record

    def update_item(self, item_id: str, body: Record) -> Record:
        changed, _ = items.updated_item(self.item(item_id), body, now=self.now())
        self.items[item_id] = changed
        return changed

    def item(self, item_id: str) -> Record:
        """The latest version, archived or not, as the real server resolves an item id."""
        if item_id not in self.items:
            raise ApiError(404, f"Item was not found: {item_id}")
        return self.items[item_id]

    def webhook(self, webhook_id: int | str) -> Record:
        record = self.webhooks.get(int(webhook_id)) if str(webhook_id).isdigit() else None
        if record is None:
            raise ApiError(404, f"Webhook was not found: {webhook_id}")
        return record

    # --- internals -------------------------------------------------------------------------------
    def _find_customer(self, customer_id: int | str | None) -> Record | None:
        return self.customers.get(int(customer_id)) if str(customer_id).isdigit() else None

    def _max_in_flight(self) -> int | None:
        setting = self.faults.rate_limit
        return None if setting is None else setting.get("max_in_flight")

    def _next_free_number(self, taken: set[str]) -> str:
        return next(n for n in map(NUMBER_FORMAT.format, self._customer_numbers) if n not in taken)

    def _numbers_except(self, customer_id: int) -> set[str]:
        return {record["number"] for record in self.customers.values() if record["id"] != customer_id}

    def _unused_item_id(self) -> str:
        return next(i for i in iter(lambda: items.generated_id(self.random), None) if i not in self.items)

    def _emit(self, event_type: str, obj: Record, previous: Record | None = None, extra: Record | None = None) -> None:
        event = events.new_event(next(self._event_ids), event_type, obj, now=self.now(), previous=previous, extra=extra)
        self.events.append(event)
        self.event_subjects[event["id"]] = events.subject_of(event)
        for webhook in list(self.webhooks.values()):
            if webhooks.subscribes(webhook, event_type):
                self._spawn(
                    webhooks.deliver(event, webhook["id"], self.webhooks.get, self.webhook_retry_delays,
                                     self.deliveries.append)
                )

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

    # --- HTTP handlers ---------------------------------------------------------------------------
    async def _list_customers(self, request: Request) -> Response:
        query = request.query_params
        records = sorted(self.customers.values(), key=lambda record: record["id"])
        if (after := int_param(query, "updated_after")) is not None:
            records = [record for record in records if record["updated_at"] > after]
        if (before := int_param(query, "updated_before")) is not None:
            records = [record for record in records if record["updated_at"] < before]
        records = filter_records(records, query, customers.FILTERABLE)
        return page_response(request, sort_records(records, query.get("sort")))

    async def _create_customer(self, request: Request) -> Response:
        return _json(self.create_customer(await _body(request)), 201)

    async def _get_customer(self, request: Request) -> Response:
        return _json(self.customer(request.path_params["id"]))

    async def _update_customer(self, request: Request) -> Response:
        record = self.customer(request.path_params["id"])
        return _json(self.update_customer(record["id"], await _body(request)))

    async def _delete_customer(self, request: Request) -> Response:
        self.delete_customer(self.customer(request.path_params["id"])["id"])
        return _no_content()

    async def _merge_customer(self, request: Request) -> Response:
        survivor = self.customer(request.path_params["id"])
        self.merge_customers(survivor["id"], (await _body(request)).get("customer"))
        return _no_content()

    async def _list_items(self, request: Request) -> Response:
        query = request.query_params
        wants_archived = (query.get("archived") or query.get("filter[archived]") or "0").lower() in ("1", "true")
        records = [record for item_id, record in self.items.items()
                   if (item_id in self.archived_item_ids) == wants_archived]
        records = filter_records(records, query, items.FILTERABLE, handled=frozenset({"archived"}))
        return page_response(request, sort_records(records, query.get("sort")))

    async def _create_item(self, request: Request) -> Response:
        return _json(self.create_item(await _body(request)), 201)

    async def _get_item(self, request: Request) -> Response:
        return _json(self.item(request.path_params["id"]))

    async def _update_item(self, request: Request) -> Response:
        return _json(self.update_item(request.path_params["id"], await _body(request)))

    async def _delete_item(self, request: Request) -> Response:
        self.archived_item_ids.add(self.item(request.path_params["id"])["id"])
        return _no_content()

    async def _list_events(self, request: Request) -> Response:
        selected = events.select_events(self.events, self.event_subjects, request.query_params)
        return page_response(request, sort_records(selected, request.query_params.get("sort")))

    async def _get_event(self, request: Request) -> Response:
        event_id = request.path_params["id"]
        found = [event for event in self.events if str(event["id"]) == event_id]
        if not found:
            raise ApiError(404, f"Event was not found: {event_id}")
        return _json(found[0])

    async def _list_webhooks(self, request: Request) -> Response:
        records = sorted(self.webhooks.values(), key=lambda record: record["id"])
        return page_response(request, sort_records(records, request.query_params.get("sort")))

    async def _create_webhook(self, request: Request) -> Response:
        record = webhooks.new_webhook(
            await _body(request), webhook_id=next(self._webhook_ids), secret=webhooks.generated_secret(self.random),
            now=self.now(),
        )
        self.webhooks[record["id"]] = record
        return _json(record, 201)

    async def _get_webhook(self, request: Request) -> Response:
        return _json(self.webhook(request.path_params["id"]))

    async def _update_webhook(self, request: Request) -> Response:
        record = self.webhook(request.path_params["id"])
        self.webhooks[record["id"]] = webhooks.updated_webhook(record, await _body(request), now=self.now())
        return _json(self.webhooks[record["id"]])

    async def _delete_webhook(self, request: Request) -> Response:
        del self.webhooks[self.webhook(request.path_params["id"])["id"]]
        return _no_content()
