"""Keap v2 request bodies as pydantic models: what the API accepts, its documented limits and normalisation.

Limits are the ones Keap documents (SDK 2.0.26 models): slot-dependent lengths for email, phone and address
parts, alpha-3 country codes, `country_code` required with a region. Regions are stored as Keap does: given
as `US-AZ`, `AZ` or `Arizona`, kept as `region="Arizona"`, `region_code="US-AZ"`.
"""

from __future__ import annotations

from typing import Any, Literal

import pycountry
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from invoiced_keap.emulators.keap.errors import KeapError

EmailSlot = Literal["EMAIL1", "EMAIL2", "EMAIL3"]
PhoneSlot = Literal["PHONE1", "PHONE2", "PHONE3", "PHONE4", "PHONE5"]
FaxSlot = Literal["FAX1", "FAX2"]
AddressSlot = Literal["BILLING", "SHIPPING", "OTHER"]
SocialAccountType = Literal["FACEBOOK", "LINKED_IN", "TWITTER", "INSTAGRAM", "SNAPCHAT", "YOUTUBE", "PINTEREST"]
# `CreateCustomFieldRequest.field_type` and `CustomFieldMetaData.field_type` (v1 spells them Currency, WholeNumber, ...)
FieldType = Literal[
    "CURRENCY", "DATE", "DATE_TIME", "DAY_OF_WEEK", "DECIMAL_NUMBER", "DRILLDOWN", "DROPDOWN", "EMAIL", "LIST_BOX",
    "MONTH", "NAME", "PERCENT", "PHONE_NUMBER", "RADIO", "SOCIAL_SECURITY_NUMBER", "STATE", "TEXT", "TEXT_AREA",
    "USER", "USER_LIST_BOX", "WEBSITE", "WHOLE_NUMBER", "YEAR", "YES_NO",
]  # fmt: skip
SourceType = Literal[
    "API", "APPOINTMENT", "FORM_API_HOSTED", "FORM_API_INTERNAL", "IMPORT", "INTERNAL_FORM", "LANDING_PAGE",
    "MANUAL", "OTHER", "UNKNOWN", "WEBFORM",
]  # fmt: skip

EMAIL_MAX = {"EMAIL1": 75, "EMAIL2": 100, "EMAIL3": 100}
PHONE_MAX = {"PHONE1": 40, "PHONE2": 40, "PHONE3": 40, "PHONE4": 20, "PHONE5": 20}
# address part -> slot -> max length; an address without a slot (a company's) gets the BILLING limits
ADDRESS_MAX = {
    "line1": {"BILLING": 75, "SHIPPING": 100, "OTHER": 100},
    "line2": {"BILLING": 75, "SHIPPING": 100, "OTHER": 100},
    "locality": {"BILLING": 50, "SHIPPING": 100, "OTHER": 100},
    "postal_code": {"BILLING": 15, "SHIPPING": 20, "OTHER": 15},
    "zip_code": {"BILLING": 15, "SHIPPING": 20, "OTHER": 15},
    "region": {"BILLING": 50, "SHIPPING": 50, "OTHER": 50},
    "zip_four": {"BILLING": 10, "SHIPPING": 10, "OTHER": 10},
}


