"""Field validation shared by the resources: messages follow the real server's templates."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email

from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.table import Table

METADATA_MAX_KEYS = 10
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 255


def title(field: str) -> str:
    """`postal_code` -> `Postal Code`, the field name as the real messages print it."""
    return field.replace("_", " ").title()


def blank_to_none(value: Any) -> Any:
    """The API reads an empty string as null (the official client refuses to send one for this reason)."""
    return None if value == "" else value


def string(field: str, value: Any, low: int, high: int, *, nullable: bool) -> str | None:
    value = blank_to_none(value)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise ApiError(400, f"{title(field)} must be a string between {low} and {high} characters.", field)
    return value


def language(field: str, value: Any) -> str | None:
    """ISO 639-1: exactly two letters, stored lower-case."""
    text = string(field, value, 2, 2, nullable=True)
    return None if text is None else text.lower()


def refuse_read_only(body: dict[str, Any], blocked: frozenset[str], noun: str) -> None:
    """A body naming a field the server computes or stamps itself is refused as mass assignment."""
    for name in body:
        if name in blocked:
            raise ApiError(400, f"Mass assignment of {name} on {noun} is not allowed")


def required(field: str, value: Any) -> Any:
    if blank_to_none(value) is None:
        raise ApiError(400, f"{title(field)} is missing", field)
    return value


def free_text(field: str, value: Any) -> str | None:
    value = blank_to_none(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ApiError(400, f"{title(field)} is invalid", field)


def boolean(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return bool(int(value))
    raise ApiError(400, f"{title(field)} must be yes or no", field)


def number(field: str, value: Any, *, nullable: bool) -> float | int | None:
    value = blank_to_none(value)
    if value is None and nullable:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ApiError(400, f"{title(field)} only allows numbers", field)


def timestamp(field: str, value: Any, *, nullable: bool) -> int | None:
    """UNIX seconds; a whole float is taken as its integer."""
    value = blank_to_none(value)
    if value is None and nullable:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
        return int(value)
    raise ApiError(400, f"{title(field)} only allows timestamps", field)


def choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ApiError(400, f"{title(field)} must be one of the allowed values", field)
    return str(value)


def email(field: str, value: Any) -> str | None:
    value = blank_to_none(value)
    if value is None:
        return None
    try:
        validate_email(str(value), check_deliverability=False)
    except EmailNotValidError:
        raise ApiError(400, f"{title(field)} must be a valid email address", field) from None
    return str(value)


def country(field: str, value: Any) -> str:
    """ISO 3166 alpha-2, stored upper-case."""
    code = str(value or "").upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ApiError(400, f"{title(field)} is invalid", field)
    return code


def currency(field: str, value: Any, *, nullable: bool) -> str | None:
    """ISO 4217, stored lower-case."""
    value = blank_to_none(value)
    if value is None and nullable:
        return None
    code = str(value or "")
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code.upper()) is None:
        raise ApiError(400, f"Invalid currency code: {code}", field)
    return code.lower()


def metadata(value: Any) -> dict[str, Any]:
    """At most 10 keys of at most 40 chars, values of at most 255 chars (objects counted as JSON)."""
    value = blank_to_none(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Metadata is invalid", "metadata")
    if len(value) > METADATA_MAX_KEYS:
        raise ApiError(
            400,
            f"There can only be up to {METADATA_MAX_KEYS} metadata values. {len(value)} values were provided.",
            "metadata",
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY_LENGTH:
            raise ApiError(
                400, f"The `{key}` metadata key exceeds the {METADATA_MAX_KEY_LENGTH} character limit.", "metadata"
            )
        text = item if isinstance(item, str) else json.dumps(item)
        if len(text) > METADATA_MAX_VALUE_LENGTH:
            raise ApiError(
                400,
                f"The provided value for metadata.{key} exceeds the {METADATA_MAX_VALUE_LENGTH} character limit.",
                "metadata",
            )
    return dict(value)


def next_free_number(number_format: str, counter: Iterator[int], numbers: Table) -> str:
    """The next generated number (`CUST-0001`, `INV-0001`) that no record of `numbers` holds."""
    return next(number for number in map(number_format.format, counter) if numbers.holder("number", number) is None)


def check_number_free(noun: str, number: str, numbers: Table, own_id: Hashable | None = None) -> None:
    """Numbers are unique within a kind of record: a number another record holds is refused."""
    if numbers.holder("number", number) not in (None, own_id):
        raise ApiError(400, f"The given {noun} number has already been taken: {number}", "number")


def changes(old: dict[str, Any], new: dict[str, Any], ignored: frozenset[str]) -> dict[str, Any]:
    """Old values of the keys that changed: an event's `previous`."""
    return {key: old.get(key) for key in new if key not in ignored and old.get(key) != new[key]}
