"""HTTP edge of the custom field models: `GET /v2/{companies,contacts}/model`, `POST .../model/customFields` and
`DELETE .../model/customFields/{custom_field_id}`."""

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

    @answering_errors
    async def delete_field(request: Request) -> Response:
        field_id = request.path_params["custom_field_id"]
        store.custom_fields.delete(resource.collection, field_id)
        store.drop_custom_field(resource.collection, field_id)
        return Response(status_code=204)

    return [
        Route(model_path, get_model, methods=["GET"]),
        Route(f"{model_path}/customFields", create_field, methods=["POST"]),
        Route(f"{model_path}/customFields/{{custom_field_id}}", delete_field, methods=["DELETE"]),
    ]


def custom_field_routes(store: RecordStore) -> list[Route]:
    """Full paths from the root; they must come before `/v2/{collection}/{id}`, which would match `model`."""
    return [route for collection in RECORD_TYPES for route in model_routes(store, RESOURCES[collection])]
