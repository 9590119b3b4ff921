"""Deciding an item of the review list (an Invoiced record with several plausible Keap twins): link it
to one of its candidates, or to none of them, so that the next pass creates a new Keap record.

A decision is recorded (the item resolved, an intent opened that brings the record into the next pass); the
next pass carries it out as any match: links the picked pair (merging fields, stamping the Keap id into the
Invoiced metadata for `relink`), or makes the create, its candidates ruled out.
"""

from __future__ import annotations

from invoiced_keap.flows import CATALOGUE, sharing_keap_object
from invoiced_keap.state import Store
from invoiced_keap.state.models import ReviewItem
from invoiced_keap.state.store import CREATE_RESOLUTION, pick_resolution


class ReviewRefused(ValueError):
    """The decision does not fit the review list: the message is the line to show."""


def open_item(store: Store, invoiced_id: str, flow: str | None = None) -> ReviewItem:
    """The one open review item of an Invoiced record (in `flow`, when it waits in several)."""
    matching = [item for item in store.review_items(flow) if item.invoiced_id == invoiced_id]
    if not matching:
        raise ReviewRefused(f"Invoiced {invoiced_id}: no open review item")
    if len(matching) > 1:
        raise ReviewRefused(f"Invoiced {invoiced_id}: in several flows: add --flow")
    return matching[0]


def pick(store: Store, invoiced_id: str, keap_id: str, flow: str | None = None) -> ReviewItem:
    """Decide that the record links to the candidate `keap_id` (the next pass links it); returns the item."""
    item = open_item(store, invoiced_id, flow)
    if keap_id not in item.candidate_ids:
        raise ReviewRefused(f"--pick {keap_id}: not a candidate of Invoiced {invoiced_id}; expected one of {item.candidate_ids}")
    sharing = [other.name for other in sharing_keap_object(CATALOGUE[item.flow])]
    holder = next((name for name in sharing if keap_id in store.link_ids_of(name, "keap", [keap_id])), None)
    if holder is not None:
        raise ReviewRefused(f"--pick {keap_id}: Keap {CATALOGUE[item.flow].keap.hook_object} {keap_id} is linked in flow "
                            f"{holder}; a Keap record has one link (unlink it there first, or --create)")
    rival = next(((name, other) for name in sharing for other, chosen in store.pick_decisions(name).items() if chosen == keap_id), None)
    if rival is not None:
        raise ReviewRefused(f"--pick {keap_id}: Keap {CATALOGUE[item.flow].keap.hook_object} {keap_id} is picked already for "
                            f"Invoiced {rival[1]} (flow {rival[0]}), to be linked by the next pass; a Keap record has one link")
    with store.transaction() as tx:
        tx.resolve_review_item(item.flow, invoiced_id, pick_resolution(keap_id))
        tx.open_intent(item.flow, "invoiced", invoiced_id, None)
    return item


def create_instead(store: Store, invoiced_id: str, flow: str | None = None) -> ReviewItem:
    """Link the record to none of its candidates: close its item and open the intent the next pass creates."""
    item = open_item(store, invoiced_id, flow)
    with store.transaction() as tx:
        tx.resolve_review_item(item.flow, invoiced_id, CREATE_RESOLUTION)
        tx.open_intent(item.flow, "invoiced", invoiced_id, None)
    return item
