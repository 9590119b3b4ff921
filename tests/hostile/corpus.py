"""The hostile-input corpus: Invoiced records that real accounts contain, each with the outcome the sync documents.

Each `Case` is an Invoiced customer or item body and what must become of it:
- `Synced(keap, failure)`: linked to a new Keap twin whose rule values (neutral form, `rule.value("keap", record)`) are
  `keap`; rules not named there are not checked. The normalisations are the documented ones: text is stripped
  and empty means none (`mapping.text`), Keap's limits cut with a warning (`mapping.truncate`), names split by
  `mapping.split_name`, countries ISO alpha-2 <-> alpha-3 (an unknown code is kept), an address with only a
  country is no address (`mapping.is_blank_address`), HTML and any Unicode pass through untouched. `failure`
  names a failure the linked record must also have (none otherwise).
- `Failed(message)`: no link; the failures list holds the record with the refusing system's own message.
- `RejectedByInvoiced(message)`: Invoiced itself refuses the body at creation, so it never reaches the sync
  (kept to document the boundary; not part of the sync test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Value = Any


@dataclass(frozen=True)
class Synced:
    keap: dict[str, Value] = field(default_factory=dict)
    failure: str | None = None  # linked, yet one follow-up write refused (e.g. the metadata stamp)


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class RejectedByInvoiced:
    message: str


Outcome = Synced | Failed | RejectedByInvoiced


@dataclass(frozen=True)
class Case:
    label: str
    kind: str  # "customer" or "item"
    body: dict[str, Any]
    expected: Outcome


NO_ADDRESS = {"line1": None, "line2": None, "city": None, "region": None, "postal_code": None, "country": None}
LONG = "Supercalifragilisticexpialidocious" * 4  # 136 characters, one word
KEAP_CONTACT_REFUSAL = "Contact must contain at least one email address, phone number or address"


def company(label: str, expected: Outcome, **body: Any) -> Case:
    return Case(label, "customer", {"type": "company", **body}, expected)


def person(label: str, expected: Outcome, **body: Any) -> Case:
    return Case(label, "customer", {"type": "person", **body}, expected)


def item(label: str, expected: Outcome, **body: Any) -> Case:
    return Case(label, "item", {"unit_cost": 1, "currency": "usd", **body}, expected)


CASES: list[Case] = [
    # --- names ------------------------------------------------------------------------------------
    company("overlong company name (255 chars)", Synced({"name": "Acme " + "x" * 250}), name="Acme " + "x" * 250),
    company("company name of 256 chars", RejectedByInvoiced("Name must be a string between 1 and 255 characters."), name="y" * 256),
    company("empty company name", RejectedByInvoiced("Name is missing"), name=""),
    company("null company name", RejectedByInvoiced("Name is missing"), name=None),
    company("whitespace-only company name", Failed("company_name is required"), name="   "),
    company("tabs and newlines around a name", Synced({"name": "Padded Ltd"}), name="\t Padded Ltd \n"),
    company("emoji company name", Synced({"name": "🚀 Rocket Co 🚀"}), name="🚀 Rocket Co 🚀"),
    company("right-to-left company name", Synced({"name": "شركة الأمل"}), name="شركة الأمل"),
    company("mixed RTL/LTR with bidi marks", Synced({"name": "\u202eReversed\u202c Ltd"}), name="\u202eReversed\u202c Ltd"),
    company("HTML in a company name", Synced({"name": "<script>alert(1)</script> Inc"}), name="<script>alert(1)</script> Inc"),
    company("SQL-looking company name", Synced({"name": "Robert'); DROP TABLE links;--"}), name="Robert'); DROP TABLE links;--"),
    company("number as a company name", Synced({"name": "12345"}), name="12345"),
    company("zero-width characters", Synced({"name": "Zero\u200bWidth"}), name="Zero\u200bWidth"),
    company("combining accents", Synced({"name": "Cafe\u0301 Société"}), name="Cafe\u0301 Société"),
    company("CJK company name", Synced({"name": "株式会社テスト"}), name="株式会社テスト"),
    person("overlong person name", Synced({"name": f"{LONG[:40]} Smith"}), name=f"{LONG} Smith", email="long.name@example.com"),
    person("one-word person name", Synced({"name": "Madonna"}), name="Madonna", email="madonna@example.com"),
    person("name with title and suffix", Synced({"name": "Dr. Anne-Marie O'Neil Jr."}), name="Dr. Anne-Marie O'Neil Jr.",
           email="oneil@example.com"),
    person("'Family, Given' order", Synced({"name": "John Smith"}), name="Smith, John", email="john.smith@example.com"),
    person("emoji person name", Synced({"name": "Ana 😀 Lima"}), name="Ana 😀 Lima", email="ana.lima@example.com"),
    person("right-to-left person name", Synced({"name": "محمد الأحمد"}), name="محمد الأحمد", email="m.ahmad@example.com"),
    person("whitespace-only person name (Keap takes a contact without names)", Synced({"name": None, "email": "blank.name@example.com"}),
           name="  ", email="blank.name@example.com"),
    person("internal runs of spaces", Synced({"name": "Mary Jane Watson"}), name="Mary   Jane   Watson", email="mj@example.com"),
    # --- emails -------------------------------------------------------------------------------------
    person("invalid email", RejectedByInvoiced("Email must be a valid email address"), name="Bad Email", email="not-an-email"),
    person("email with spaces", RejectedByInvoiced("Email must be a valid email address"), name="Space Email", email="a b@example.com"),
    person("unicode email (IDN domain)", Synced({"email": "jose@exämple.com"}), name="José Idn", email="jose@exämple.com"),
    person("unicode local part", Synced({"email": "用户@example.com"}), name="Unicode Local", email="用户@example.com"),
    person("upper-case email", Synced({"email": "UPPER@EXAMPLE.COM"}), name="Upper Case", email="UPPER@EXAMPLE.COM"),
    person("email longer than Keap's 75", Failed("email"), name="Long Mail", email=("m" * 64) + "@" + ("d" * 20) + ".example.com"),
    person("no email, phone or address", Failed(KEAP_CONTACT_REFUSAL), name="Walk In"),
    person("only a phone", Synced({"phone": "+1 555 0100", "email": None}), name="Phone Only", phone="+1 555 0100"),
    person("only a country (no address)", Failed(KEAP_CONTACT_REFUSAL), name="Country Only", country="FR"),
    company("plus-addressed email", Synced({"email": "billing+invoices@example.com"}), name="Plus Addressing",
            email="billing+invoices@example.com"),
    # --- phones and numbers as strings ----------------------------------------------------------
    company("phone as a number", Synced({"phone": "5550100"}), name="Numeric Phone", phone=5550100),
    company("phone with letters", Synced({"phone": "1-800-FLOWERS"}), name="Vanity Phone", phone="1-800-FLOWERS"),
    company("phone longer than Keap's 40", Synced({"phone": "+1 555 0100 ext. 1234567890 1234567890 12"[:40].rstrip()}),
            name="Long Phone", phone="+1 555 0100 ext. 1234567890 1234567890 1234"),
    company("postal code as a number", Synced({"address": {**NO_ADDRESS, "line1": "1 Main St", "postal_code": "2101", "country": "US"}}),
            name="Numeric Zip", address1="1 Main St", postal_code=2101, country="US"),
    # --- countries and addresses ------------------------------------------------------------------
    company("unknown country code", RejectedByInvoiced("Country is invalid"), name="Atlantis Ltd", country="XX"),
    company("alpha-3 country code", RejectedByInvoiced("Country is invalid"), name="Alpha Three", country="USA"),
    company("lower-case country", Synced({"address": {**NO_ADDRESS, "city": "Berlin", "country": "DE"}}),
            name="Lower Country", city="Berlin", country="de"),
    company("address with only a country", Synced({"address": NO_ADDRESS}), name="Country Only Co", country="GB"),
    company("unicode address", Synced({"address": {**NO_ADDRESS, "line1": "Straße 1", "city": "München", "country": "DE"}}),
            name="Unicode Street", address1="Straße 1", city="München", country="DE"),
    company("overlong street line", Synced({"address": {**NO_ADDRESS, "line1": ("Long Street " * 10)[:75].rstrip(), "country": "US"}}),
            name="Long Street Co", address1="Long Street " * 10, country="US"),
    company("government customer", Synced({"name": "City of Springfield"}), name="City of Springfield", **{"type": "government"}),
    Case("customer with no type", "customer", {"name": "Typeless Inc"}, Synced({"name": "Typeless Inc"})),
    company("unknown customer type", RejectedByInvoiced("Type must be one of the allowed values"), name="Weird Type",
            **{"type": "alien"}),
    # --- metadata -------------------------------------------------------------------------------------
    # metadata already full (10 keys): see test_corpus.test_a_refused_id_stamp_stays_in_the_failures_list (a known defect)
    company("metadata with 9 keys", Synced({"name": "Nine Keys"}), name="Nine Keys", metadata={f"k{n}": "v" for n in range(9)}),
    company("11 metadata keys", RejectedByInvoiced("metadata"), name="Eleven Keys", metadata={f"k{n}": "v" for n in range(11)}),
    # --- items ---------------------------------------------------------------------------------------
    item("HTML in a description", Synced({"description": "<b>Bold</b> & <i>italic</i><br/>"}), name="Html Item",
         description="<b>Bold</b> & <i>italic</i><br/>"),
    item("emoji item name", Synced({"name": "☕ Coffee"}), name="☕ Coffee"),
    item("RTL item description", Synced({"description": "وصف المنتج"}), name="Arabic Item", description="وصف المنتج"),
    item("null description", Synced({"description": None}), name="No Description", description=None),
    item("whitespace-only description", Synced({"description": None}), name="Blank Description", description="   "),
    item("whitespace-only item name", Failed("name"), name="   "),
    item("overlong description (5,000 chars)", Synced({"description": "lorem ipsum " * 416 + "lore"}), name="Long Description",
         description="lorem ipsum " * 416 + "lore"),
    item("number as an item description", Synced({"description": "42"}), name="Numeric Description", description=42),
    item("unit cost as a string", RejectedByInvoiced("Unit Cost only allows numbers"), name="String Cost", unit_cost="12.50"),
    item("zero-decimal currency", Synced({"name": "Yen Item"}), name="Yen Item", unit_cost=1200, currency="jpy"),
    item("three-decimal currency", Synced({"name": "Dinar Item"}), name="Dinar Item", unit_cost=1.234, currency="kwd"),
    item("negative unit cost (Keap prices are >= 0)", Failed("keap: price: Input should be greater than or equal to 0"),
         name="Refund Item", unit_cost=-5),
]
