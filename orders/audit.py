"""The exactly-once check: attempts made versus effects applied, per order and service.

Attempts come from the ledger; effects from the services' own rows (reservations,
charges, shipments, messages). Retries are fine; effects that don't add up are not.

The rules live here three ways, kept together so they stay one set of rules:
`audit_order` (one order, with the lines the report prints), `audit_orders` (every order
of a queryset in a fixed handful of queries, for the command) and `does_not_add_up`
(the same verdict as a database filter, for the admin). A test checks that they agree.

Each problem is said in words and classed as a `Trouble`, which the chaos run's
scoreboard counts: this module is the one definition of what is wrong with an order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from orders.contract import SERVICES, OrderStatus, Service
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
    """What the services did for one order: the rows their effects left (model
    instances, or, for the audit of every order, rows with the same fields)."""

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
        rows = effect_rows(dict.fromkeys(EFFECT_KINDS, order_ids))
        return {pk: cls(**{kind: rows[kind][pk] for kind in EFFECT_KINDS}) for pk in order_ids}


# Each kind of effect, its rows' model, and the services whose calls leave it: a service
# writes its ledger row after its effect, so while those services' ledger rows stay as
# they were, so do these rows.
EFFECT_KINDS: dict[str, tuple[type[models.Model], tuple[str, ...]]] = {
    "reservations": (Reservation, (Service.INVENTORY,)),
    "charges": (Charge, (Service.PAYMENT,)),
    "shipments": (Shipment, (Service.SHIPPING,)),
    "messages": (Message, (Service.EMAIL, Service.SMS)),
}


def effect_rows(wanted: dict[str, list[int]]) -> dict[str, dict[int, list[Any]]]:
    """Per kind of effect, the rows of the orders wanted for it (one query per kind)."""
    found: dict[str, dict[int, list[Any]]] = {}
    for kind, order_ids in wanted.items():
        found[kind] = {pk: [] for pk in order_ids}
        if not order_ids:
            continue
        model = EFFECT_KINDS[kind][0]
        for row in model.objects.filter(order_id__in=order_ids).order_by("id"):
            found[kind][row.order_id].append(row)
    return found


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
    operations: dict[str, Counter[str]] = {}
    for call in ledger:
        operations.setdefault(call.service, Counter())[call.operation] += 1
    return _audit(order, operations, effects)


def _audit(order: Order, operations: dict[str, Counter[str]], effects: OrderEffects) -> OrderAudit:
    """The verdict and the report's lines, from the attempts per service and operation."""
    attempts = Counter({service: sum(ops.values()) for service, ops in operations.items()})
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


# --- every order at once ----------------------------------------------------------------

EFFECT_ROWS = (
    # (kind, model, the fields the verdict and the report read)
    ("reservations", Reservation, ("order_id", "state")),
    ("charges", Charge, ("order_id", "refunded_at")),
    ("shipments", Shipment, ("order_id", "cancelled_at")),
    ("messages", Message, ("order_id", "channel")),
)
STREAM_CHUNK = 5000


class _ByOrder:
    """Rows sorted by order number, handed out order by order as the audit walks on."""

    def __init__(self, rows: Iterator[Any], order_of: Callable[[Any], int]) -> None:
        self.rows = rows
        self.order_of = order_of
        self.head = next(rows, None)

    def take(self, order_id: int) -> list[Any]:
        taken = []
        while self.head is not None and self.order_of(self.head) <= order_id:
            if self.order_of(self.head) == order_id:
                taken.append(self.head)
            self.head = next(self.rows, None)
        return taken


def audit_orders(orders: QuerySet[Order]) -> Iterator[OrderAudit]:
    """The audit of every order of `orders`, by order number, in six queries however many
    there are: each table is read once, sorted by order, and walked alongside the orders
    (the ledger already counted per service and operation by the database)."""
    chosen = orders.values("pk")
    ledger = (
        ServiceCall.objects.filter(order__in=chosen)
        .values_list("order_id", "service", "operation")
        .annotate(n=Count("pk"), first=Min("pk"))
        .order_by("order_id")
    )
    calls = _ByOrder(ledger.iterator(chunk_size=STREAM_CHUNK), lambda row: row[0])
    # Named rows with the fields the audit reads, not model instances: building a
    # model per effect was a third of the time at 100k orders.
    effects = {
        kind: _ByOrder(
            model.objects.filter(order__in=chosen)
            .order_by("order_id", "pk")
            .values_list(*fields, named=True)
            .iterator(chunk_size=STREAM_CHUNK),
            lambda row: row.order_id,
        )
        for kind, model, fields in EFFECT_ROWS
    }
    fields = ("status", "engine", "workflow_id", "created_at", "updated_at")
    for order in orders.only(*fields).order_by("pk").iterator(chunk_size=STREAM_CHUNK):
        operations: dict[str, Counter[str]] = {}
        # Services and operations in the order they were first tried, as one order's audit.
        for _, service, operation, n, _first in sorted(calls.take(order.pk), key=lambda r: r[4]):
            operations.setdefault(service, Counter())[operation] = n
        found = OrderEffects(**{kind: rows.take(order.pk) for kind, rows in effects.items()})
        yield _audit(order, operations, found)


def does_not_add_up(now: datetime | None = None) -> Q:
    """`audit_order(order).adds_up is False`, as a filter the database evaluates: for
    the admin, over any number of orders in one query.

    "More than one" is counted once per query over each table (a group by order);
    the other checks look up only the orders their status concerns, on indexes that
    hold the column they test (the scale_indexes migrations).
    """
    now = now or timezone.now()
    order = OuterRef("pk")
    reservations = Reservation.objects.filter(order=order)
    live_charges = Charge.objects.filter(order=order, refunded_at__isnull=True)
    live_shipments = Shipment.objects.filter(order=order, cancelled_at__isnull=True)
    held = reservations.filter(state=Reservation.State.RESERVED)
    unreleased = reservations.exclude(state=Reservation.State.RELEASED)
    completed = Q(status__in=[OrderStatus.COMPLETED, OrderStatus.COMPLETED_WITH_WARNINGS])
    ended_badly = Q(status__in=[OrderStatus.FAILED, OrderStatus.CANCELLED])
    # Named statuses rather than "not final": the database then looks them up on the
    # (status, engine, updated_at) index instead of reading every plain-script order.
    moving = [s for s in OrderStatus if s not in (*OrderStatus.final(), OrderStatus.PENDING)]
    lost = Q(
        status__in=moving,
        engine=Engine.PLAIN,
        updated_at__lt=now - timedelta(seconds=Order.PLAIN_STALL_S),
    )
    queued_too_long = Q(
        status=OrderStatus.QUEUED,
        created_at__lt=now - timedelta(seconds=settings.QUEUED_LIMIT_SECONDS),
    )
    never_started = Q(engine=Engine.TEMPORAL, workflow_id="") & (
        queued_too_long | ~Q(status__in=[OrderStatus.QUEUED, OrderStatus.STOPPED])
    )
    return (
        Q(pk__in=_more_than_one(Charge.objects.filter(refunded_at__isnull=True)))
        | Q(pk__in=_more_than_one(Reservation.objects.all()))
        | (completed & (~Exists(live_charges) | ~Exists(live_shipments) | Exists(held)))
        | (ended_badly & (Exists(live_charges) | Exists(unreleased)))
        | lost
        | never_started
    )


def _more_than_one(rows: QuerySet[Any]) -> QuerySet[Any]:
    """The orders with more than one of these rows."""
    grouped = rows.order_by().values("order_id").annotate(n=Count("pk")).filter(n__gt=1)
    return grouped.values("order_id")


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
