"""The custom fields defined on companies and contacts, and the check of the values records carry for them.

A field is created by `POST /v2/{companies,contacts}/model/customFields` (`CreateCustomFieldRequest`),
described as `CustomFieldMetaData`, and deleted by `DELETE .../model/customFields/{custom_field_id}` (204). What the spec leaves open is [inference] here:
- one id sequence serves both objects (Keap numbers custom fields account-wide);
- each object has one field group, "Custom Fields" (the spec's default tab); a `group_id` naming another is
  refused, since the emulated account has no other; `user_group_id` is accepted and not shown (the metadata
  has no such property);
- a label already used on the object (ignoring case) is refused, and `options` on a type without options;
- a deleted field's values leave every record, with no edit of the record (no update time, no hook), as the web
  app's delete does;
- `field_name`, the name filters use, is the label's letters and digits, each word capitalised, with a
  number added when another field of the object has it (the spec shows names like `firstName1` and `Score0`
  without saying how they are made).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from invoiced_keap.emulators.keap.bodies import CreateCustomFieldRequest, parse_body
from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.emulators.keap.field_contents import CHOICE_TYPES, content_problem
from invoiced_keap.mapping import Record

RECORD_TYPES = {"companies": "COMPANY", "contacts": "CONTACT"}
GROUPS = {"contacts": "1", "companies": "2"}  # each object's one group
GROUP_NAME = "Custom Fields"


def field_name(label: str, taken: set[str]) -> str:
    base = "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", label)) or "Field"
    name, number = base, 0
    while name.casefold() in taken:
        name, number = f"{base}{number}", number + 1
    return name


class CustomFieldModels:
    """Field definitions per object (`companies`, `contacts`), in creation order."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Record]] = {collection: {} for collection in RECORD_TYPES}
        self.last_id = 0
        self.last_option_id = 0

    def create(self, collection: str, body: Any) -> Record:
        values = parse_body(CreateCustomFieldRequest, body)
        label, field_type = values["label"].strip(), values["field_type"]
        model = self.fields[collection]
        if not label:
            raise KeapError(400, "label must not be blank")
        if any(field["label"].casefold() == label.casefold() for field in model.values()):
            raise KeapError(400, f"A custom field labelled {label!r} already exists", resource="custom_field")
        if values.get("options") is not None and field_type not in CHOICE_TYPES:
            raise KeapError(400, f"options apply only to {', '.join(sorted(CHOICE_TYPES))} fields, not {field_type}")
        group_id = values.get("group_id", GROUPS[collection])
        if group_id != GROUPS[collection]:
            raise KeapError(400, f"Custom field group {group_id} not found", resource="custom_field_group")
        self.last_id += 1
        field: Record = {
            "id": str(self.last_id),
            "label": label,
            "record_type": RECORD_TYPES[collection],
            "field_type": field_type,
            "group_id": group_id,
            "group_name": GROUP_NAME,
            "field_name": field_name(label, {field["field_name"].casefold() for field in model.values()}),
        }
        if field_type in CHOICE_TYPES:
            field["options"] = [self.option(option["label"]) for option in values.get("options") or []]
        model[field["id"]] = field
        return copy.deepcopy(field)

    def delete(self, collection: str, field_id: str) -> None:
        """`DELETE /v2/{companies,contacts}/model/customFields/{custom_field_id}` (404 when the object has no such
        field); the records' values for it go with it (`RecordStore.drop_custom_field`)."""
        if self.fields[collection].pop(str(field_id), None) is None:
            noun = RECORD_TYPES[collection].title()
            raise KeapError(404, f"{noun} custom field with id {field_id} not found", resource="custom_field")

    def option(self, label: str) -> Record:
        self.last_option_id += 1
        return {"id": str(self.last_option_id), "label": label}

    def listed(self, collection: str) -> list[Record]:
        return copy.deepcopy(list(self.fields[collection].values()))

    def checked(self, collection: str, items: list[Record]) -> list[Record]:
        """Values given as `custom_fields` (`[{id, content}]`), as stored: each id a field of the object's model
        once, each content fitting its field's type; a null content clears the field (it is left out)."""
        model, seen, kept = self.fields[collection], set(), []
        for index, item in enumerate(items):
            field = model.get(item["id"])
            if field is None:
                noun = RECORD_TYPES[collection].title()
                raise KeapError(400, f"custom_fields.{index}.id: no {noun} custom field has id {item['id']}", resource="custom_field")
            if item["id"] in seen:
                raise KeapError(400, f"custom_fields.{index}.id: custom field {item['id']} is given more than once")
            seen.add(item["id"])
            content = item.get("content")
            if content is None:
                continue
            labels = [option["label"] for option in field.get("options", [])]
            problem = content_problem(field["field_type"], content, labels)
            if problem:
                raise KeapError(400, f"custom_fields.{index}.content: custom field {field['id']} ({field['label']}, {field['field_type']}) {problem}")
            kept.append({"id": field["id"], "content": content})
        return sorted(kept, key=lambda value: int(value["id"]))
