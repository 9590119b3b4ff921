"""What a customer owes, as Keap custom field values and a tag: the pure part (no I/O).

    figures = owed(open_invoices, now, last_payment)                 # from Invoiced's records
    wanted = keap_values(figures, options, keap_currency)            # label -> content, and the tag
    change = decide(wanted, written)                                 # None: nothing to write

A customer's `Figures` are read from its open invoices (issued, not paid, closed or a draft, dated up to now, as
Invoiced's balance counts them: `GET /customers/{id}/balance`'s `total_outstanding`) and its latest payment:
the outstanding balance and the amount past due per currency (ISO 4217), the due date of the oldest invoice past
due (Invoiced's own `status`), the number of open invoices and the date of the last payment.

In Keap they become custom field values (`keap_values`). An amount in the account's currency (`keap_currency`,
the one currency a Keap account works in) goes to a CURRENCY field under the configured label; an amount in
another currency goes to a DECIMAL_NUMBER field whose label names the currency, "Invoiced balance (EUR)": nothing
is converted, and Keap would show a CURRENCY field's amount with the account's symbol. Days past due are whole
days from the oldest past-due invoice's due date to the day the figures were read (UTC, Invoiced's clock). The tag is wanted while anything is past due.

`decide` compares what is wanted with what was last written to the same Keap record, exactly: a zero is a value
written (and kept in the state as such), distinct from a field left blank; only a record nothing was ever written to
and a customer with nothing to show (every figure zero or blank) cost no write. A label written before and not
wanted now (a currency no longer owed in, a figure turned off or relabelled) is cleared. The tag is applied when
wanted and not known to be on, and removed only where this sync put it; a tag the sync put on under another name
(the setting renamed, or turned off) is taken off (`Change.untag`), and the configured one applied where wanted.
"""

from __future__ import annotations

import json

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import MaxLen
from babel.numbers import get_currency_precision, list_currencies

from invoiced_keap.mapping import Record

if TYPE_CHECKING:
    from invoiced_keap.connectors.invoiced import Event

Figure = Literal["balance", "past_due", "days_past_due", "open_invoices", "last_payment"]
FIGURES: tuple[Figure, ...] = ("balance", "past_due", "days_past_due", "open_invoices", "last_payment")
MONEY: frozenset[Figure] = frozenset({"balance", "past_due"})
DEFAULT_LABELS: dict[Figure, str] = {
    "balance": "Invoiced balance",
    "past_due": "Invoiced past due",
    "days_past_due": "Invoiced days past due",
    "open_invoices": "Invoiced open invoices",
    "last_payment": "Invoiced last payment",
}
FIELD_TYPES: dict[Figure, str] = {
    "balance": "CURRENCY", "past_due": "CURRENCY", "days_past_due": "WHOLE_NUMBER", "open_invoices": "WHOLE_NUMBER",
    "last_payment": "DATE",
}
FOREIGN_MONEY_TYPE = "DECIMAL_NUMBER"  # an amount in another currency than the account's: no currency symbol
DEFAULT_TAG = "Invoiced: past due"
TAG_NAME_LIMIT = 255  # Keap keeps "up to 255 characters" of a tag name; a longer one could never be found again
EVENT_OBJECTS = frozenset({"invoice", "payment", "credit_note"})
"""The event objects whose events name a customer whose figures may have changed."""
PAYMENT_OBJECTS = frozenset({"payment"})
"""The event objects that may change a customer's last payment."""

OWN_SUFFIX = " (invoiced-keap)"
"""Appended to a label whose same-named Keap field is of another type (someone else's field): ours is made apart."""
CURRENCY_CODES = frozenset(code.casefold() for code in list_currencies())
"""ISO 4217 codes (CLDR via Babel, historic ones included): what "<label> (<code>)" may name."""

OPERATION = "receivables"
"""The operation of the failures of these writes, kept with the record's flow (`planner` leaves them to the step)."""

Content = int | float | str | None
Values = dict[str, Content]


