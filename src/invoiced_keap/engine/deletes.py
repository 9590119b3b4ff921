"""Believing deletes, and the circuit breaker that stops a pass from doing too much at once.

A delete is only believed after a check: an Invoiced removal event (`customer.deleted`, `customer.merged`),
an archived item, a Keap record whose GET (or write) answers 404, or a company's person whose customer has no
link any more (`changes.ParentTwins.orphaned`, in every pass and reconcile) or whom its customer's listing leaves
out (a reconcile). Finding Keap deletes without hooks needs a full id listing, which `find_gone` does for a
reconcile, never in every pass. What a believed delete does is the flow's deletes policy (applied by
`apply.Applier.remove`).

The breaker judges a flow's plan (`FlowPlan`) before anything of it is written. Links closed by a type
change (a customer moved between `companies` and `contacts`) count, whatever the deletes policy, against
the links of the flow they leave: a mass type change unlinks as many pairs as a mass delete.
"""

from __future__ import annotations

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector, KeapObject, page_size_for
from invoiced_keap.engine.changes import children_of
from invoiced_keap.engine.options import Breaker
from invoiced_keap.flows import Flow, Side


class CircuitBreakerTripped(Exception):
    """A flow's pass would change more than the breaker allows; nothing of the flow was written. `deletes`: it was
    the deletes and unlinks (else the updates)."""

    def __init__(self, message: str, *, deletes: bool) -> None:
        super().__init__(message)
        self.deletes = deletes


def check_breaker(flow: str, breaker: Breaker, *, links: int, deletes: int, updates: int, allowed: bool) -> None:
    """Raise `CircuitBreakerTripped` when the planned deletes or updates exceed the limits (unless allowed)."""
    if allowed:
        return
    if deletes > breaker.delete_limit(links):
        raise CircuitBreakerTripped(
            f"{flow}: circuit breaker: {deletes} of {links} links would be deleted or unlinked "
            f"(limit {breaker.delete_limit(links)}); nothing was deleted. Check the other system, "
            f"then run again with --allow-mass-change to go ahead.", deletes=True)
    if updates > breaker.update_limit(links):
        raise CircuitBreakerTripped(
            f"{flow}: circuit breaker: {updates} of {links} linked pairs would be updated "
            f"(limit {breaker.update_limit(links)}); nothing was written. Run again with "
            f"--allow-mass-change to go ahead.", deletes=False)


async def keap_ids(keap: KeapConnector, keap_object: KeapObject, longest: int = 0) -> set[str]:
    """The id of every record of a Keap object: one full listing (1,000 a page, one field). An object that takes no
    `fields` (products) sends whole records: its pages are sized by `longest`, the characters of the longest record
    of it stored lately (`page_size_for`; 0, the default, for an object that takes `fields`)."""
    page_size = page_size_for(longest, keap.page_size)
    return {str(record["id"]) async for record in keap.list_all(keap_object, fields=("update_time",), page_size=page_size)}


async def find_gone(
    flow: Flow, links: dict[str, str], invoiced: InvoicedConnector, keap: KeapConnector, listed: set[str]
) -> list[tuple[str, Side]]:
    """Linked records that are gone: `(invoiced_id, side)` for each, one entry a link. Keap ids missing from
    `listed` (`keap_ids` of the flow's object, read once for every flow on it) are confirmed by a GET (404); where
    the Invoiced resource archives, archived records are gone; a nested one's (a company's people, `parent/id`)
    that their parent's listing leaves out are gone (one listing per parent of a link, read side by side:
    `changes.children_of`)."""
    gone: list[tuple[str, Side]] = []
    for invoiced_id, keap_id in links.items():
        if keap_id in listed:
            continue
        try:
            await keap.get(flow.keap, keap_id, fields=flow.keap_fields)
        except NotFound:
            gone.append((invoiced_id, "keap"))
    gone_in_keap = {invoiced_id for invoiced_id, _ in gone}
    if flow.invoiced.archived is not None:
        archived = {str(record["id"]) async for record in invoiced.archived(flow.invoiced)}
        gone.extend((invoiced_id, "invoiced") for invoiced_id in links if invoiced_id in archived and invoiced_id not in gone_in_keap)
    if flow.invoiced.parent is not None and links:
        parents = sorted({invoiced_id.partition("/")[0] for invoiced_id in links}, key=lambda parent: (len(parent), parent))
        present = {str(record["id"]) async for record in children_of(invoiced, flow.invoiced, parents)}
        gone.extend((invoiced_id, "invoiced") for invoiced_id in links if invoiced_id not in present and invoiced_id not in gone_in_keap)
    return gone
