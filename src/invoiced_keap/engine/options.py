"""The engine's settings as plain dataclasses: per-flow conflict and delete policies, the circuit breaker.

The CLI builds one `SyncOptions` from the configuration file (`SyncOptions.build(profile, overrides, ...)`);
the engine only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from invoiced_keap.engine.plan import Policy
from invoiced_keap.flows import Flow, Overrides, build_flows

DeletesPolicy = Literal["unlink", "propagate", "ignore"]


@dataclass(frozen=True)
class FlowOptions:
    """How one flow syncs.

    `deletes`: what a believed delete does to the twin: `unlink` drops the link and keeps both records,
    `propagate` deletes the twin (an Invoiced item is archived), `ignore` leaves link and twin alone.
    `create_in_invoiced`: a record born in Keap gets an Invoiced twin (off: it is only counted as unlinked).
    """

    policy: Policy = Policy()
    deletes: DeletesPolicy = "unlink"
    create_in_invoiced: bool = False


@dataclass(frozen=True)
class Breaker:
    """Halts a flow's pass before it deletes (or unlinks) more than `max(min_deletes, max_delete_share
    * links)` pairs, or updates more than `max(min_updates, max_update_share * links)` linked pairs."""

    min_deletes: int = 10
    max_delete_share: float = 0.10
    min_updates: int = 10
    max_update_share: float = 0.5

    def delete_limit(self, links: int) -> int:
        return max(self.min_deletes, int(self.max_delete_share * links))

    def update_limit(self, links: int) -> int:
        return max(self.min_updates, int(self.max_update_share * links))


@dataclass(frozen=True)
class SyncOptions:
    """Everything a pass needs to know besides the connectors and the store.

    `concurrency` bounds the writes in flight per flow (the HTTP layer paces below that);
    `batch_size` is how many records share one state transaction.
    """

    flows: Mapping[str, Flow] = field(default_factory=build_flows)
    per_flow: Mapping[str, FlowOptions] = field(default_factory=dict)
    breaker: Breaker = Breaker()
    allow_mass_change: bool = False
    concurrency: int = 8
    batch_size: int = 200

    def flow_options(self, flow: str) -> FlowOptions:
        return self.per_flow.get(flow, FlowOptions())

    @classmethod
    def build(
        cls,
        profile: str = "default",
        overrides: Overrides | None = None,
        per_flow: Mapping[str, FlowOptions] | None = None,
        **settings: object,
    ) -> SyncOptions:
        """Options for a mapping profile with the configuration's per-flow rule overrides."""
        flows = build_flows(profile, overrides)
        unknown = set(per_flow or {}) - set(flows)
        if unknown:
            raise ValueError(f"options for unknown flow(s): {sorted(unknown)}")
        return cls(flows=flows, per_flow=dict(per_flow or {}), **settings)  # type: ignore[arg-type]
