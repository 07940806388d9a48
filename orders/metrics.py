"""The numbers: what the metrics strip, the live charts and Prometheus's /metrics show.

One module reads them from the database, so the page and a scrape agree, and so several
web processes agree (nothing is counted in one process's memory).

The strip and the charts are recomputed every few seconds for every open board, so they
read time windows only (the last minute, the last 15 minutes) through indexes that start
with the time (`Order.created_at`, `(finished_at, status)`, the ledger's `(created_at,
service, attempt)`) and `Order.status` for the few open orders: six queries whose cost
follows the orders of the window, never all the orders ever placed.
Prometheus's totals (orders by status and engine, attempts by service and outcome) are a
count over everything by definition; they are grouped in the database over covering
indexes, once per scrape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q, QuerySet, TextChoices
from django.db.models.functions import TruncMinute
from django.utils import timezone

from orders.contract import SERVICES, OrderStatus
from orders.models import Engine, Order
from orders.simulator.models import Outcome, ServiceCall

CHART_MINUTES = 15
# Started and not waiting for anyone: the workflow (or the script) is working on it.
# A plain-script order whose process died stays "running" for ever: it is lost, not in
# flight (see in_flight()).
IN_FLIGHT = (OrderStatus.PENDING, OrderStatus.RUNNING)
# Saved but waiting: for Temporal to take it (queued), for an operator (approval).
WAITING = (OrderStatus.QUEUED, OrderStatus.AWAITING_APPROVAL)


class Ending(TextChoices):
    """How finished orders are grouped on the strip and the throughput chart."""

    COMPLETED = "completed", "completed"  # with or without warnings
    FAILED = "failed", "failed"  # failed (and undone), or stopped by Temporal
    UNDONE = "undone", "cancelled or rejected"  # by an operator, or the approval deadline


ENDING_OF_STATUS = {
    OrderStatus.COMPLETED: Ending.COMPLETED,
    OrderStatus.COMPLETED_WITH_WARNINGS: Ending.COMPLETED,
    OrderStatus.FAILED: Ending.FAILED,
    OrderStatus.STOPPED: Ending.FAILED,
    OrderStatus.CANCELLED: Ending.UNDONE,
    OrderStatus.REJECTED: Ending.UNDONE,
}


@dataclass(frozen=True)
class Minute:
    """One minute of the charts: orders placed, how finished ones ended, retries."""

    start: datetime
    placed: int
    ended: dict[str, int]  # by Ending
    retries: dict[str, int]  # by service


@dataclass(frozen=True)
class Metrics:
    """The strip's figures (the last 60 s for the rates) and the charts' last 15 minutes."""

    in_flight: int
    queued: int
    awaiting_approval: int
    completed_per_minute: int
    failed_per_minute: int
    retries_per_minute: dict[str, int]  # by service, every service present
    minutes: list[Minute]  # oldest first; the last one is the minute under way

    @property
    def waiting(self) -> int:
        return self.queued + self.awaiting_approval


def current_metrics(now: datetime | None = None) -> Metrics:
    """Everything the strip and the charts show, in six queries over time windows."""
    now = now or timezone.now()
    last_minute = now - timedelta(seconds=60)
    first = _minute_start(now) - timedelta(minutes=CHART_MINUTES - 1)

    open_counts = Order.objects.filter(status__in=[*IN_FLIGHT, *WAITING]).aggregate(
        in_flight=Count("id", filter=in_flight(now)),
        queued=Count("id", filter=Q(status=OrderStatus.QUEUED)),
        awaiting=Count("id", filter=Q(status=OrderStatus.AWAITING_APPROVAL)),
    )
    ended_lately = Order.objects.filter(finished_at__gte=last_minute).aggregate(**_ENDINGS)
    retries_lately = _retries(last_minute).aggregate(**_PER_SERVICE)
    return Metrics(
        in_flight=open_counts["in_flight"],
        queued=open_counts["queued"],
        awaiting_approval=open_counts["awaiting"],
        completed_per_minute=ended_lately[Ending.COMPLETED],
        failed_per_minute=ended_lately[Ending.FAILED],
        retries_per_minute=retries_lately,
        minutes=_minutes(first),
    )


# Counted with a filter per column, not grouped by status or service: a GROUP BY on those
# would have the database walk their index over every row instead of searching the time
# range (SQLite's planner does, without statistics).
_ENDINGS = {
    ending.value: Count(
        "id", filter=Q(status__in=[s for s, e in ENDING_OF_STATUS.items() if e == ending])
    )
    for ending in Ending
}
_PER_SERVICE = {service: Count("id", filter=Q(service=service)) for service in SERVICES}
_PLACED = {"placed": Count("id")}


def in_flight(now: datetime) -> Q:
    """Orders in flight: pending or running, and not a plain-script order gone quiet
    (the same rule as Order.is_lost)."""
    lost = Q(
        engine=Engine.PLAIN,
        status=OrderStatus.RUNNING,
        updated_at__lt=now - timedelta(seconds=Order.PLAIN_STALL_S),
    )
    return Q(status__in=IN_FLIGHT) & ~lost


def _retries(since: datetime) -> QuerySet[ServiceCall]:
    """Ledger rows since then of attempts after the first: the retries."""
    return ServiceCall.objects.filter(created_at__gte=since, attempt__gt=1).order_by()


def _minutes(first: datetime) -> list[Minute]:
    """Per minute from `first`: placed, ended by Ending, retries by service (3 queries)."""

    def per_minute(queryset: QuerySet, column: str, counts: dict) -> dict[datetime, dict]:
        rows = (
            queryset.order_by()
            .annotate(minute=TruncMinute(column, tzinfo=UTC))
            .values("minute")
            .annotate(**counts)
        )
        return {row.pop("minute"): row for row in rows}

    placed = per_minute(Order.objects.filter(created_at__gte=first), "created_at", _PLACED)
    ended = per_minute(Order.objects.filter(finished_at__gte=first), "finished_at", _ENDINGS)
    retries = per_minute(_retries(first), "created_at", _PER_SERVICE)
    starts = [first + timedelta(minutes=i) for i in range(CHART_MINUTES)]
    return [
        Minute(
            start=start,
            placed=placed.get(start, {}).get("placed", 0),
            ended=ended.get(start, dict.fromkeys(Ending.values, 0)),
            retries=retries.get(start, dict.fromkeys(SERVICES, 0)),
        )
        for start in starts
    ]


def _minute_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


# Totals for Prometheus ------------------------------------------------------------------
def orders_by_status_and_engine() -> dict[tuple[str, str], int]:
    """Every status × engine pair, zeros included, so no series comes and goes."""
    counts = dict.fromkeys(((s, e) for s in OrderStatus.values for e in Engine.values), 0)
    for row in Order.objects.order_by().values("status", "engine").annotate(n=Count("id")):
        counts[(row["status"], row["engine"])] = row["n"]
    return counts


def attempts_by_service_and_outcome() -> dict[tuple[str, str], int]:
    """Every attempt the ledger holds, per service and the outcome it was first recorded
    with, zeros included: a counter, so an attempt recorded lost that answers late stays
    counted as lost. One read of an index alone."""
    counts = dict.fromkeys(((s, o) for s in SERVICES for o in Outcome.values), 0)
    # One statement, so a row changing between two reads cannot be counted twice.
    by_outcomes = ServiceCall.objects.order_by().values_list("service", "outcome", "first_outcome")
    for service, outcome, first, n in by_outcomes.annotate(n=Count("id")):
        counts[(service, first or outcome)] += n
    return counts


def orders_in_flight() -> int:
    return Order.objects.filter(in_flight(timezone.now())).count()
