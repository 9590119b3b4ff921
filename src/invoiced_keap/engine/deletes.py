"""Believing deletes, and the circuit breaker that stops a pass from doing too much at once.

A delete is only believed after a check: an Invoiced `customer.deleted` / `customer.merged` event, an
archived item, or a Keap record whose GET (or write) answers 404. Finding Keap deletes without hooks
needs a full id listing, which `find_gone` does for `Syncer.reconcile`, run on its own schedule
(default daily), never in every pass. What a believed delete does is the flow's deletes policy
(`options.FlowOptions.deletes`, applied by `apply.Applier.remove`).

The breaker also counts links closed by a type change (a customer moved between `companies` and
`contacts`), whatever the deletes policy, against the links of the flow they leave: a mass type change
(a bulk edit or an import that resets `type`) unlinks as many pairs as a mass delete, and is as likely
to be a mistake. The pass of the flow they move to is held, so nothing is closed or created twice.
"""

from __future__ import annotations

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.changes import KEAP_STREAMS
from invoiced_keap.engine.options import Breaker
from invoiced_keap.flows import Side


class CircuitBreakerTripped(Exception):
    """A flow's pass would change more than the breaker allows; nothing of the flow was written."""


def check_breaker(flow: str, breaker: Breaker, *, links: int, deletes: int, updates: int, allowed: bool) -> None:
    """Raise `CircuitBreakerTripped` when the planned deletes or updates exceed the limits (unless allowed)."""
    if allowed:
        return
    if deletes > breaker.delete_limit(links):
        raise CircuitBreakerTripped(
            f"{flow}: circuit breaker: {deletes} of {links} links would be deleted or unlinked "
            f"(limit {breaker.delete_limit(links)}); nothing was deleted. Check the other system, "
            f"then run again with --allow-mass-change to go ahead.")
    if updates > breaker.update_limit(links):
        raise CircuitBreakerTripped(
            f"{flow}: circuit breaker: {updates} of {links} linked pairs would be updated "
            f"(limit {breaker.update_limit(links)}); nothing was written. Run again with "
            f"--allow-mass-change to go ahead.")


async def find_gone(
    flow: str, links: dict[str, str], invoiced: InvoicedConnector, keap: KeapConnector
) -> list[tuple[str, Side]]:
    """Linked records that are gone: `(invoiced_id, side)` for each. Keap ids missing from a full listing
    are confirmed by a GET (404); for products, Invoiced items in the archived listing are gone too."""
    stream = KEAP_STREAMS[flow]
    listed = {str(record["id"]) async for record in keap.list_all(stream, fields=("update_time",) if stream.fields else None)}
    gone: list[tuple[str, Side]] = []
    for invoiced_id, keap_id in links.items():
        if keap_id in listed:
            continue
        try:
            await keap.get(stream, keap_id, fields=stream.fields)
        except NotFound:
            gone.append((invoiced_id, "keap"))
    if flow == "products":
        archived = {str(item["id"]) async for item in invoiced.archived_items()}
        gone_in_keap = {invoiced_id for invoiced_id, _ in gone}  # one entry a link, even when both sides are gone
        gone.extend((invoiced_id, "invoiced") for invoiced_id in links if invoiced_id in archived and invoiced_id not in gone_in_keap)
    return gone
