"""One order's progress: what the database recorded, joined with what Temporal said.

`load_orders` reads the database for many orders at once, `ask_temporal` asks Temporal
about one workflow, and `snapshot_of` puts the two together, step by step through
`orders.step_state.step_view`, the one definition of a step's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from channels.db import database_sync_to_async
from django.db.models import TextChoices

from orders.audit import EFFECT_KINDS, OrderAudit, OrderEffects, audit_order, effect_rows
from orders.contract import OrderProgress, StepState
from orders.models import Engine, OperatorAction, Order, OrderStep
from orders.simulator.models import ServiceCall
from orders.step_state import Recorded, StepView, step_view
from orders.temporal import TemporalUnavailable, WorkflowState, describe_order, query_progress
from orders.timeline import Timeline, build_timeline

log = logging.getLogger(__name__)


class Source(TextChoices):
    """Where the page's picture of an order came from, in words the page can show."""

    LIVE = "live"  # Temporal answered, a worker too
    NO_WORKER = "no_worker"  # Temporal answered; no worker to answer the query
    NO_TEMPORAL = "no_temporal"  # Temporal unreachable: the database alone
    ENDED = "ended"  # Temporal closed the workflow (terminated …) before the order ended
    FINAL = "final"  # the order is over: the database has the last word
    DATABASE = "database"  # the plain script, or still queued: the database is all there is


@dataclass
class OrderRecord:
    """What the database holds about one order, loaded together."""

    order: Order
    steps: list[OrderStep]
    calls: list[ServiceCall]
    audit: OrderAudit
    history: list[OperatorAction] = field(default_factory=list)


@dataclass
class TemporalView:
    """What Temporal said about one workflow the last time it was asked."""

    state: WorkflowState | None = None  # describe; None when Temporal has no such workflow
    progress: OrderProgress | None = None  # the workflow's query answer
    reachable: bool = True
    answered: bool = True  # the last query found a worker to answer it


@dataclass
class OrderSnapshot:
    order: Order
    steps: list[StepView]
    source: str
    calls: list[ServiceCall] = field(default_factory=list)
    audit: OrderAudit | None = None
    workflow_status: str = ""  # Temporal's word for the workflow, when it was asked
    history: list[OperatorAction] = field(default_factory=list)  # operators' actions

    @property
    def may_cancel(self) -> bool:
        order = self.order
        return order.engine == Engine.TEMPORAL and not order.is_final and not order.is_lost

    @property
    def timeline(self) -> Timeline | None:
        """Every attempt on one time axis (orders/timeline.py)."""
        return build_timeline(self.calls, self.steps)

    @property
    def from_temporal(self) -> bool:
        """Temporal answered and its answer is part of this picture."""
        return self.source in (Source.LIVE, Source.NO_WORKER)

    @property
    def awaits_schedule(self) -> bool:
        """A retry the database announced that Temporal has not yet been seen to schedule."""
        return self.from_temporal and any(
            step.state == StepState.RETRYING and step.next_retry_at is None for step in self.steps
        )

    @property
    def compensating(self) -> bool:
        """A step failed for good: the workflow is undoing the others (only it knows how far)."""
        return self.from_temporal and any(step.state == StepState.FAILED for step in self.steps)


def in_flight_on_temporal(order: Order) -> bool:
    """Describe and the query have something to add, reachable or not right now."""
    return (
        order.engine == Engine.TEMPORAL
        and bool(order.workflow_id)
        and not (order.is_final or order.is_lost)
    )


# Per order: per kind of effect, its services' ledger rows as last read (each row's id and
# outcome), and the effects read then.
EffectsCache = dict[int, tuple[dict[str, tuple], OrderEffects]]


