"""Regenerate `schemas.json` from Keap's v2 OpenAPI spec: `python extract.py path/to/keap-rest-v2.openapi.yml`.

Keeps the request and response schemas of the operations the emulator serves (companies, contacts and
products; the company and contact custom field models; tags, tag categories and tag applications), with every
component schema they reference (transitively), so tests can check bodies and responses without the full spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OPERATIONS = [
    "listCompanies", "createCompany", "getCompany", "updateCompany", "deleteCompany",
    "listContacts", "createContact", "getContact", "updateContact", "deleteContact",
    "listProducts", "createProduct", "getProduct", "updateProduct", "deleteProduct",
    "retrieveCompanyCustomFieldModel", "createCompanyCustomField", "retrieveContactModel", "createContactCustomField",
    "listTags", "createTag", "getTag", "listTagCategories", "createTagCategory",
    "applyTags", "removeTags", "listContactsWithTagId", "listCompaniesForTagId",
    "addTagToCompany", "removeTagFromCompany", "listTagsForCompany", "listTagsForContact",
]  # fmt: skip
OUTPUT = Path(__file__).with_name("schemas.json")


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else []
        return found + [name for value in node.values() for name in references(value)]
    if isinstance(node, list):
        return [name for value in node for name in references(value)]
    return []


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    all_schemas = spec["components"]["schemas"]
    operations: dict[str, dict[str, str | None]] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and operation.get("operationId") in OPERATIONS:
                request = references(operation.get("requestBody", {}))
                operations[operation["operationId"]] = {
                    "method": method.upper(),
                    "path": path,
                    **({"request": request[0]} if request else {}),
                    **{
                        status: (references(response.get("content", {})) or [None])[0]
                        for status, response in operation["responses"].items()
                    },
                }
    wanted = [name for operation in operations.values() for name in operation.values() if name in all_schemas]
    kept: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name not in kept:
            kept[name] = all_schemas[name]
            wanted.extend(references(all_schemas[name]))
    missing = sorted(set(OPERATIONS) - set(operations))
    if missing:
        raise SystemExit(f"operations not in the spec: {missing}")
    return {
        "source": "Keap REST v2 OpenAPI (keap-rest-v2.openapi.yml), info.version " + str(spec["info"]["version"]),
        "license": spec["info"]["license"],
        "openapi": spec["openapi"],
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": dict(sorted(kept.items()))},
    }


def main(spec_path: str) -> None:
    spec = yaml.safe_load(Path(spec_path).read_text(encoding="utf-8"))
    OUTPUT.write_text(json.dumps(extract(spec), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main(sys.argv[1])