def check_length(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise ValueError(f"{name} exceeds the maximum length of {limit} characters")


class Body(BaseModel):
    """Unknown properties and loose types are rejected, as a typed API would."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EmailAddress(Body):
    email: str
    field: EmailSlot | None = None
    opt_in_reason: str | None = None

    @model_validator(mode="after")
    def _valid_email(self) -> EmailAddress:
        check_length(f"{self.field or 'EMAIL1'} email", self.email, EMAIL_MAX[self.field or "EMAIL1"])
        try:
            validate_email(self.email, check_deliverability=False, test_environment=True)
        except EmailNotValidError as error:
            raise ValueError(f"Invalid email address {self.email!r}: {error}") from None
        return self


class PhoneNumber(Body):
    number: str
    extension: str | None = None
    type: str | None = None
    field: PhoneSlot | None = None

    @model_validator(mode="after")
    def _length(self) -> PhoneNumber:
        check_length(f"{self.field or 'PHONE1'} number", self.number, PHONE_MAX[self.field or "PHONE1"])
        return self


class FaxNumber(Body):
    number: str
    type: str | None = None
    field: FaxSlot | None = None


class Address(Body):
    field: AddressSlot | None = None
    line1: str | None = None
    line2: str | None = None
    locality: str | None = None
    region: str | None = None
    region_code: str | None = None
    country_code: str | None = None
    country: str | None = Field(default=None, max_length=100)
    postal_code: str | None = None
    zip_code: str | None = None
    zip_four: str | None = None

    @model_validator(mode="after")
    def _limits_and_places(self) -> Address:
        slot = self.field or "BILLING"
        for part, limits in ADDRESS_MAX.items():
            check_length(f"{slot} {part}", getattr(self, part), limits[slot])
        if self.country_code is None:
            if self.region or self.region_code:
                raise ValueError("country_code is required if region is specified")
            return self
        country = pycountry.countries.get(alpha_3=self.country_code.upper())
        if country is None:
            raise ValueError(f"{slot} country_code {self.country_code!r} is not an ISO 3166-1 alpha-3 code")
        self.country_code, self.country = country.alpha_3, country.name
        if self.region or self.region_code:
            subdivision = find_region(country.alpha_2, self.region_code or self.region or "")
            if subdivision is None:
                raise ValueError(f"{slot} Region is invalid")
            self.region, self.region_code = subdivision.name, subdivision.code
        return self


def find_region(alpha_2: str, given: str) -> Any:
    """The country's subdivision named by `US-AZ`, `AZ` or `Arizona` (case-insensitive), or None."""
    wanted = given.strip().casefold()
    for subdivision in pycountry.subdivisions.get(country_code=alpha_2) or []:
        code = subdivision.code.casefold()
        if wanted in (code, code.split("-", 1)[1], subdivision.name.casefold()):
            return subdivision
    return None


class CustomFieldValue(Body):
    id: str
    content: Any = None


class BasicCompany(Body):
    id: str
    company_name: str | None = None


class CompanyRequest(Body):
    """`CreateCompanyRequest` and `UpdateCompanyRequest` (the spec declares them identical)."""

    company_name: str | None = None
    address: Address | None = None
    email_address: EmailAddress | None = None
    phone_number: PhoneNumber | None = None
    fax_number: FaxNumber | None = None
    notes: str | None = None
    website: str | None = None
    suffix: str | None = None
    title: str | None = None
    custom_fields: list[CustomFieldValue] | None = None
    anniversary_date: str | None = None
    assistant_name: str | None = None
    assistant_phone: str | None = None
    billing_information: str | None = None
    birth_date: str | None = None
    contact_type: str | None = None
    first_name: str | None = None
    job_title: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    preferred_name: str | None = None
    owner_id: str | None = None
    referral_code: str | None = None
    spouse_name: str | None = None


class SocialAccount(Body):
    name: str | None = Field(default=None, max_length=255)
    type: SocialAccountType


class OriginRequest(Body):
    ip_address: str | None = None


def distinct_slots(name: str, items: list[Any] | None) -> None:
    """Each slot (EMAIL1, BILLING, ...) holds one value; a contact's array items must name theirs."""
    if items is None:
        return
    slots = [item.field for item in items]
    if None in slots:
        raise ValueError(f"{name}: every item needs a field")
    if len(set(slots)) != len(slots):
        raise ValueError(f"{name}: each field may appear only once")


class ContactRequest(Body):
    """`CreateUpdateContactRequest`."""

    given_name: str | None = Field(default=None, max_length=40)
    family_name: str | None = Field(default=None, max_length=40)
    middle_name: str | None = Field(default=None, max_length=100)
    preferred_name: str | None = Field(default=None, max_length=100)
    spouse_name: str | None = Field(default=None, max_length=100)
    billing_information: str | None = Field(default=None, max_length=100)
    job_title: str | None = Field(default=None, max_length=255)
    website: str | None = Field(default=None, max_length=100)
    assistant_name: str | None = Field(default=None, max_length=20)
    assistant_phone: str | None = Field(default=None, max_length=15)
    prefix: str | None = None
    suffix: str | None = None
    anniversary_date: str | None = None
    birth_date: str | None = None
    contact_type: str | None = None
    leadsource_id: str | None = None
    owner_id: str | None = None
    preferred_locale: str | None = None
    referral_code: str | None = None
    source_type: SourceType | None = None
    time_zone: str | None = None
    company: BasicCompany | None = None
    origin: OriginRequest | None = None
    email_addresses: list[EmailAddress] | None = None
    phone_numbers: list[PhoneNumber] | None = None
    fax_numbers: list[FaxNumber] | None = None
    addresses: list[Address] | None = None
    social_accounts: list[SocialAccount] | None = None
    custom_fields: list[CustomFieldValue] | None = None

    @model_validator(mode="after")
    def _slots(self) -> ContactRequest:
        for name in ("email_addresses", "phone_numbers", "fax_numbers", "addresses"):
            distinct_slots(name, getattr(self, name))
        return self


class ProductInventory(Body):
    inventory_limit: int | None = Field(default=None, ge=0)
    inventory_count: int | None = Field(default=None, ge=0)
    out_of_stock_enabled: bool | None = None
    email_for_inventory_notifications: str | None = None


class ProductFields(Body):
    """Fields shared by `CreateProductRequest_Detail` and `UpdateProductRequest_Detail`."""

    name: str | None = None
    sku: str | None = None
    price: int | None = Field(default=None, ge=0)
    short_description: str | None = None
    description: str | None = None
    active: bool | None = None
    shippable: bool | None = None
    weight: float | int | None = Field(default=None, ge=0)
    taxable: bool | None = None
    subscription_only: bool | None = None
    storefront_hidden: bool | None = None
    country_taxable: bool | None = None
    state_taxable: bool | None = None
    city_taxable: bool | None = None
    top_html: str | None = None
    bottom_html: str | None = None


class CreateProductRequest(ProductFields):
    name: str
    price: int = Field(ge=0)
    short_description: str
    inventory: ProductInventory | None = None


class UpdateProductRequest(ProductFields):
    inventory_limit: int | None = Field(default=None, ge=0)
    out_of_stock_enabled: bool | None = None
    email_for_inventory_notifications: str | None = None
    is_package: bool | None = None
    needs_digital_delivery: bool | None = None
    delivery_description: str | None = None


class CustomFieldOptionRequest(Body):
    """`CreateCustomFieldOptionRequest`."""

    label: str


class CreateCustomFieldRequest(Body):
    """`CreateCustomFieldRequest`: `label` and `field_type` are required."""

    label: str
    field_type: FieldType
    options: list[CustomFieldOptionRequest] | None = None
    group_id: str | None = None
    user_group_id: str | None = None


class CategoryReference(Body):
    id: str


class TagRequest(Body):
    """`CreateUpdateTagRequest` (the spec requires nothing; a create without a name is refused)."""

    name: str | None = None
    description: str | None = None
    category: CategoryReference | None = None


class TagCategoryRequest(Body):
    """`CreateUpdateTagCategoryRequest`."""

    name: str | None = None
    description: str | None = None


class ApplyRemoveTagRequest(Body):
    """`ApplyRemoveTagRequest`: `contact_ids` is required and its items unique."""

    contact_ids: list[str]

    @model_validator(mode="after")
    def _unique(self) -> ApplyRemoveTagRequest:
        if len(set(self.contact_ids)) != len(self.contact_ids):
            raise ValueError("contact_ids: each id may appear only once")
        return self


def parse_body(model: type[Body], body: Any) -> dict[str, Any]:
    """Validate a JSON body; answer the fields it set (normalised), or raise Keap's 400."""
    if not isinstance(body, dict):
        raise KeapError(400, "Request body must be a JSON object")
    try:
        parsed = model.model_validate(body)
    except ValidationError as error:
        raise KeapError(400, "; ".join(describe(problem) for problem in error.errors())) from None
    return parsed.model_dump(exclude_unset=True)


def describe(problem: Any) -> str:
    where = ".".join(str(part) for part in problem["loc"])
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
