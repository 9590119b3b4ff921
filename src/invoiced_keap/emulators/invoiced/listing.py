"""List endpoints: filters, sorting and page-number pagination with `Link` and `X-Total-Count`.

Pure functions over lists of JSON records, plus `page_response`, which renders a page the way the real
server does (a bare JSON array; the headers carry the paging), because the official client reads both headers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse

from invoiced_keap.emulators.invoiced.errors import API_HEADERS, ApiError
from invoiced_keap.mapping import Record


MAX_PER_PAGE = 100
PAGING = ("page", "per_page")
FILTER_PARAM = re.compile(r"^filter\[(.+)\]$")
METADATA_PARAM = re.compile(r"^metadata\[(.*)\]$")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]*$")
SORT_TERM = re.compile(r"^\s*(\w+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def _query_text(value: Any) -> str:
    """How a stored value reads in a query string: booleans as 1/0, null as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def matches(value: Any, wanted: str) -> bool:
    """Exact match, case-insensitive like the MySQL collation behind the real API."""
    if isinstance(value, bool) and wanted.lower() in ("true", "false"):
        return value == (wanted.lower() == "true")
    return _query_text(value).casefold() == wanted.casefold()


def filter_records(
    records: Iterable[Record], query: QueryParams, filterable: frozenset[str], handled: frozenset[str] = frozenset()
) -> list[Record]:
    """Apply `filter[field]=value` and `metadata[key]=value`; a field outside `filterable` is a 400.

    Fields in `handled` are allowed but left to the caller (e.g. `archived`, which is not in the JSON).
    """
    selected = list(records)
    for name, wanted in query.multi_items():
        if field := FILTER_PARAM.match(name):
            prop = field.group(1)
            if prop in handled:
                continue
            if prop not in filterable:
                raise ApiError(400, f"Invalid filter parameter: {prop}", "filter")
            selected = [record for record in selected if matches(record.get(prop), wanted)]
        elif key := METADATA_PARAM.match(name):
            meta_key = key.group(1)
            if not METADATA_KEY.match(meta_key):
                raise ApiError(400, f"Invalid metadata key: {meta_key}", "metadata")
            selected = [record for record in selected if matches(record.get("metadata", {}).get(meta_key), wanted)]
    return selected


def int_param(query: QueryParams, name: str) -> int | None:
    """An integer query parameter, or None when absent; a non-integer is a 400 like other bad query options."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for {name}: {raw}", "query") from None


def updated_window(_: object, records: list[Record], query: QueryParams) -> list[Record]:
    """A resource scope: `updated_after` and `updated_before`, both strict (the server's UpdatedFilterTrait)."""
    if (after := int_param(query, "updated_after")) is not None:
        records = [record for record in records if record["updated_at"] > after]
    if (before := int_param(query, "updated_before")) is not None:
        records = [record for record in records if record["updated_at"] < before]
    return records


def _sort_key(field: str) -> Any:
    def key(record: Record) -> tuple[bool, Any]:
        value = record.get(field)
        if isinstance(value, str):
            value = value.casefold()
        return (value is not None, value if value is not None else 0)

    return key


def sort_records(records: list[Record], sort: str | None) -> list[Record]:
    """`sort=col dir[,col dir]` over records already in the default order; malformed terms are dropped."""
    terms = [SORT_TERM.match(term) for term in (sort or "").split(",")]
    ordered = list(records)
    for term in reversed([t for t in terms if t]):
        ordered.sort(key=_sort_key(term.group(1)), reverse=(term.group(2) or "asc").lower() == "desc")
    return ordered


def page_params(query: QueryParams) -> tuple[int, int]:
    """`page` (1-based) and `per_page` (default and maximum 100, minimum 1: larger values are clamped)."""
    page = int_param(query, "page")
    per_page = int_param(query, "per_page")
    return max(1, 1 if page is None else page), min(MAX_PER_PAGE, max(1, MAX_PER_PAGE if per_page is None else per_page))


def link_header(base_url: str, query: Mapping[str, str], page: int, per_page: int, total: int) -> str:
    """Link header with rels self, first, previous (page > 1), next (page < last) and last."""
    last = max(1, math.ceil(total / per_page))
    kept = [(name, value) for name, value in query.items() if name not in PAGING]

    def url(number: int) -> str:
        params = [*kept, ("page", str(number))]
        if per_page != MAX_PER_PAGE:
            params.append(("per_page", str(per_page)))
        return f"{base_url}?{urlencode(params)}"

    rels = [("self", page), ("first", 1)]
    if page > 1:
        rels.append(("previous", page - 1))
    if page < last:
        rels.append(("next", page + 1))
    rels.append(("last", last))
    return ", ".join(f'<{url(number)}>; rel="{rel}"' for rel, number in rels)


def page_response(request: Request, records: list[Record]) -> JSONResponse:
    """One page of `records` as the API answers it, with absolute Link URLs built from the request."""
    page, per_page = page_params(request.query_params)
    start = (page - 1) * per_page
    base_url = f"{str(request.base_url).rstrip('/')}{request.url.path}"
    headers = {
        **API_HEADERS,
        "Link": link_header(base_url, request.query_params, page, per_page, len(records)),
        "X-Total-Count": str(len(records)),
    }
    return JSONResponse(records[start : start + per_page], headers=headers)
