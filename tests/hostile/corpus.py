"""The hostile-input corpus: Invoiced records that real accounts contain, each with the outcome the sync documents.

Each `Case` is an Invoiced customer or item body and what must become of it:
- `Synced(keap, failure, lossy)`: linked to a new Keap twin whose rule values (neutral form, `rule.value("keap", record)`)
  are `keap`; rules not named there are not checked; `lossy` names the fields the link's lossy-carry notes must be
  about (none otherwise). The normalisations are the documented ones: text is stripped and empty means none
  (`mapping.text`), Keap's limits cut a name, street or city (`mapping.truncate`) and leave out a phone number,
  email address or region Keap cannot hold (`mapping.leave_out`, `mapping.region_for_keap`), a price is in the
  configured Keap currency or 0 (`mapping.keap_price`), each with a lossy-carry note; names split by
  `mapping.split_name`, countries ISO alpha-2 <-> alpha-3 (an unknown code is kept), an address with only a
  country is no address (`mapping.is_blank_address`), HTML and any Unicode pass through untouched. `failure`
  names a failure the linked record must also have (none otherwise).
- `Failed(message)`: no link; the failures list holds the record with the refusing system's own message (for a
  create Keap's documented rules refuse, that message, not sent: `Flow.keap_needs`).
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
    lossy: tuple[str, ...] = ()  # the fields carried with loss (their notes are on the link)


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
    company("tabs and newlines around a name (trimmed, noted)", Synced({"name": "Padded Ltd"}, lossy=("name",)), name="\t Padded Ltd \n"),
    company("emoji company name", Synced({"name": "🚀 Rocket Co 🚀"}), name="🚀 Rocket Co 🚀"),
    company("right-to-left company name", Synced({"name": "شركة الأمل"}), name="شركة الأمل"),
    company("mixed RTL/LTR with bidi marks", Synced({"name": "\u202eReversed\u202c Ltd"}), name="\u202eReversed\u202c Ltd"),
    company("HTML in a company name", Synced({"name": "<script>alert(1)</script> Inc"}), name="<script>alert(1)</script> Inc"),
    company("SQL-looking company name", Synced({"name": "Robert'); DROP TABLE links;--"}), name="Robert'); DROP TABLE links;--"),
    company("number as a company name", Synced({"name": "12345"}), name="12345"),
    company("zero-width characters", Synced({"name": "Zero\u200bWidth"}), name="Zero\u200bWidth"),
    company("combining accents", Synced({"name": "Cafe\u0301 Société"}), name="Cafe\u0301 Société"),
    company("CJK company name", Synced({"name": "株式会社テスト"}), name="株式会社テスト"),
    person("overlong person name", Synced({"name": f"{LONG[:40]} Smith"}, lossy=("given_name",)), name=f"{LONG} Smith",
           email="long.name@example.com"),
    person("given and middle names past 40 characters", Synced({"name": "Alexandrina Maximiliana Theodora Wilhelm Smith"},
           lossy=("given_name",)), name="Alexandrina Maximiliana Theodora Wilhelmina Smith", email="queen@example.com"),
    person("one-word person name", Synced({"name": "Madonna"}), name="Madonna", email="madonna@example.com"),
    person("name with title and suffix", Synced({"name": "Dr. Anne-Marie O'Neil Jr."}), name="Dr. Anne-Marie O'Neil Jr.",
           email="oneil@example.com"),
    person("'Family, Given' order", Synced({"name": "John Smith"}), name="Smith, John", email="john.smith@example.com"),
    person("emoji person name", Synced({"name": "Ana 😀 Lima"}), name="Ana 😀 Lima", email="ana.lima@example.com"),
    person("right-to-left person name", Synced({"name": "محمد الأحمد"}), name="محمد الأحمد", email="m.ahmad@example.com"),
    person("whitespace-only person name (Keap takes a contact without names)", Synced({"name": None, "email": "blank.name@example.com"},
           lossy=("name",)), name="  ", email="blank.name@example.com"),
    person("internal runs of spaces", Synced({"name": "Mary Jane Watson"}), name="Mary   Jane   Watson", email="mj@example.com"),
    # --- emails -------------------------------------------------------------------------------------
    person("invalid email", RejectedByInvoiced("Email must be a valid email address"), name="Bad Email", email="not-an-email"),
    person("email with spaces", RejectedByInvoiced("Email must be a valid email address"), name="Space Email", email="a b@example.com"),
    person("unicode email (IDN domain)", Synced({"email": "jose@exämple.com"}), name="José Idn", email="jose@exämple.com"),
    person("unicode local part", Synced({"email": "用户@example.com"}), name="Unicode Local", email="用户@example.com"),
    person("upper-case email", Synced({"email": "UPPER@EXAMPLE.COM"}), name="Upper Case", email="UPPER@EXAMPLE.COM"),
    person("email longer than Keap's 75, nothing else", Failed(KEAP_CONTACT_REFUSAL + " (keap email_addresses[EMAIL1].email"),
           name="Long Mail", email=("m" * 64) + "@" + ("d" * 20) + ".example.com"),
    person("email longer than Keap's 75, with a phone", Synced({"email": None, "phone": "+1 555 0101"},
           lossy=("email_addresses[EMAIL1].email",)), name="Long Mail Phone", phone="+1 555 0101",
           email=("m" * 64) + "@" + ("d" * 20) + ".example.com"),
    person("no email, phone or address", Failed(KEAP_CONTACT_REFUSAL), name="Walk In"),
    person("only a phone", Synced({"phone": "+1 555 0100", "email": None}), name="Phone Only", phone="+1 555 0100"),
    person("only a country (no address)", Failed(KEAP_CONTACT_REFUSAL), name="Country Only", country="FR"),
    company("plus-addressed email", Synced({"email": "billing+invoices@example.com"}), name="Plus Addressing",
            email="billing+invoices@example.com"),
    # --- phones and numbers as strings ----------------------------------------------------------
    company("phone as a number", Synced({"phone": "5550100"}), name="Numeric Phone", phone=5550100),
    company("phone with letters", Synced({"phone": "1-800-FLOWERS"}), name="Vanity Phone", phone="1-800-FLOWERS"),
    company("phone longer than Keap's 40 (left out: a cut number is a wrong one)", Synced({"phone": None, "name": "Long Phone"},
            lossy=("phone_number[PHONE1].number",)), name="Long Phone", phone="+1 555 0100 ext. 1234567890 1234567890 1234"),
    person("phone longer than Keap's 40, with an email", Synced({"phone": None, "email": "long.phone@example.com"},
           lossy=("phone_numbers[PHONE1].number",)), name="Long Phone Person", email="long.phone@example.com",
           phone="+1 555 0100 ext. 1234567890 1234567890 1234"),
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
    company("overlong street line", Synced({"address": {**NO_ADDRESS, "line1": ("Long Street " * 10)[:75].rstrip(), "country": "US"}},
            lossy=("address.line1", "address1")), name="Long Street Co", address1="Long Street " * 10, country="US"),
    # --- regions Keap refuses ("Region is invalid"): left out, the rest of the record goes -----------------
    person("a county in the state field", Synced({"name": "County Person", "email": "county@example.com",
           "address": {**NO_ADDRESS, "line1": "1 Lake Shore Dr", "city": "Chicago", "country": "US"}},
           lossy=("addresses[BILLING].region",)), name="County Person", email="county@example.com",
           address1="1 Lake Shore Dr", city="Chicago", state="Cook County", country="US"),
    company("a spelled-out province", Synced({"address": {**NO_ADDRESS, "city": "Toronto", "region": "CA-ON", "country": "CA"}}),
            name="Province Co", city="Toronto", state="Ontario", country="CA"),
    company("free text in the state field", Synced({"name": "Free Text Region", "address": {**NO_ADDRESS, "city": "Leeds",
            "country": "GB"}}, lossy=("address.region",)), name="Free Text Region", city="Leeds", state="West Yorks.", country="GB"),
    company("a region of another country", Synced({"address": {**NO_ADDRESS, "city": "Berlin", "country": "DE"}},
            lossy=("address.region",)), name="Wrong Country Region", city="Berlin", state="TX", country="DE"),
    person("only an address, with an invalid region", Synced({"name": "Only Address", "address": {**NO_ADDRESS,
           "line1": "2 Main St", "country": "US"}}, lossy=("addresses[BILLING].region",)), name="Only Address",
           address1="2 Main St", state="Springfield County", country="US"),
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
    item("whitespace-only description (left out, noted)", Synced({"description": None}, lossy=("description",)), name="Blank Description", description="   "),
    item("whitespace-only item name", Failed("name"), name="   "),
    item("overlong description (5,000 chars)", Synced({"description": "lorem ipsum " * 416 + "lore"}), name="Long Description",
         description="lorem ipsum " * 416 + "lore"),
    item("number as an item description", Synced({"description": "42"}), name="Numeric Description", description=42),
    item("unit cost as a string", RejectedByInvoiced("Unit Cost only allows numbers"), name="String Cost", unit_cost="12.50"),
    # --- prices: Keap prices every product in its one currency (`keap_currency`, USD here) ---------------
    item("zero-decimal currency (no price, not 1200 dollars)", Synced({"name": "Yen Item"}, lossy=("price",)), name="Yen Item",
         unit_cost=1200, currency="jpy"),
    item("three-decimal currency (no price)", Synced({"name": "Dinar Item"}, lossy=("price",)), name="Dinar Item",
         unit_cost=1.234, currency="kwd"),
    item("euro item in a dollar account", Synced({"name": "Euro Item"}, lossy=("price",)), name="Euro Item", unit_cost=10,
         currency="eur"),
    item("a cost finer than a cent", Synced({"name": "Fine Cost"}, lossy=("price",)), name="Fine Cost", unit_cost=1.005),
    item("negative unit cost (Keap prices are >= 0: price 0)", Synced({"name": "Refund Item"}, lossy=("price",)),
         name="Refund Item", unit_cost=-5),
]
