"""HTTP edge of the v2 tags: `/crm/rest/v2/tags...`, and the tags of a company or contact, over `tags.py`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoiced_keap.emulators.keap import tags
from invoiced_keap.emulators.keap.edge import V2_PREFIX, answering_errors, json_body, list_query
from invoiced_keap.emulators.keap.store import RecordStore

TAGS_PATH = f"{V2_PREFIX}/tags"


def tag_routes(store: RecordStore) -> list[Route]:
    """Full paths from the root; `/tags/categories` comes before `/tags/{tag_id}`, which would match it."""

    @answering_errors
    async def list_tags(request: Request) -> Response:
        found, next_token = tags.list_tags(store, list_query(request))
        return JSONResponse({"tags": found, "next_page_token": next_token})

    @answering_errors
    async def create_tag(request: Request) -> Response:
        return JSONResponse(tags.create_tag(store, await json_body(request)), status_code=201)

    @answering_errors
    async def get_tag(request: Request) -> Response:
        return JSONResponse(tags.get_tag(store, request.path_params["tag_id"]))

    @answering_errors
    async def delete_tag(request: Request) -> Response:
        tags.delete_tag(store, request.path_params["tag_id"])
        return Response(status_code=204)

    @answering_errors
    async def list_categories(request: Request) -> Response:
        found, next_token = tags.list_categories(store, list_query(request))
        return JSONResponse({"tag_categories": found, "next_page_token": next_token})

    @answering_errors
    async def create_category(request: Request) -> Response:
        return JSONResponse(tags.create_category(store, await json_body(request)), status_code=201)

    @answering_errors
    async def apply_tags(request: Request) -> Response:
        results = tags.apply_to_contacts(store, request.path_params["tag_id"], await json_body(request))
        return JSONResponse({"results": results})

    @answering_errors
    async def remove_tags(request: Request) -> Response:
        tags.remove_from_contacts(store, request.path_params["tag_id"], await json_body(request))
        return Response(status_code=204)

    def tagged(collection: str) -> Route:
        @answering_errors
        async def listing(request: Request) -> Response:
            found, next_token = tags.tagged(store, collection, request.path_params["tag_id"], list_query(request))
            return JSONResponse({tags.TAGGED[collection].key: found, "next_page_token": next_token})

        return Route(f"{TAGS_PATH}/{{tag_id}}/{collection}", listing, methods=["GET"])

    def applied(collection: str, id_param: str) -> Route:
        @answering_errors
        async def listing(request: Request) -> Response:
            found, next_token = tags.applied_tags(store, collection, request.path_params[id_param], list_query(request))
            return JSONResponse({"tags": found, "next_page_token": next_token})

        return Route(f"{V2_PREFIX}/{collection}/{{{id_param}}}/tags", listing, methods=["GET"])

    def company_tag(applied: bool) -> Route:
        @answering_errors
        async def change(request: Request) -> Response:
            tags.tag_company(store, request.path_params["company_id"], request.path_params["tag_id"], applied=applied)
            return Response(status_code=204)

        return Route(f"{V2_PREFIX}/companies/{{company_id}}/tags/{{tag_id}}", change, methods=["POST" if applied else "DELETE"])

    return [
        Route(f"{TAGS_PATH}/categories", list_categories, methods=["GET"]),
        Route(f"{TAGS_PATH}/categories", create_category, methods=["POST"]),
        Route(TAGS_PATH, list_tags, methods=["GET"]),
        Route(TAGS_PATH, create_tag, methods=["POST"]),
        Route(f"{TAGS_PATH}/{{tag_id}}", get_tag, methods=["GET"]),
        Route(f"{TAGS_PATH}/{{tag_id}}", delete_tag, methods=["DELETE"]),
        Route(f"{TAGS_PATH}/{{tag_id}}/contacts:applyTags", apply_tags, methods=["POST"]),
        Route(f"{TAGS_PATH}/{{tag_id}}/contacts:removeTags", remove_tags, methods=["POST"]),
        tagged("contacts"),
        tagged("companies"),
        applied("contacts", "contact_id"),
        applied("companies", "company_id"),
        company_tag(applied=True),
        company_tag(applied=False),
    ]
