"""The baseline reader: list every record of both sides on every pass, as Sesam's public connector does.

It reads Invoiced customers once (both customer flows) and items, and every Keap company, contact and
product, in the largest pages each API allows. A full-scan pass costs these reads whatever changed, plus
the same writes an incremental pass makes: `benchmarks/sync.py` compares the two over the same data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM, InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.mapping import Record


async def _drain(records: AsyncIterator[Record]) -> int:
    return sum([1 async for _ in records])


async def full_scan_calls(invoiced: InvoicedConnector, keap: KeapConnector) -> dict[str, int]:
    """The calls of one full-scan read of both sides, per system."""
    invoiced_before, keap_before = invoiced.calls.total, keap.stats.total
    await _drain(invoiced.all(CUSTOMER))
    await _drain(invoiced.all(ITEM))
    for flow in CATALOGUE.values():
        await _drain(keap.list_all(flow.keap, fields=flow.keap_fields))
    return {"invoiced": invoiced.calls.total - invoiced_before, "keap": keap.stats.total - keap_before}
