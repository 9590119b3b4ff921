"""HTTP edge of the custom field models: `GET /v2/{companies,contacts}/model` and `POST .../model/customFields`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoiced_keap.emulators.keap.custom_fields import RECORD_TYPES
from invoiced_keap.emulators.keap.edge import V2_PREFIX, answering_errors, json_body
from invoiced_keap.emulators.keap.resources import RESOURCES, Resource
from invoiced_keap.emulators.keap.store import RecordStore


def model_routes(store: RecordStore, resource: Resource) -> list[Route]:
    model_path = f"{V2_PREFIX}/{resource.collection}/model"

    @answering_errors
    async def get_model(_: Request) -> Response:
        return JSONResponse(resource.model(store))

    @answering_errors
    async def create_field(request: Request) -> Response:
        field = store.custom_fields.create(resource.collection, await json_body(request))
        return JSONResponse(field, status_code=201)

    return [
        Route(model_path, get_model, methods=["GET"]),
        Route(f"{model_path}/customFields", create_field, methods=["POST"]),
    ]


def custom_field_routes(store: RecordStore) -> list[Route]:
    """Full paths from the root; they must come before `/v2/{collection}/{id}`, which would match `model`."""
    return [route for collection in RECORD_TYPES for route in model_routes(store, RESOURCES[collection])]
