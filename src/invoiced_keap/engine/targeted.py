"""Reading named records only, for a sync by id (webhooks, `verify --repair`) instead of a pass over what changed.

Webhooks name the records that changed, so a targeted sync reads exactly those: Invoiced by one GET per
id (Invoiced rations concurrency, not calls), Keap in bulk where a v2 filter takes a list of ids
(`ids==` for contacts, `product_ids==` for products, up to `KEAP_IDS_PER_CALL` a call) and by GET per id
for companies, which have no such filter. A record a bulk read leaves out is checked by its GET, so a
delete is only believed on a 404 (DESIGN §2); an Invoiced GET that answers 404 is a delete too.

The result is a `changes.FlowChanges` like a pass's own reads, but without watermarks: a targeted sync
never moves them, so polling stays the safety net for anything the webhooks missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector, Stream
from invoiced_keap.engine.changes import CUSTOMER_FLOWS, INVOICED_RESOURCES, KEAP_STREAMS, FlowChanges
from invoiced_keap.flows import flow_for_customer
from invoiced_keap.mapping import Record

KEAP_IDS_PER_CALL = 100
"""Ids per bulk Keap read: keeps the query string well under common URL length limits."""

KEAP_ID_FILTERS: dict[str, str] = {"contacts": "ids", "products": "product_ids"}
"""The v2 filter that takes a comma-separated id list, per Keap stream (companies have none)."""


async def read_ids(
    flow: str,
    invoiced: InvoicedConnector,
    keap: KeapConnector,
    *,
    invoiced_ids: Iterable[str] = (),
    keap_ids: Iterable[str] = (),
    removed_invoiced: Iterable[str] = (),
) -> FlowChanges:
    """The named records of one flow as they are now; ids whose GET answers 404 come back as removed.

    `removed_invoiced` are deletes the caller already trusts (a signed Invoiced event). A customer that
    belongs to the other customer flow now is left out: the webhook that named it named its new flow too.
    """
    changes = FlowChanges(flow, removed_invoiced={str(record_id) for record_id in removed_invoiced})
    wanted_invoiced = sorted({str(record_id) for record_id in invoiced_ids} - changes.removed_invoiced)
    for record_id, record in zip(wanted_invoiced, await _get_each(wanted_invoiced, lambda one: invoiced.get(INVOICED_RESOURCES[flow], one)), strict=True):
        if record is None:
            changes.removed_invoiced.add(record_id)
        elif flow not in CUSTOMER_FLOWS or flow_for_customer(record) == flow:
            changes.invoiced[record_id] = record
    wanted_keap = sorted({str(record_id) for record_id in keap_ids})
    changes.keap.update(await _read_keap(flow, keap, wanted_keap))
    changes.removed_keap.update(set(wanted_keap) - set(changes.keap))
    return changes


async def _read_keap(flow: str, keap: KeapConnector, ids: list[str]) -> dict[str, Record]:
    """Keap records by id: in bulk where a filter allows, then a GET for each id left out (or for all)."""
    stream = KEAP_STREAMS[flow]
    found: dict[str, Record] = {}
    id_filter = KEAP_ID_FILTERS.get(flow)
    if id_filter is not None:
        for start in range(0, len(ids), KEAP_IDS_PER_CALL):
            found.update(await _bulk(keap, stream, id_filter, ids[start : start + KEAP_IDS_PER_CALL]))
    missing = [record_id for record_id in ids if record_id not in found]
    records = await _get_each(missing, lambda one: keap.get(stream, one, fields=stream.fields))
    found.update((record_id, record) for record_id, record in zip(missing, records, strict=True) if record is not None)
    return found


async def _bulk(keap: KeapConnector, stream: Stream, id_filter: str, ids: list[str]) -> dict[str, Record]:
    params = {"filter": f"{id_filter}=={','.join(ids)}"}
    if stream.fields:
        params["fields"] = ",".join(stream.fields)
    return {str(record["id"]): record async for page in keap.pages(stream, params) for record in page.records}


async def _get_each(ids: list[str], get: Callable[[str], Awaitable[Record]]) -> list[Record | None]:
    """One GET per id, concurrently (the connectors pace them); None where the record is gone."""

    async def one(record_id: str) -> Record | None:
        try:
            return await get(record_id)
        except NotFound:
            return None

    return list(await asyncio.gather(*(one(record_id) for record_id in ids)))
