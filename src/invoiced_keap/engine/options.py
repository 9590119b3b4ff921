"""The engine's options as plain frozen dataclasses: what each flow does, the circuit breaker, the pace.

They are also the configuration file's types: `[breaker]` is a `Breaker` and `[flow.NAME]` a
`FlowOptions` (the `annotated_types` bounds are what the settings loader enforces). The composition
root (`invoiced_keap.compose`) builds one `SyncOptions` from the settings; the engine only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le

from invoiced_keap.engine.plan import Policy, PolicyName
from invoiced_keap.engine.receivables import ReceivablesOptions
from invoiced_keap.flows import Flow, RuleSpec, Side, build_flows

DeletesPolicy = Literal["unlink", "propagate", "ignore"]
Share = Annotated[float, Gt(0), Le(1)]
Count = Annotated[int, Ge(0)]


@dataclass(frozen=True)
class FlowOptions:
    """How one flow syncs.

    `conflicts`, `priority` and `conflict_groups` make its `policy` (engine.plan.Policy: who wins a
    field changed on both sides). `deletes`: what a believed delete does to the twin: `unlink` drops
    the link and keeps both records, `propagate` deletes the twin (an Invoiced item is archived),
    `ignore` leaves link and twin alone. `create_in_invoiced`: a record born in Keap gets an Invoiced
    twin (off: it is only counted as unlinked). `add` and `drop` change the profile's field rules
    (see `flows.build_flows`).
    """

    conflicts: PolicyName = "newest"
    priority: Side = "invoiced"
    conflict_groups: Mapping[str, PolicyName] = field(default_factory=dict)
    deletes: DeletesPolicy = "unlink"
    create_in_invoiced: bool = False
    add: tuple[RuleSpec, ...] = ()
    drop: tuple[str, ...] = ()

    @property
    def policy(self) -> Policy:
        return Policy(winner=self.conflicts, priority=self.priority, groups=dict(self.conflict_groups))


@dataclass(frozen=True)
class Breaker:
    """Halts a flow's pass before it deletes (or unlinks) more than `max(min_deletes, max_delete_share
    * links)` pairs, or updates more than `max(min_updates, max_update_share * links)` linked pairs."""

    max_delete_share: Share = 0.10
    min_deletes: Count = 10
    max_update_share: Share = 0.5
    min_updates: Count = 10

    def delete_limit(self, links: int) -> int:
        return max(self.min_deletes, int(self.max_delete_share * links))

    def update_limit(self, links: int) -> int:
        return max(self.min_updates, int(self.max_update_share * links))


@dataclass(frozen=True)
class SyncOptions:
    """Everything a pass needs to know besides the connectors and the store.

    `flows` are the mapping `profile`'s flows with each flow's `add`/`drop` applied, products priced in
    `keap_currency` (ISO 4217: the one currency the Keap account prices in; its API does not say); `concurrency`
    bounds the writes in flight per flow (the HTTP layer paces below that); `batch_size` is how many
    records share one state transaction; `receivables`: what customers owe, written to their Keap records.
    """

    profile: str = "default"
    per_flow: Mapping[str, FlowOptions] = field(default_factory=dict)
    breaker: Breaker = Breaker()
    allow_mass_change: bool = False
    concurrency: int = 8
    batch_size: int = 200
    keap_currency: str = "USD"
    receivables: ReceivablesOptions = ReceivablesOptions()

    @cached_property
    def flows(self) -> dict[str, Flow]:
        overrides = {name: {"add": options.add, "drop": options.drop} for name, options in self.per_flow.items()}
        return build_flows(self.profile, overrides, self.keap_currency)

    def flow_options(self, flow: str) -> FlowOptions:
        return self.per_flow.get(flow, FlowOptions())
