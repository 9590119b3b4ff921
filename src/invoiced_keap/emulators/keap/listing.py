"""Keap v2 list queries: the `filter` grammar, `order_by`, and `page_size`/`page_token` paging.

`filter` is conditions joined by `;`, each `field<op>value` with op one of `== > < >= <=`. What a field
allows (equality, a trailing `*` prefix wildcard, comparisons, an id list, a time bound) is declared per
resource with `FilterField`; text comparisons are case-insensitive, as Keap's database collation is.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.mapping import Record

FilterKind = Literal["exact", "prefix", "number", "id_list", "since", "until"]
# Keap does not document a default page size; 0 or no page_size gets the largest page. [inference]
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
CONDITION = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>==|>=|<=|>|<)(?P<value>.*)$")
COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "==": int.__eq__,
    ">": int.__gt__,
    "<": int.__lt__,
    ">=": int.__ge__,
    "<=": int.__le__,
}


@dataclass(frozen=True)
class FilterField:
    """How one filter name reads a record: `values` gives the record's candidate values for it.

    With `none`, the value `NONE` matches records without a value ("To search for null or empty fields use
    `filter==NONE`", as the tag listings document it).
    """

    kind: FilterKind
    values: Callable[[Record], Iterable[Any]]
    none: bool = False


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


def parse_filter(text: str | None, allowed: dict[str, FilterField]) -> list[Condition]:
    if not text:
        return []
    conditions = []
    for part in text.split(";"):
        if not part.strip():
            continue
        match = CONDITION.match(part)
        if match is None:
            raise KeapError(400, f"Invalid filter condition {part!r}: expected field==value")
        condition = Condition(match["field"], match["op"], match["value"].strip())
        spec = allowed.get(condition.field)
        if spec is None:
            raise KeapError(400, f"Invalid filter field {condition.field!r}; allowed: {', '.join(sorted(allowed))}")
        if condition.op != "==" and spec.kind != "number":
            raise KeapError(400, f"Filter field {condition.field!r} supports only the == operator")
        if spec.kind == "number" and not condition.value.isdigit():
            raise KeapError(400, f"Filter field {condition.field!r} needs a whole number")
        if spec.kind in ("since", "until"):
            parse_time(condition.field, condition.value)
        conditions.append(condition)
    return conditions


def parse_time(name: str, value: str) -> datetime:
    """A full ISO-8601 date-time with a zone, e.g. `2025-04-16T20:33:02.321Z`; dates alone are refused."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or "T" not in value or moment.tzinfo is None:
        raise KeapError(400, f"Filter field {name!r} needs an ISO-8601 date-time with zone, e.g. 2025-04-16T20:33:02.321Z")
    return moment


def matches(record: Record, condition: Condition, spec: FilterField) -> bool:
    values = [value for value in spec.values(record) if value is not None]
    wanted = condition.value
    if spec.none and wanted == "NONE":
        return not values
    if spec.kind == "number":
        return any(COMPARISONS[condition.op](int(value), int(wanted)) for value in values)
    if spec.kind == "id_list":
        return any(str(value) in {item.strip() for item in wanted.split(",")} for value in values)
    if spec.kind in ("since", "until"):
        bound = parse_time(condition.field, wanted)
        moments = [datetime.fromisoformat(value) for value in values]
        return any(moment >= bound if spec.kind == "since" else moment <= bound for moment in moments)
    texts = [str(value).casefold() for value in values]
    if spec.kind == "prefix" and wanted.endswith("*"):
        return any(text.startswith(wanted[:-1].casefold()) for text in texts)
    return wanted.casefold() in texts


def apply_filter(records: Iterable[Record], conditions: Sequence[Condition], allowed: dict[str, FilterField]) -> list[Record]:
    return [record for record in records if all(matches(record, c, allowed[c.field]) for c in conditions)]


def sort_records(records: list[Record], order_by: str | None, keys: dict[str, Callable[[Record], Any]]) -> list[Record]:
    """`order_by=<field> [asc|desc]`; ties, and no `order_by`, go by numeric id ascending."""
    by_id = sorted(records, key=lambda record: int(record["id"]))
    if not order_by or not order_by.strip():
        return by_id
    field, _, direction = order_by.strip().partition(" ")
    direction = direction.strip().lower() or "asc"
    if field not in keys:
        raise KeapError(400, f"Invalid order_by field {field!r}; allowed: {', '.join(keys)}")
    if direction not in ("asc", "desc"):
        raise KeapError(400, f"Invalid order_by direction {direction!r}; use asc or desc")
    key = keys[field]
    # missing values sort first ascending, last descending; the sort is stable, so ties keep id order
    return sorted(by_id, key=lambda record: (key(record) is not None, key(record) or ""), reverse=direction == "desc")


def parse_page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise KeapError(400, f"Invalid page_size {raw!r}: must be a whole number") from None
    if size < 0 or size > MAX_PAGE_SIZE:
        raise KeapError(400, f"Invalid page_size {size}: must be between 0 and {MAX_PAGE_SIZE}")
    return size or DEFAULT_PAGE_SIZE


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    """Tokens are opaque to clients; ours carry the offset of the next page."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    prefix, _, offset = text.partition(":")
    if prefix != "offset" or not offset.isdigit():
        raise KeapError(400, f"Invalid page_token {token!r}")
    return int(offset)


def page(records: list[Record], page_size: int, page_token: str | None) -> tuple[list[Record], str]:
    """One page and the next page's token; the token is "" on the last page (the spec types it string)."""
    start = decode_token(page_token)
    end = start + page_size
    return records[start:end], encode_token(end) if end < len(records) else ""


@dataclass(frozen=True)
class ListQuery:
    """A list call's `filter`, `order_by`, `page_size` and `page_token`, for listings built on the fly."""

    filter_text: str | None = None
    order_by: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None

    def run(
        self, rows: Iterable[Record], filters: dict[str, FilterField], order_keys: dict[str, Callable[[Record], Any]]
    ) -> tuple[list[Record], str]:
        """The page of `rows` (each with an `id`) the query selects, and the next page's token."""
        conditions = parse_filter(self.filter_text, filters)
        chosen = sort_records(apply_filter(rows, conditions, filters), self.order_by, order_keys)
        return page(chosen, self.page_size, self.page_token)