@dataclass(frozen=True)
class ReceivablesOptions:
    """`[receivables]`: whether the figures are written (`enabled`), which (`fields`, of `FIGURES`), under which
    labels (`labels`, per figure; the rest keep `DEFAULT_LABELS`), and the tag applied while something is past due
    (`tag`; empty: no tag)."""

    enabled: bool = True
    fields: tuple[Figure, ...] = FIGURES
    labels: Mapping[Figure, str] = field(default_factory=dict)
    tag: Annotated[str, MaxLen(TAG_NAME_LIMIT)] = DEFAULT_TAG

    def __post_init__(self) -> None:
        if self.tag and not self.tag.strip():
            raise ValueError('tag: a tag name cannot be blank; set tag = "" for no tag')
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields: a figure is named twice in {list(self.fields)}")
        for figure, label in self.labels.items():
            if not label.strip():
                raise ValueError(f"labels.{figure}: a label cannot be blank")
        seen: dict[str, str] = {}
        for figure in self.fields:
            label = self.label(figure)
            if label.casefold() in seen:
                raise ValueError(f"labels: {seen[label.casefold()]} and {figure} share the label {label!r}; "
                                 "Keap custom field labels are unique")
            seen[label.casefold()] = figure
        for figure in self.fields:
            for other in self.fields:
                if other != figure and self.may_write(other, self.label(figure)):
                    raise ValueError(
                        f"labels.{figure}: {self.label(figure)!r} is a label the sync may write for {other} "
                        f"({self._forms(other)}); two figures cannot share a Keap field: choose another label")

    def may_write(self, figure: Figure, label: str) -> bool:
        """Whether `label` (or it with `OWN_SUFFIX`) is one the sync may write `figure` under, ignoring case: its
        label, for an amount its label naming any ISO 4217 currency ("Invoiced balance (EUR)"), and either with
        `OWN_SUFFIX` (ours made apart from someone's same-named field of another type)."""
        own, base = self.label(figure).casefold(), label.strip().casefold()
        for name in (base, base.removesuffix(OWN_SUFFIX.casefold())):
            if name == own:
                return True
            if figure in MONEY and name.startswith(own + " (") and name.endswith(")"):
                if name[len(own) + 2 : -1] in CURRENCY_CODES:
                    return True
        return False

    def _forms(self, figure: Figure) -> str:
        label = self.label(figure)
        money = f"{label!r}, {label + ' (EUR)'!r} and any other currency code, " if figure in MONEY else f"{label!r}, "
        return f"{money}each also with {OWN_SUFFIX.strip()!r}"

    def label(self, figure: Figure) -> str:
        return self.labels.get(figure, DEFAULT_LABELS[figure]).strip()

    def fingerprint(self, keap_currency: str) -> str:
        """What decides the values and tag written (fields, labels, tag, currency): when it changes, every record
        is looked at again."""
        return json.dumps({"fields": [[figure, self.label(figure)] for figure in self.fields], "tag": self.tag.strip(),
                           "currency": keap_currency}, sort_keys=True)


@dataclass(frozen=True)
class Figures:
    """What one customer owes (see the module docstring). Amounts by upper-case ISO 4217 code, as decimal text."""

    as_of: str  # ISO date (UTC) of Invoiced's clock when they were read: days past due count to it
    balances: dict[str, str] = field(default_factory=dict)
    past_due: dict[str, str] = field(default_factory=dict)
    oldest_past_due: str | None = None  # ISO date: the due date of the oldest invoice past due
    open_invoices: int = 0
    last_payment: str | None = None  # ISO date
    opens_at: str | None = None  # ISO date and time (UTC): the date of the earliest open invoice dated ahead of as_of

    def to_json(self) -> Record:
        return {"as_of": self.as_of, "balances": self.balances, "past_due": self.past_due,
                "oldest_past_due": self.oldest_past_due, "open_invoices": self.open_invoices,
                "last_payment": self.last_payment, "opens_at": self.opens_at}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Figures:
        return cls(value["as_of"], dict(value["balances"]), dict(value["past_due"]), value["oldest_past_due"],
                   int(value["open_invoices"]), value["last_payment"], value.get("opens_at"))

    def opens(self) -> datetime | None:
        """When the earliest invoice dated ahead starts to count (Invoiced sends no event then), or None."""
        return datetime.fromisoformat(self.opens_at) if self.opens_at else None


