"""`benchmarks/connectors.py`'s reads: every stream's figures are its own (the two contact flows once shared one
watermark under the key "contacts", so the second read started where the first ended and the report showed Keap
contacts "1 (0)" after 500 were seeded and 50 edited)."""

from __future__ import annotations

import connectors

RECORDS = 200


async def test_each_stream_reads_all_its_records_then_none_then_the_changed_ones() -> None:
    reads = await connectors.read_calls(RECORDS)

    streams = ["keap companies", "keap contacts", "keap products", "invoiced customers", "invoiced items"]
    records = {read: {stream: figures["records"] for stream, figures in per_stream.items()} for read, per_stream in reads.items()}
    assert records == {
        "list everything": dict.fromkeys(streams, RECORDS),
        "incremental, 0 changes": dict.fromkeys(streams, 0),
        f"incremental, {connectors.CHANGES} changes": dict.fromkeys(streams, connectors.CHANGES),
    }
    assert all(figures["calls"] >= 1 for per_stream in reads.values() for figures in per_stream.values())
