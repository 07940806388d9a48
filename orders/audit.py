"""The exactly-once check: attempts made versus effects applied, per order and service.

Attempts come from the ledger; effects from the services' own rows (reservations,
charges, shipments, messages). Retries are fine; effects that don't add up are not.
Each problem is said in words and classed as a `Trouble`, which the chaos run's
scoreboard counts: this module is the one definition of what is wrong with an order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import models
from django.db.models import Q, Sum
from django.utils import timezone

from orders.contract import SERVICES, OrderStatus
from orders.models import Engine, Order
from orders.simulator.models import (
    Charge,
    Message,
    Product,
    Reservation,
    ServiceCall,
    Shipment,
)


class Trouble(models.TextChoices):
    """What kind of wrong a problem is: the chaos scoreboard counts orders by these."""

    LOST = "lost", "lost"
    CHARGED_TWICE = "charged_twice", "charged twice"
    CHARGE_STRANDED = "charge_stranded", "charged without shipment or refund"
    STOCK = "stock", "stock out of balance"
    INCOMPLETE = "incomplete", "completed without an effect it needs"


@dataclass
class ServiceAudit:
    service: str
    attempts: int
    effects: str
    operations: dict[str, int] = field(default_factory=dict)

    @property
    def line(self) -> str:
        plural = "" if self.attempts == 1 else "s"
        calls = ""
        if len(self.operations) > 1:  # say which calls, so "2 attempts" is not read as retries
            calls = " (" + ", ".join(f"{op} {n}" for op, n in self.operations.items()) + ")"
        return f"{self.service}: {self.attempts} attempt{plural}{calls}, {self.effects}"


@dataclass
class OrderEffects:
    """What the services did for one order: the rows their effects left."""

    reservations: list[Reservation]
    charges: list[Charge]
    shipments: list[Shipment]
    messages: list[Message]

    @classmethod
    def of(cls, order: Order) -> OrderEffects:
        return cls(
            list(order.reservations.all()),
            list(order.charges.all()),
            list(order.shipments.all()),
            list(order.messages.all()),
        )

    @classmethod
    def of_orders(cls, order_ids: list[int]) -> dict[int, OrderEffects]:
        """Effects of many orders, one query per kind of effect."""
        effects = {pk: cls([], [], [], []) for pk in order_ids}
        for model, kind in (
            (Reservation, "reservations"),
            (Charge, "charges"),
            (Shipment, "shipments"),
            (Message, "messages"),
        ):
            for row in model.objects.filter(order_id__in=order_ids).order_by("id"):
                getattr(effects[row.order_id], kind).append(row)
        return effects


@dataclass
class OrderAudit:
    order: Order
    effects: OrderEffects
    services: list[ServiceAudit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    troubles: set[Trouble] = field(default_factory=set)

    @property
    def adds_up(self) -> bool:
        return not self.problems

    def problem(self, text: str, *troubles: Trouble) -> None:
        self.problems.append(text)
        self.troubles.update(troubles)

    @property
    def lost_summary(self) -> str:
        """What a lost plain-script order left behind, in a few words."""
        effects = self.effects
        charged = any(c.refunded_at is None for c in effects.charges)
        shipped = any(s.cancelled_at is None for s in effects.shipments)
        if charged and not shipped:
            return "lost: charged, not shipped"
        if charged:
            return "lost: charged and shipped, never confirmed"
        if any(r.state == Reservation.State.RESERVED for r in effects.reservations):
            return "lost: stock held, nothing charged"
        return "lost: stopped before any effect"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def audit_order(
    order: Order, ledger: list[ServiceCall] | None = None, effects: OrderEffects | None = None
) -> OrderAudit:
    """The audit of one order. Pass its ledger rows and effects when they are loaded
    already (many orders at once); otherwise they are read here."""
    if ledger is None:
        ledger = list(order.calls.order_by("id"))
    if effects is None:
        effects = OrderEffects.of(order)
    calls = [(call.service, call.operation) for call in ledger]
    attempts = Counter(service for service, _ in calls)
    operations: dict[str, Counter[str]] = {}
    for service, operation in calls:
        operations.setdefault(service, Counter())[operation] += 1
    reservations = effects.reservations
    charges = effects.charges
    live_charges = [c for c in charges if c.refunded_at is None]
    shipments = [s for s in effects.shipments if s.cancelled_at is None]
    messages = Counter(message.channel for message in effects.messages)
    held = [r for r in reservations if r.state == Reservation.State.RESERVED]
    committed = [r for r in reservations if r.state == Reservation.State.COMMITTED]

    refunded = len(charges) - len(live_charges)
    summaries = {
        "inventory": _count(len(reservations), "reservation")
        + (f" ({', '.join(r.state for r in reservations)})" if reservations else ""),
        "payment": _count(len(charges), "charge") + (f", {refunded} refunded" if refunded else ""),
        "shipping": _count(len(shipments), "shipment"),
        "email": _count(messages["email"], "email"),
        "sms": _count(messages["sms"], "SMS"),
    }
    audit = OrderAudit(
        order=order,
        effects=effects,
        services=[
            ServiceAudit(s, attempts[s], summaries[s], dict(operations[s]))
            for s in SERVICES
            if attempts[s]
        ],
    )
    live_shipment = bool(shipments)
    if len(live_charges) > 1:
        audit.problem(f"charged {len(live_charges)} times", Trouble.CHARGED_TWICE)
    if len(reservations) > 1:
        audit.problem(f"stock reserved {len(reservations)} times", Trouble.STOCK)
    if order.status in (OrderStatus.COMPLETED, OrderStatus.COMPLETED_WITH_WARNINGS):
        if not live_charges:
            audit.problem("completed without a charge", Trouble.INCOMPLETE)
        if not live_shipment:
            stranded = (Trouble.CHARGE_STRANDED,) if live_charges else ()
            audit.problem("completed without a shipment", Trouble.INCOMPLETE, *stranded)
        if held:
            audit.problem("stock reserved but never committed", Trouble.STOCK)
    elif order.status in (OrderStatus.FAILED, OrderStatus.CANCELLED):
        if live_charges:
            audit.problem(
                "charged, but the order failed and was never refunded", Trouble.CHARGE_STRANDED
            )
        if held or committed:
            audit.problem("stock never released", Trouble.STOCK)
    elif order.is_lost:
        left_behind = [Trouble.LOST]
        if live_charges and not live_shipment:
            left_behind.append(Trouble.CHARGE_STRANDED)
        if held:
            left_behind.append(Trouble.STOCK)
        audit.problem(audit.lost_summary, *left_behind)
    for text in _start_problems(order):
        audit.problem(text, Trouble.LOST)
    return audit


def _start_problems(order: Order) -> list[str]:
    """An order Temporal should run that it never got: the one loss retries cannot fix."""
    if order.engine != Engine.TEMPORAL or order.workflow_id:
        return []
    if order.status == OrderStatus.QUEUED:
        waited = (timezone.now() - order.created_at).total_seconds()
        limit = settings.QUEUED_LIMIT_SECONDS
        if waited > limit:
            return [f"queued for {waited / 60:.0f} min, past the {limit / 60:g} min limit"]
        return []
    if order.status == OrderStatus.STOPPED:
        return []  # said so already: Temporal refused or lost it
    return ["never started in Temporal, and not queued to start"]


def orders_that_do_not_add_up(orders: list[Order]) -> list[int]:
    return [order.pk for order in orders if not audit_order(order).adds_up]


def stock_out_of_balance() -> list[str]:
    """Products whose count of held units disagrees with the reservations holding them:
    a unit held by no reservation (or a reservation holding none) never comes back."""
    held = Sum("reservation__quantity", filter=Q(reservation__state=Reservation.State.RESERVED))
    problems = []
    for product in Product.objects.annotate(held=held).order_by("sku"):
        if product.reserved != (product.held or 0):
            problems.append(
                f"{product.sku}: {product.reserved} units counted as held,"
                f" {product.held or 0} held by reservations"
            )
    return problems
