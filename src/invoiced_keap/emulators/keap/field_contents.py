"""What a custom field's `content` may hold, by the field's type; content is stored as given.

The v2 spec types `content` as anything, with one limit ("Text custom field values have a maximum length of
65535 characters"). Its filter documentation sorts the types into text-like (text, text area, name, email,
phone, website, social security number, state), numeric (whole number, decimal, currency, percent, year, month,
day of week, user), dates, yes/no, single choices (dropdown, radio, drilldown) and multi-select. The JSON type
each group takes here is [inference]: text as a string, numbers as JSON numbers (whole ones as integers, never
booleans or numeric strings), DATE as `YYYY-MM-DD`, DATE_TIME as a full ISO-8601 date-time with a zone, YES_NO as
a boolean, MONTH 1-12 and DAY_OF_WEEK 1-7, a single choice as one option's label, LIST_BOX as a
list of labels, USER as a user id and USER_LIST_BOX as a list of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

TEXT_MAX = 65535
# the types that carry options (`CustomFieldMetaData.options`: "for select/radio/multiselect/drilldown field types")
CHOICE_TYPES = frozenset({"DROPDOWN", "RADIO", "LIST_BOX", "DRILLDOWN"})
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# content, the field's option labels -> why the content does not fit, or None
Check = Callable[[Any, Sequence[str]], str | None]


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def text(content: Any, _: Sequence[str]) -> str | None:
    if not isinstance(content, str):
        return "needs text"
    return f"exceeds the maximum length of {TEXT_MAX} characters" if len(content) > TEXT_MAX else None


def email(content: Any, options: Sequence[str]) -> str | None:
    problem = text(content, options)
    if problem:
        return problem
    try:
        validate_email(content, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return f"needs an email address, not {content!r}"
    return None


def whole(content: Any, _: Sequence[str]) -> str | None:
    return None if is_whole(content) else "needs a whole number"


def number(content: Any, _: Sequence[str]) -> str | None:
    return None if is_number(content) else "needs a number"


def whole_between(low: int, high: int) -> Check:
    def check(content: Any, _: Sequence[str]) -> str | None:
        return None if is_whole(content) and low <= content <= high else f"needs a whole number from {low} to {high}"

    return check


def calendar_date(content: Any, _: Sequence[str]) -> str | None:
    if isinstance(content, str) and ISO_DATE.match(content):
        try:
            date.fromisoformat(content)
            return None
        except ValueError:
            pass
    return "needs a date as YYYY-MM-DD"


def date_time(content: Any, _: Sequence[str]) -> str | None:
    try:
        moment = datetime.fromisoformat(content)
    except (TypeError, ValueError):
        moment = None
    if moment is None or "T" not in content or moment.tzinfo is None:
        return "needs an ISO-8601 date-time with zone, e.g. 2025-04-16T20:33:02.321Z"
    return None


def yes_no(content: Any, _: Sequence[str]) -> str | None:
    return None if isinstance(content, bool) else "needs true or false"


def one_option(content: Any, options: Sequence[str]) -> str | None:
    if isinstance(content, str) and content in options:
        return None
    return f"needs one of its options ({', '.join(options) or 'it has none'})"


def some_options(content: Any, options: Sequence[str]) -> str | None:
    if isinstance(content, list) and all(isinstance(item, str) and item in options for item in content):
        return None
    return f"needs a list of its options ({', '.join(options) or 'it has none'})"


def user_id(content: Any, _: Sequence[str]) -> str | None:
    fits = is_whole(content) or (isinstance(content, str) and content.isdigit())
    return None if fits else "needs a user id"


def user_ids(content: Any, options: Sequence[str]) -> str | None:
    if isinstance(content, list) and not any(user_id(item, options) for item in content):
        return None
    return "needs a list of user ids"


CHECKS: dict[str, Check] = {
    **dict.fromkeys(("TEXT", "TEXT_AREA", "NAME", "PHONE_NUMBER", "WEBSITE", "SOCIAL_SECURITY_NUMBER", "STATE"), text),
    "EMAIL": email,
    **dict.fromkeys(("WHOLE_NUMBER", "YEAR"), whole),
    **dict.fromkeys(("DECIMAL_NUMBER", "CURRENCY", "PERCENT"), number),
    "MONTH": whole_between(1, 12),
    "DAY_OF_WEEK": whole_between(1, 7),
    "DATE": calendar_date,
    "DATE_TIME": date_time,
    "YES_NO": yes_no,
    **dict.fromkeys(("DROPDOWN", "RADIO", "DRILLDOWN"), one_option),
    "LIST_BOX": some_options,
    "USER": user_id,
    "USER_LIST_BOX": user_ids,
}


def content_problem(field_type: str, content: Any, options: Sequence[str]) -> str | None:
    """Why `content` cannot be a value of a field of this type (with these option labels), or None."""
    return CHECKS[field_type](content, options)
