"""One-click demo: a made-up customer, and the stories the switches can tell, as data.

A scenario sets every switch (the ones it names as it says, the others healthy) and
places the orders that tell its story, through the same placement as the form. Each
switch it changes is recorded like any flip: who, and the reason "scenario <name>".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from django.db.models import F

from orders.actions import record_switch
from orders.contract import SERVICES
from orders.forms import apply_switch
from orders.models import Engine, Order
from orders.placement import place_comparison, place_order
from orders.simulator.models import Mode, Product, ServiceSwitch

CUSTOMERS = [
    ("Ada Lovelace", "12 Analytical Row, London"),
    ("Grace Hopper", "1 Compiler Way, Arlington"),
    ("Alan Turing", "7 Bletchley Lane, Wilmslow"),
    ("Katherine Johnson", "3 Orbit Street, Hampton"),
    ("Edsger Dijkstra", "42 Shortest Path, Nuenen"),
    ("Barbara Liskov", "9 Substitution Ave, Cambridge"),
    ("Margaret Hamilton", "11 Apollo Way, Houston"),
    ("Donald Knuth", "256 Fascicle Road, Stanford"),
    ("Radia Perlman", "5 Spanning Tree Close, Boston"),
    ("Frances Allen", "18 Optimizer Drive, Peru"),
]


def demo_customer(rng: random.Random | None = None) -> dict[str, str]:
    """A made-up customer, so a demo never starts with empty required fields."""
    name, address = (rng or random).choice(CUSTOMERS)
    first = name.split()[0].lower()
    return {
        "customer_name": name,
        "email": f"{first}@example.com",
        "phone": "+44 20 7946 0000",
        "address": address,
    }


def demo_product(quantity: int = 1) -> Product | None:
    """The cheapest product with stock for `quantity` more: never one that needs approval."""
    return (
        Product.objects.filter(stock__gte=F("reserved") + quantity).order_by("price_cents").first()
    )


def demo_order_data(engine: str = Engine.TEMPORAL) -> dict | None:
    """What the form would send for a made-up customer; None when nothing is in stock."""
    product = demo_product()
    if product is None:
        return None
    return {"product": product, "quantity": 1, "engine": engine} | demo_customer()


@dataclass(frozen=True)
class Setting:
    mode: str
    failures: int | None = None  # flaky: how many calls fail
    latency_ms: int | None = None  # slow


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    story: str  # what the presenter will see, in one sentence
    switches: dict[str, Setting] = field(default_factory=dict)  # the rest: healthy
    orders: int = 0  # Temporal orders placed
    compare: bool = False  # one order in both engines instead


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in [
        Scenario(
            "seed-story",
            "Inventory fails twice",
            "Inventory fails twice and succeeds on attempt 3: Temporal waits 1 s, then 2 s.",
            {"inventory": Setting(Mode.FLAKY, failures=2)},
            orders=1,
        ),
        Scenario(
            "payment-outage",
            "Payment outage",
            "Payment is down: two orders retry with growing backoff. Set payment healthy"
            " before their sixth attempt and they complete; otherwise they fail, undone.",
            {"payment": Setting(Mode.DOWN)},
            orders=2,
        ),
        Scenario(
            "crash-during-payment",
            "Crash during payment",
            "The worker dies right after charging: the Temporal order completes with one"
            " charge, the plain script's twin is lost.",
            {"payment": Setting(Mode.CRASH)},
            compare=True,
        ),
        Scenario(
            "sms-down",
            "SMS down",
            "SMS is down: the order gives up on the courtesy SMS and completes with warnings.",
            {"sms": Setting(Mode.DOWN)},
            orders=1,
        ),
        Scenario("reset", "Reset", "Every service healthy again; no order placed."),
    ]
}


@dataclass
class ScenarioResult:
    scenario: Scenario
    orders: list[Order]
    switched: list[str]  # "payment set to down", one per switch changed
    error: str = ""


def run_scenario(name: str, *, actor: str, user: object = None) -> ScenarioResult:
    """Set the scenario's switches and place its orders. An unknown name changes nothing."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"There is no scenario {name!r}; try one of: {known}.")
    units = 2 if scenario.compare else scenario.orders
    if units and demo_product(units) is None:
        message = "No product has stock left for its orders; nothing was changed."
        return ScenarioResult(scenario, [], [], message)
    switched = set_switches(scenario, actor=actor, user=user)
    if scenario.compare:
        temporal = place_comparison(demo_order_data())
        orders = [temporal, Order.objects.get(pk=temporal.compare_with_id)]
    else:
        orders = [place_order(demo_order_data()) for _ in range(scenario.orders)]
    return ScenarioResult(scenario, orders, switched)


def set_switches(scenario: Scenario, *, actor: str, user: object = None) -> list[str]:
    """Every switch as the scenario wants it; each one changed is recorded."""
    before = {switch.service: switch.summary for switch in ServiceSwitch.objects.all()}
    changed = []
    for service in SERVICES:
        setting = scenario.switches.get(service, Setting(Mode.HEALTHY))
        wanted = {"service": service, "mode": setting.mode}
        wanted |= {"failures": setting.failures, "latency_ms": setting.latency_ms}
        # A flaky switch is always set again: its countdown starts over for the story.
        if before.get(service) == setting.mode and setting.mode != Mode.FLAKY:
            continue
        switch = apply_switch(wanted)
        if before.get(service) == switch.summary:
            continue
        record_switch(
            service, switch.summary, actor=actor, user=user, reason=f"scenario {scenario.name}"
        )
        changed.append(f"{service} set to {switch.summary}")
    return changed
