"""The Keap emulator: v2 records (companies, contacts, products), their custom fields and tags under `/crm/rest`,
plus the kit's controls."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from invoiced_keap.emulators.keap import tags
from invoiced_keap.emulators.keap.auth import TENANT_ID, AuthMiddleware, KeapAuth
from invoiced_keap.emulators.keap.custom_field_routes import custom_field_routes
from invoiced_keap.emulators.keap.errors import KeapError, error_response
from invoiced_keap.emulators.keap.hooks import RestHooks
from invoiced_keap.emulators.keap.ratelimit import PAT_LIMITS, RateLimiter, RateLimitMiddleware
from invoiced_keap.emulators.keap.records import v2_routes
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.keap.store import RecordStore
from invoiced_keap.emulators.keap.tag_routes import tag_routes
from invoiced_keap.emulators.kit import Emulator, check_seed_keys


class KeapEmulator(Emulator):
    """One in-memory Keap account, `tenant_id` (what its responses' `x-keap-tenant-id` and its OAuth scope name: two
    emulators of other ids are two accounts); `clock` (epoch seconds) drives create/update times so tests can pin them.

    `clock` also drives token expiry and rate-limit windows. `oauth_clients` maps client id to secret;
    hook timings default to Keap's documented ones (first attempt after 30 s; retries after 45 s, 5 min, 30 min).
    """

    default_rate_limit = PAT_LIMITS

    def __init__(
        self,
        *,
        api_key: str = "test",
        random_seed: int | None = None,
        clock: Callable[[], float] = time.time,
        oauth_clients: Mapping[str, str] | None = None,
        access_token_ttl: float = 86400.0,
        hook_batch_delay: float = 30.0,
        hook_retry_delays: Sequence[float] = (45.0, 300.0, 1800.0),
        tenant_id: str = TENANT_ID,
        **options: Any,
    ) -> None:
        super().__init__(random_seed=random_seed, clock=clock)
        self.api_key = api_key
        self.tenant_id = tenant_id
        self.options = options
        self.store = RecordStore(clock=self.clock)  # the adjustable clock: `advance_clock` moves every part
        self.auth = KeapAuth(
            api_key=api_key, oauth_clients=oauth_clients or {}, access_token_ttl=access_token_ttl, clock=self.clock,
            tenant_id=tenant_id,
        )
        self.rate_limiter = RateLimiter(clock=self.clock, tenant_id=tenant_id)
        self.hooks = RestHooks(self.store, batch_delay=hook_batch_delay, retry_delays=hook_retry_delays)

    def api_routes(self) -> list[BaseRoute]:
        # the model and tag paths first: `/v2/companies/{company_id}` would take `/v2/companies/model`
        return [
            *custom_field_routes(self.store),
            *tag_routes(self.store),
            *v2_routes(self.store),
            *self.hooks.routes(),
            *self.auth.routes(),
        ]

    def error_response(self, status: int) -> Response:
        return error_response(status)

    def wrap_api(self, app: ASGIApp) -> ASGIApp:
        """Keap's gateway: credentials first, then the caller's rate limits (`faults.rate_limit`)."""
        limited = RateLimitMiddleware(app, self.rate_limiter, lambda: self.faults.rate_limit)
        return AuthMiddleware(limited, self.auth)

    def reset_data(self) -> None:
        self.store.reset()
        self.rate_limiter.reset()
        self.hooks.reset()

    def seed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Create records from v2 create bodies, validated as the API would; answer ids and rejections.

        The answer is `{"companies": [id, ...], "contacts": [...], "products": [...], "errors":
        [{"collection", "index", "message"}]}`; a rejected body has no id in its list. ValueError for a key
        besides those collections (`check_seed_keys`).
        """
        check_seed_keys(payload, list(RESOURCES))
        answer: dict[str, Any] = {"errors": []}
        for collection, resource in RESOURCES.items():
            answer[collection] = []
            for index, body in enumerate(payload.get(collection, [])):
                try:
                    answer[collection].append(resource.create(self.store, body)["id"])
                except KeapError as error:
                    answer["errors"].append({"collection": collection, "index": index, "message": error.message})
        return answer

    # --- for tests: custom fields and tags as a Keap user would set them up ----------------------
    def create_custom_field(self, collection: str, label: str, field_type: str, **extra: Any) -> dict[str, Any]:
        """Define a custom field on `companies` or `contacts` (a `CreateCustomFieldRequest`, validated); its metadata."""
        return self.store.custom_fields.create(collection, {"label": label, "field_type": field_type, **extra})

    def custom_fields(self, collection: str) -> list[dict[str, Any]]:
        """The `CustomFieldMetaData` of every custom field defined on `companies` or `contacts`."""
        return self.store.custom_fields.listed(collection)

    def custom_values(self, collection: str, record_id: str) -> dict[str, Any]:
        """A record's custom field values by field label (fields without a value are left out)."""
        labels = {field["id"]: field["label"] for field in self.store.custom_fields.listed(collection)}
        record = RESOURCES[collection].get(self.store, record_id)
        return {labels[value["id"]]: value["content"] for value in record.get("custom_fields") or []}

    def delete_custom_field(self, collection: str, field_id: str) -> None:
        """Delete a custom field as `DELETE /v2/{collection}/model/customFields/{id}` (or the web app) does: its
        values go too."""
        self.store.custom_fields.delete(collection, field_id)
        self.store.drop_custom_field(collection, field_id)

    def delete_tag(self, tag_id: str) -> None:
        """Delete a tag as `DELETE /v2/tags/{tag_id}` (or the web app) does: it comes off every record."""
        tags.delete_tag(self.store, tag_id)

    def create_tag(self, name: str, description: str | None = None, category_id: str | None = None) -> dict[str, Any]:
        """A new tag (`Tag`), as `POST /v2/tags` makes it."""
        body: dict[str, Any] = {"name": name, "description": description}
        if category_id is not None:
            body["category"] = {"id": category_id}
        return tags.create_tag(self.store, {key: value for key, value in body.items() if value is not None})

    def tag_ids(self, collection: str, record_id: str) -> list[str]:
        """The ids of the tags applied to a company or contact, in id order."""
        return sorted(self.store.tags_of(collection, record_id), key=int)

    def tagged_ids(self, collection: str, tag_id: str) -> list[str]:
        """The ids of the companies or contacts that have the tag, in id order."""
        applied = self.store.applied_tags[collection]
        return sorted((record_id for record_id, tag_ids in applied.items() if tag_id in tag_ids), key=int)

    def apply_tag(self, collection: str, record_id: str, tag_id: str, *, applied: bool = True) -> bool:
        """Apply (or with `applied=False` remove) a tag as a Keap user would: an edit of the record when it
        changes anything; False when it changed nothing. Both the record and the tag must exist."""
        RESOURCES[collection].stored(self.store, record_id)
        tags.get_tag(self.store, tag_id)
        if applied:
            return self.store.apply_tag(collection, record_id, tag_id)
        return self.store.remove_tag(collection, record_id, tag_id)
