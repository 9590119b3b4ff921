"""What every v2 route's HTTP edge shares: the path prefix, Keap's error body for `KeapError`, query lists, JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.emulators.keap.listing import ListQuery, parse_page_size

V2_PREFIX = "/crm/rest/v2"
Handler = Callable[[Request], Awaitable[Response]]


def answering_errors(handler: Handler) -> Handler:
    """Turn a `KeapError` raised anywhere below into Keap's error body."""

    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except KeapError as error:
            return error.response()

    return wrapper


def repeated_or_comma(request: Request, name: str) -> list[str] | None:
    """`a=x&a=y` and `a=x,y` alike (the SDK repeats `update_mask` and comma-joins `fields`)."""
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    return [item.strip() for value in raw for item in value.split(",") if item.strip()]


def list_query(request: Request) -> ListQuery:
    query = request.query_params
    return ListQuery(query.get("filter"), query.get("order_by"), parse_page_size(query.get("page_size")), query.get("page_token"))


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeapError(400, "Request body is not valid JSON") from None