@dataclass(frozen=True)
class Wanted:
    """What a Keap record should show: custom field values by label, with each label's field type, whether the
    tag should be on, and the tag's name (`ReceivablesOptions.tag`; "": no tag)."""

    values: Values
    types: dict[str, str]
    tagged: bool
    tag: str = ""


@dataclass(frozen=True)
class Written:
    """What was last written to a Keap record: values by label, the tag (None: never set by us) and, when the sync
    put it on, its name (None on records tagged before names were kept: the tag configured then)."""

    values: Values = field(default_factory=dict)
    tagged: bool | None = None
    tag: str | None = None


@dataclass(frozen=True)
class Change:
    """A write to one Keap record: the values to set (None clears a field), the tag to apply (True, named
    `tag_name`) or remove (False), None where nothing changes; and `untag`, the name of a tag the sync put on the
    record under a former setting, to take off first."""

    values: Values
    tag: bool | None
    untag: str | None = None
    tag_name: str | None = None

    def sent(self, wanted: Wanted) -> Values:
        """What a write of the values sends: every wanted value (a PATCH replaces the record's array, so all of ours
        go), and the clears."""
        return {**self.values, **wanted.values}


def utc_moment(epoch: int | float) -> datetime | None:
    """An Invoiced timestamp (epoch seconds) as a UTC datetime; None beyond what a datetime holds (past year 9999,
    before year 1: Invoiced stores what it is sent, a typo'd year included)."""
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def utc_date(epoch: int | float) -> date:
    """An Invoiced timestamp's UTC date, held to the years a date holds (1 to 9999)."""
    moment = utc_moment(epoch)
    return moment.date() if moment is not None else (date.max if epoch > 0 else date.min)


def is_unsettled(invoice: Record) -> bool:
    """Issued (no draft), unpaid and not closed, whatever its date."""
    return not (invoice.get("draft") or invoice.get("paid") or invoice.get("closed"))


def is_open(invoice: Record, now: int | float) -> bool:
    """Unsettled and dated up to now: what Invoiced's balance counts."""
    return is_unsettled(invoice) and (invoice.get("date") or 0) <= now


def money(amount: Decimal, currency: str) -> str:
    """`amount` rounded to the currency's smallest unit (CLDR via Babel), as decimal text."""
    exponent = Decimal(1).scaleb(-get_currency_precision(currency))
    return str(amount.quantize(exponent, rounding=ROUND_HALF_UP))


def payment_date(payment: Record | None) -> str | None:
    """The ISO date (UTC) of a payment, None without one."""
    return utc_date(payment["date"]).isoformat() if payment and payment.get("date") else None


