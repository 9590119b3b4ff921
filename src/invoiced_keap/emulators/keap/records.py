"""HTTP edge of the v2 record API: `/crm/rest/v2/{companies,contacts,products}` routes over the resources."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoiced_keap.emulators.keap.edge import V2_PREFIX, answering_errors, json_body, repeated_or_comma
from invoiced_keap.emulators.keap.listing import parse_page_size
from invoiced_keap.emulators.keap.resources import RESOURCES, Resource, create_contact
from invoiced_keap.emulators.keap.store import RecordStore


def resource_routes(store: RecordStore, resource: Resource) -> list[Route]:
    id_param = resource.noun.lower() + "_id"
    collection_path = f"{V2_PREFIX}/{resource.collection}"
    record_path = f"{collection_path}/{{{id_param}}}"

    @answering_errors
    async def list_records(request: Request) -> Response:
        query = request.query_params
        records, next_token = resource.list(
            store,
            filter_text=query.get("filter"),
            order_by=query.get("order_by"),
            page_size=parse_page_size(query.get("page_size")),
            page_token=query.get("page_token"),
            fields=repeated_or_comma(request, "fields"),
        )
        return JSONResponse({resource.collection: records, "next_page_token": next_token})

    @answering_errors
    async def create_record(request: Request) -> Response:
        body = await json_body(request)
        if resource.collection == "contacts":
            record, created = create_contact(store, body, request.query_params.get("duplicate_option"))
        else:
            record, created = resource.create(store, body), True
        return JSONResponse(resource.chosen(store, record, repeated_or_comma(request, "fields")), status_code=201 if created else 200)

    @answering_errors
    async def get_record(request: Request) -> Response:
        record_id = request.path_params[id_param]
        return JSONResponse(resource.get(store, record_id, repeated_or_comma(request, "fields")))

    @answering_errors
    async def update_record(request: Request) -> Response:
        record_id = request.path_params[id_param]
        record = resource.update(store, record_id, await json_body(request), repeated_or_comma(request, "update_mask"))
        return JSONResponse(resource.chosen(store, record, repeated_or_comma(request, "fields")))

    @answering_errors
    async def delete_record(request: Request) -> Response:
        resource.delete(store, request.path_params[id_param])
        return Response(status_code=204)

    return [
        Route(collection_path, list_records, methods=["GET"]),
        Route(collection_path, create_record, methods=["POST"]),
        Route(record_path, get_record, methods=["GET"]),
        Route(record_path, update_record, methods=["PATCH"]),
        Route(record_path, delete_record, methods=["DELETE"]),
    ]


def v2_routes(store: RecordStore) -> list[Route]:
    """The v2 companies, contacts and products routes, with full paths from the root."""
    return [route for resource in RESOURCES.values() for route in resource_routes(store, resource)]
