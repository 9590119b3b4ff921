"""`benchmarks/propagation.py` at a small size: every edit arrives by webhook or Keap hook, both ways (its service
once had no `public_url`, so no Keap hook was registered and, polling off, each Keap edit timed out)."""

from __future__ import annotations

import propagation

from invoiced_keap.config import Schedule


async def test_every_edit_arrives_both_ways() -> None:
    result = await propagation.measure(edits=6, records=3, debounce=Schedule().webhook_debounce)  # production's

    counts = {direction: row["count"] for direction, row in result["propagation_seconds"].items()}
    assert counts == {"all": 6, "invoiced → keap": 3, "keap → invoiced": 3}