def owed(invoices: Iterable[Record], now: int | float, last_payment: str | None) -> Figures:
    """A customer's figures at `now` (Invoiced's clock, epoch seconds) from its invoices (those not open are left
    out; of those dated ahead, the earliest date is kept: `Figures.opens_at`) and the date of its last payment."""
    balances: dict[str, Decimal] = {}
    past_due: dict[str, Decimal] = {}
    oldest: int | None = None
    ahead: int | None = None
    count = 0
    for invoice in invoices:
        if not is_open(invoice, now):
            if is_unsettled(invoice) and (ahead is None or invoice["date"] < ahead):
                ahead = int(invoice["date"])  # dated ahead: it counts from its date
            continue
        count += 1
        currency = str(invoice["currency"]).upper()
        balance = Decimal(str(invoice.get("balance") or 0))
        balances[currency] = balances.get(currency, Decimal(0)) + balance
        if invoice.get("status") == "past_due":
            past_due[currency] = past_due.get(currency, Decimal(0)) + balance
            due = invoice.get("due_date")
            if due and (oldest is None or due < oldest):
                oldest = int(due)
    return Figures(
        as_of=utc_date(now).isoformat(),
        balances={currency: money(amount, currency) for currency, amount in sorted(balances.items())},
        past_due={currency: money(amount, currency) for currency, amount in sorted(past_due.items())},
        oldest_past_due=utc_date(oldest).isoformat() if oldest is not None else None,
        open_invoices=count,
        last_payment=last_payment,
        opens_at=_iso(utc_moment(ahead)) if ahead is not None else None,  # past year 9999: never comes
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def labelled(label: str, currency: str, keap_currency: str) -> str:
    """A money field's label: as configured in the account's currency, else naming the currency."""
    return label if currency == keap_currency else f"{label} ({currency})"


def _amount(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def keap_values(figures: Figures, options: ReceivablesOptions, keap_currency: str) -> Wanted:
    """The custom field values (by label) and the tag a Keap record should show for `figures`."""
    values: Values = {}
    types: dict[str, str] = {}
    for figure in options.fields:
        label = options.label(figure)
        if figure in MONEY:
            amounts = figures.balances if figure == "balance" else figures.past_due
            for currency in sorted({keap_currency, *amounts}):
                name = labelled(label, currency, keap_currency)
                _unshared(values, name)
                values[name] = _amount(amounts.get(currency, "0"))
                types[name] = FIELD_TYPES[figure] if currency == keap_currency else FOREIGN_MONEY_TYPE
            continue
        _unshared(values, label)
        types[label] = FIELD_TYPES[figure]
        if figure == "days_past_due":
            oldest = figures.oldest_past_due
            days = (date.fromisoformat(figures.as_of) - date.fromisoformat(oldest)).days if oldest else 0
            values[label] = max(0, days)
        elif figure == "open_invoices":
            values[label] = figures.open_invoices
        else:
            values[label] = figures.last_payment
    owes_late = any(Decimal(amount) > 0 for amount in figures.past_due.values())
    return Wanted(values, types, tagged=owes_late and bool(options.tag), tag=options.tag)


class SharedLabel(ValueError):
    """Two figures would be written under one label: nothing is written (the settings check refuses such labels)."""


def _unshared(values: Values, label: str) -> None:
    """Two figures never go to one label (the settings check refuses labels that could; this keeps it so)."""
    if any(name.casefold() == label.casefold() for name in values):
        raise SharedLabel(f"receivables: two figures would be written to the Keap field {label!r}; nothing is "
                          "written; choose other labels in [receivables.labels]")


def _blank(content: Content) -> bool:
    """Nothing to show: a zero or an empty field (the economy of a record nothing was written to)."""
    return content is None or content == 0 or content == ""


def same_content(left: Any, right: Any) -> bool:
    """Whether two contents of one field are the same value: exactly, a zero is not a blank; numbers by value (Keap
    may answer 10.0 for 10), an empty text as no value."""
    left, right = (None if value == "" else value for value in (left, right))
    if left is None or right is None:
        return left is right
    numbers = all(isinstance(value, int | float) and not isinstance(value, bool) for value in (left, right))
    if numbers:
        return Decimal(str(left)) == Decimal(str(right))
    return bool(left == right)


def decide(wanted: Wanted, written: Written | None) -> Change | None:
    """The write that brings a Keap record from `written` (None: nothing written to this record) to `wanted`. A
    tag the sync put on under another name than `wanted.tag` (renamed, or turned off) is taken off (`untag`); a
    record tagged before names were kept holds the configured tag."""
    before = written or Written()
    labels = sorted(set(wanted.values) | set(before.values))
    values = {label: wanted.values.get(label) for label in labels
              if not same_content(wanted.values.get(label), before.values.get(label))}
    if not before.values and all(_blank(content) for content in values.values()):
        values = {}  # nothing written there yet, nothing to show: a blank field says as much
    former = before.tag if before.tagged is True and before.tag is not None and before.tag != wanted.tag else None
    on = before.tagged is True and former is None
    tag: bool | None = None
    if wanted.tagged and not on:
        tag = True
    elif not wanted.tagged and on:
        tag = False
    if not values and tag is None and former is None:
        return None
    return Change(values, tag, untag=former, tag_name=wanted.tag if tag else None)


def after(written: Written | None, change: Change, *, values_written: bool, tag_written: bool,
          untag_written: bool = False, sent: Values | None = None) -> Written:
    """What a record holds once the parts of `change` that went through (`values_written`, `tag_written`,
    `untag_written`) did; `sent`: the values the write sent (`Change.sent`, by label: None cleared), else the
    change's."""
    before = written or Written()
    values = dict(before.values)
    if values_written:
        values.update(change.values if sent is None else sent)
    values = {label: content for label, content in values.items() if content is not None}
    tagged, tag = before.tagged, before.tag
    if change.untag is not None and untag_written:
        tagged, tag = False, None
    if change.tag is not None and tag_written:
        tagged, tag = change.tag, change.tag_name if change.tag else None
    return Written(values, tagged, tag)


@dataclass(frozen=True)
class Drift:
    """Where a Keap record differs from what the sync wrote there (a Keap user's or automation's edit, a field or
    the tag deleted in Keap): by label, (what was written, what Keap holds; None: blank), and whether the tag the sync
    put on is missing."""

    values: dict[str, tuple[Content, Any]]
    tag_missing: bool = False

    def held(self, before: Written) -> Written:
        """What the record holds, as found: the state brought to it, so that the next write puts right what
        differs (the figures are one-way: Invoiced's, never a Keap user's)."""
        values = {**before.values, **{label: found for label, (_, found) in self.values.items()}}
        values = {label: content for label, content in values.items() if content is not None and content != ""}
        if self.tag_missing:
            return Written(values, False, None)
        return Written(values, before.tagged, before.tag)


def drift(written: Written, found: Mapping[str, Any], defined: Iterable[str], tags: set[str] | None,
          tag_ids: Mapping[str, str], configured_tag: str) -> Drift | None:
    """How a record Keap answers differs from `written`: `found` its contents by label (the labels of ours it has a
    value for), `defined` the labels of ours whose fields are known (what can be compared), `tags` the ids of the
    tags on it (None: not read), `tag_ids` the ids of the sync's tags by name. None when it holds what was
    written."""
    known = set(defined)
    labels = sorted((set(written.values) | {label for label, content in found.items() if content not in (None, "")}) & known)
    values = {label: (written.values.get(label), found.get(label)) for label in labels
              if not same_content(written.values.get(label), found.get(label))}
    name = (written.tag or configured_tag) if written.tagged else None
    tag_missing = bool(name and tags is not None and name in tag_ids and tag_ids[name] not in tags)
    return Drift(values, tag_missing) if values or tag_missing else None


def merged_custom_fields(current: Sequence[Record], ours: Mapping[str, Content]) -> list[Record]:
    """A record's `custom_fields` with our fields (by id) set to `ours` (None: left out, which clears it) and every
    other field kept as it is: Keap replaces the whole array on a PATCH ("any item not listed here will be
    removed")."""
    kept = [dict(value) for value in current if str(value.get("id")) not in ours]
    mine = [{"id": field_id, "content": content} for field_id, content in ours.items() if content is not None]
    return sorted([*kept, *mine], key=lambda value: str(value["id"]))


def customer_named(event: Event) -> str | None:
    """The customer an invoice, payment or credit note event names; None for other events."""
    return event.customer if event.kind in EVENT_OBJECTS else None


@dataclass(frozen=True)
class Named:
    """The customers a pass's events name: whose figures to read again (`changed`), of which the payments too
    (`paid`), and which are gone (`removed`)."""

    changed: set[str] = field(default_factory=set)
    paid: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)


def named_by(events: Iterable[Event], removed_by: Callable[[Event], str | None]) -> Named:
    """Sort `events` (oldest first) into `Named`; `removed_by(event)` is the customer an event says is gone (a
    delete, or the loser of a merge, whose invoices and payments the survivor takes: the survivor is changed)."""
    named = Named()
    for event in events:
        gone = removed_by(event)
        if gone is not None:
            named.removed.add(gone)
            named.changed.discard(gone)
            if event.type == "customer.merged" and event.object_id:
                named.changed.add(event.object_id)
                named.paid.add(event.object_id)
            continue
        customer = customer_named(event)
        if customer is None:
            continue
        named.changed.add(customer)
        if event.kind in PAYMENT_OBJECTS:
            named.paid.add(customer)
    named.paid.intersection_update(named.changed)
    return named
