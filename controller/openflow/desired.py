"""Desired state: what every part of cems wants on each switch, assembled in one place (core).

Each source of desired state is a Contributor: forwarding and control flows
(controller.network.forwarding), the customer mapping's marking and meters
(controller.csm.mapping), copies to the probe (controller.monitor.mirror) and, later,
the policy engine. A contributor gives flows and meters per switch for its own cookie
component only; assemble() runs them in order, each seeing what the earlier ones gave (the
mirror copies a host pair's forwarding, for example), and checks that every flow carries
its contributor's component and that no two contributors want different meters under one
id. Reconciliation (controller.openflow.reconcile) converges each switch to the union.

A new component is one more contributor in the list the app passes, not an edit of the
reconciliation.
"""

import dataclasses
from typing import Mapping, Protocol, Sequence

from controller.openflow.pipeline import Component, FlowEntry, MeterSpec
from controller.openflow.reconcile import SwitchView


@dataclasses.dataclass(frozen=True)
class Contribution:
    """One component's flows and meters, per switch."""

    flows: Mapping[int, frozenset[FlowEntry]] = dataclasses.field(default_factory=dict)
    meters: Mapping[int, Mapping[int, MeterSpec]] = dataclasses.field(default_factory=dict)


class Contributor(Protocol):
    """A source of desired state. `contribute` must be a function of its inputs (the view,
    what earlier contributors gave, and the contributor's own data), with no I/O."""

    component: Component

    def contribute(self, view: SwitchView, earlier: "DesiredState") -> Contribution:
        ...


class DesiredStateError(ValueError):
    """A contributor broke the rules (a flow of another component, a meter conflict)."""


class DesiredState:
    """The contributions of every component, and their union per switch."""

    def __init__(self, view: SwitchView,
                 parts: Sequence[tuple[Component, Contribution]] = ()):
        self.view = view
        self._parts = tuple(parts)

    def part(self, component: Component) -> Contribution:
        for owner, contribution in self._parts:
            if owner == component:
                return contribution
        return Contribution()

    def components(self) -> tuple[Component, ...]:
        return tuple(owner for owner, _ in self._parts)

    def plus(self, component: Component, contribution: Contribution) -> "DesiredState":
        return DesiredState(self.view, self._parts + ((component, contribution),))

    def flows(self, dpid: int) -> frozenset[FlowEntry]:
        """Every flow any component wants on the switch."""
        out: frozenset[FlowEntry] = frozenset()
        for _, contribution in self._parts:
            out = out | contribution.flows.get(dpid, frozenset())
        return out

    def meters(self, dpid: int) -> dict[int, MeterSpec]:
        """Every meter any component wants on the switch."""
        out: dict[int, MeterSpec] = {}
        for _, contribution in self._parts:
            out.update(contribution.meters.get(dpid, {}))
        return out


def _check(component: Component, contribution: Contribution, earlier: DesiredState) -> None:
    for dpid, flows in contribution.flows.items():
        for entry in flows:
            if entry.component != component:
                raise DesiredStateError(
                    f"the {component.name.lower()} contributor gave switch {dpid:016x} a flow "
                    f"with cookie {entry.cookie:#x}, which is not one of its own: {entry}")
    for dpid, meters in contribution.meters.items():
        theirs = earlier.meters(dpid)
        for meter_id, spec in meters.items():
            if spec.meter_id != meter_id:
                raise DesiredStateError(f"the {component.name.lower()} contributor filed meter "
                                        f"{spec.meter_id} under id {meter_id}")
            if meter_id in theirs and theirs[meter_id] != spec:
                raise DesiredStateError(
                    f"meter {meter_id} on switch {dpid:016x} is wanted as {theirs[meter_id]} "
                    f"and, by the {component.name.lower()} contributor, as {spec}")


def assemble(view: SwitchView, contributors: Sequence[Contributor],
             previous: DesiredState | None = None, failed=None) -> DesiredState:
    """Run the contributors in order; their union is what each switch should hold.

    A contributor that raises or breaks the rules (`failed(component, error)` is told) keeps
    what it contributed last time (from `previous`): its flows are not removed because it
    failed, and the other contributors are not held back."""
    state = DesiredState(view)
    for contributor in contributors:
        try:
            contribution = contributor.contribute(view, state)
            _check(contributor.component, contribution, state)
        except Exception as err:  # pylint: disable=broad-except
            if failed is None:
                raise
            failed(contributor.component, err)
            contribution = previous.part(contributor.component) if previous else Contribution()
        state = state.plus(contributor.component, contribution)
    return state
