"""The sample account used by `emulate --seed demo` and the demo: a small business's data, warts included.

Most records are ordinary; a few are hostile on purpose (a person with no email, phone or address, which
Keap refuses as a contact; an overlong name; right-to-left text; HTML in a description), so the demo shows
what happens to records that one system accepts and the other does not.
"""

from __future__ import annotations

from typing import Any

INVOICED_SAMPLE: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"name": "Acme Corporation", "type": "company", "email": "billing@acme.example", "phone": "+1 555 0100",
         "address1": "1 Main Street", "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US"},
        {"name": "Globex Ltd", "type": "company", "email": "accounts@globex.example", "country": "GB"},
        {"name": "Initech", "type": "company", "phone": "+1 555 0199", "country": "US"},
        {"name": "City of Springfield", "type": "government", "country": "US"},
        {"name": "Helping Hands", "type": "non_profit", "email": "info@helpinghands.example", "country": "CA"},
        {"name": "Umbrella Retail", "country": "DE"},
        {"name": "Jane Cooper", "type": "person", "email": "jane.cooper@example.com", "phone": "+1 555 0142"},
        {"name": "Marcus Lee", "type": "person", "email": "marcus@example.com", "country": "US",
         "address1": "22 Oak Avenue", "city": "Austin", "state": "TX", "postal_code": "73301"},
        {"name": "Sofía Martínez", "type": "person", "email": "sofia.martinez@example.es", "country": "ES"},
        {"name": "Dr. Anne-Marie O'Neil Jr.", "type": "person", "email": "amoneil@example.ie", "country": "IE"},
        {"name": "محمد الأحمد", "type": "person", "email": "m.alahmad@example.ae", "country": "AE"},
        {"name": "Walk-in Customer", "type": "person"},
        {"name": "Bartholomew Maximilian Fitzgerald-Worthington the Third of Greater Upper Sussex", "type": "person",
         "email": "bart@example.co.uk", "country": "GB"},
    ],
    "items": [
        {"id": "consulting-hour", "name": "Consulting (hour)", "description": "Senior consultant, billed hourly",
         "unit_cost": 150, "currency": "usd", "type": "service"},
        {"id": "setup-fee", "name": "Setup fee", "description": "One-time onboarding", "unit_cost": 499.5,
         "currency": "usd"},
        {"id": "support-plan", "name": "Support plan", "description": "<b>Priority</b> support & SLA",
         "unit_cost": 99, "currency": "usd", "type": "service"},
        {"name": "Widget", "description": "Blue widget, 10 cm", "unit_cost": 12.5, "currency": "usd",
         "type": "product"},
        {"name": "Ramen bowl", "description": "ラーメン丼", "unit_cost": 1200, "currency": "jpy", "type": "product"},
    ],
}

KEAP_SAMPLE: dict[str, list[dict[str, Any]]] = {
    # An existing CRM: one company and one contact already match Invoiced records, so the first sync links them.
    "companies": [
        {"company_name": "Globex Ltd", "email_address": {"email": "hello@globex.example", "field": "EMAIL1"}},
        {"company_name": "Stark Industries"},
    ],
    "contacts": [
        {"given_name": "Jane", "family_name": "Cooper",
         "email_addresses": [{"email": "jane.cooper@example.com", "field": "EMAIL1"}]},
        {"given_name": "Peter", "family_name": "Parker",
         "email_addresses": [{"email": "peter@example.com", "field": "EMAIL1"}]},
    ],
    "products": [
        {"name": "Gift card", "price": 2500, "short_description": "Gift card", "sku": "GIFT-25"},
    ],
}