def load_orders(
    order_ids: Iterable[int], effects_cache: EffectsCache | None = None
) -> dict[int, OrderRecord]:
    """Everything a snapshot needs from the database, for many orders in eight queries.

    Grouped by hand rather than with prefetch_related, which builds a queryset per order
    and relation: for the hub's batches that bookkeeping cost more than the queries.

    With a cache (the hub keeps one), a kind of effect (an order's reservations, say) is
    read again only when the ledger of the services that leave it changed: a service
    writes its ledger row after its effect, so effects read along with a ledger are never
    older than it. All four queries, and a quarter of the work of rebuilding a watched
    order, saved on every change that is not a service's answer (an attempt starting,
    Temporal's news), and three of them on one that is.
    """
    orders = {
        o.pk: o for o in Order.objects.filter(pk__in=list(order_ids)).select_related("product")
    }
    ids = list(orders)
    steps: dict[int, list[OrderStep]] = {pk: [] for pk in ids}
    for step in OrderStep.objects.filter(order_id__in=ids).order_by("order_id", "position"):
        steps[step.order_id].append(step)
    calls: dict[int, list[ServiceCall]] = {pk: [] for pk in ids}
    for call in ServiceCall.objects.filter(order_id__in=ids).order_by("id"):
        calls[call.order_id].append(call)
    ledgers = {
        pk: {
            kind: tuple((c.id, c.outcome) for c in calls[pk] if c.service in services)
            for kind, (_model, services) in EFFECT_KINDS.items()
        }
        for pk in ids
    }
    cache = {} if effects_cache is None else effects_cache
    stale = {
        kind: [pk for pk in ids if pk not in cache or cache[pk][0][kind] != ledgers[pk][kind]]
        for kind in EFFECT_KINDS
    }
    rows = effect_rows(stale)
    effects: dict[int, OrderEffects] = {}
    for pk in ids:
        read = {kind: rows[kind][pk] for kind in EFFECT_KINDS if pk in rows[kind]}
        effects[pk] = replace(cache[pk][1], **read) if pk in cache else OrderEffects(**read)
    cache.update({pk: (ledgers[pk], effects[pk]) for pk in ids})
    history: dict[int, list[OperatorAction]] = {pk: [] for pk in ids}
    for action in OperatorAction.objects.filter(order_id__in=ids).order_by("-id"):
        history[action.order_id].append(action)
    return {
        pk: OrderRecord(
            order,
            steps[pk],
            calls[pk],
            audit_order(order, calls[pk], effects[pk]),
            history[pk],
        )
        for pk, order in orders.items()
    }


async def ask_temporal(
    workflow_id: str, *, worker_up: bool, query: bool = True, previous: TemporalView | None = None
) -> TemporalView:
    """Describe the workflow and, when asked to and a worker polls, query it.

    Without a query the previous answer is kept: the query costs a workflow task on a
    busy worker, describe only a read on the server.
    """
    previous = previous or TemporalView()
    query = query and worker_up
    described, queried = await asyncio.gather(
        describe_order(workflow_id),
        query_progress(workflow_id) if query else _nothing(),
        return_exceptions=True,
    )
    if isinstance(described, TemporalUnavailable):
        # What describe said before may be out of date by now: keep only the workflow's
        # own view of its steps, which never goes backwards.
        return TemporalView(None, previous.progress, reachable=False)
    if isinstance(described, BaseException):
        raise described
    if isinstance(queried, BaseException):
        # Describe still counts; the query is tried again on the next round.
        log.error("Querying %s failed", workflow_id, exc_info=queried)
        return TemporalView(described, previous.progress, answered=previous.answered)
    if not query:
        return TemporalView(described, previous.progress, answered=previous.answered)
    return TemporalView(described, queried or previous.progress, answered=queried is not None)


async def _nothing() -> None:
    return None


def source_of(order: Order, temporal: TemporalView | None, *, worker_up: bool) -> str:
    """Which sources count for this order's picture right now."""
    if order.is_final or order.is_lost:
        return Source.FINAL
    if order.engine == Engine.PLAIN or not order.workflow_id:
        return Source.DATABASE  # the plain script, or still queued
    if temporal is not None and not temporal.reachable:
        return Source.NO_TEMPORAL
    if temporal is not None and temporal.state and temporal.state.status != "RUNNING":
        return Source.ENDED
    if not worker_up or (temporal is not None and not temporal.answered):
        return Source.NO_WORKER
    return Source.LIVE


def snapshot_of(
    record: OrderRecord, temporal: TemporalView | None, *, worker_up: bool
) -> OrderSnapshot:
    """The order as the page shows it: each step through `step_view`."""
    source = source_of(record.order, temporal, worker_up=worker_up)
    if source in (Source.FINAL, Source.DATABASE):
        temporal = None  # closed or not on Temporal: the database has the last word
    progress = temporal.progress if temporal else None
    state = temporal.state if temporal else None
    queried = {step.name: step for step in progress.steps} if progress else {}
    pending = {attempt.step: attempt for attempt in state.pending} if state else {}
    return OrderSnapshot(
        order=record.order,
        steps=[
            step_view(
                step.name,
                Recorded(step.state, step.attempts, step.last_error, step.result),
                queried.get(step.name),
                pending.get(step.name),
            )
            for step in record.steps
        ],
        source=source,
        calls=record.calls,
        audit=record.audit,
        workflow_status=state.status if state else "",
        history=record.history,
    )


async def build_snapshot(order_id: int, *, worker_up: bool = True) -> OrderSnapshot | None:
    """One order, now: the database and Temporal asked afresh. None when it does not exist."""
    # database_sync_to_async closes that thread's stale connection, as Django does after
    # a request, so a restarted database is reconnected to.
    records = await database_sync_to_async(load_orders, thread_sensitive=False)([order_id])
    record = records.get(order_id)
    if record is None:
        return None
    temporal = None
    if in_flight_on_temporal(record.order):
        temporal = await ask_temporal(record.order.workflow_id, worker_up=worker_up)
    return snapshot_of(record, temporal, worker_up=worker_up)
