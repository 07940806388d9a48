"""One order's progress, merged from the three places that each know part of it.

- the workflow's `progress` query: step states as the workflow sees them (needs a worker);
- describe: what workflow code never sees — the attempt in flight, the last failure and
  when the next retry is due;
- the database: what the activities recorded, which is all there is when the worker is
  down, and the full attempt history Temporal does not keep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from channels.db import database_sync_to_async

from orders.audit import OrderAudit, OrderEffects, audit_order
from orders.models import Order, OrderStep, ServiceCall
from orders.temporal import (
    TemporalUnavailable,
    WorkflowState,
    describe_order,
    query_progress,
)
from worker.shared import (
    RETRY_TABLE,
    STEP_FAILED,
    STEP_LABELS,
    STEP_RETRYING,
    STEP_RUNNING,
    OrderProgress,
)

log = logging.getLogger(__name__)

# Where the page's picture came from, in words the page can show.
SOURCE_LIVE = "live"
SOURCE_NO_WORKER = "no_worker"
SOURCE_NO_TEMPORAL = "no_temporal"
SOURCE_FINAL = "final"
SOURCE_PLAIN = "plain"  # the plain script: the database is all there is
# Temporal closed the workflow (terminated, timed out …) before it finished the order.
SOURCE_ENDED = "ended"


@dataclass
class StepView:
    name: str
    label: str
    state: str
    attempts: int
    max_attempts: int
    last_error: str
    result: str
    next_retry_at: datetime | None
    policy: str


@dataclass
class OrderSnapshot:
    order: Order
    steps: list[StepView]
    source: str
    calls: list[ServiceCall] = field(default_factory=list)
    audit: OrderAudit | None = None
    progress: OrderProgress | None = None
    workflow_status: str = ""  # Temporal's word for the workflow, when it was asked

    @property
    def current_step(self) -> StepView | None:
        for step in self.steps:
            if step.state in (STEP_RUNNING, STEP_RETRYING):
                return step
        return None

    @property
    def from_temporal(self) -> bool:
        """Temporal answered and its answer is part of this picture."""
        return self.source in (SOURCE_LIVE, SOURCE_NO_WORKER)

    @property
    def asks_temporal(self) -> bool:
        """Temporal should keep being asked, whether or not it answered last time."""
        return in_flight_on_temporal(self.order)

    @property
    def awaits_schedule(self) -> bool:
        """A retry the database announced that Temporal has not yet been seen to schedule."""
        return self.from_temporal and any(
            step.state == STEP_RETRYING and step.next_retry_at is None for step in self.steps
        )

    @property
    def compensating(self) -> bool:
        """A step failed for good: the workflow is undoing the others (only it knows how far)."""
        return self.from_temporal and any(step.state == STEP_FAILED for step in self.steps)


@dataclass
class OrderRecord:
    """What the database holds about one order, loaded together."""

    order: Order
    steps: list[OrderStep]
    calls: list[ServiceCall]
    audit: OrderAudit


def in_flight_on_temporal(order: Order) -> bool:
    """Describe and the query have something to add, reachable or not right now."""
    return (
        order.engine == Order.TEMPORAL
        and bool(order.workflow_id)
        and not (order.is_final or order.is_lost)
    )


def load_orders(order_ids: Iterable[int]) -> dict[int, OrderRecord]:
    """Everything a snapshot needs from the database, for many orders in seven queries.

    Grouped by hand rather than with prefetch_related, which builds a queryset per order
    and relation: for the hub's batches that bookkeeping cost more than the queries.
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
    effects = OrderEffects.of_orders(ids)
    return {
        pk: OrderRecord(
            order=order,
            steps=steps[pk],
            calls=calls[pk],
            audit=audit_order(order, calls[pk], effects[pk]),
        )
        for pk, order in orders.items()
    }


@dataclass
class TemporalView:
    """What Temporal said about one workflow the last time it was asked."""

    state: WorkflowState | None = None  # describe; None when Temporal has no such workflow
    progress: OrderProgress | None = None  # the workflow's query answer
    reachable: bool = True
    answered: bool = True  # the last query found a worker to answer it
    queried: bool = field(default=False, compare=False)  # this answer has a fresh query


async def ask_temporal(
    workflow_id: str,
    *,
    worker_up: bool,
    query: bool = True,
    previous: TemporalView | None = None,
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
    return TemporalView(
        described, queried or previous.progress, answered=queried is not None, queried=True
    )


async def _nothing() -> None:
    return None


def snapshot_of(
    record: OrderRecord, temporal: TemporalView | None, *, worker_up: bool
) -> OrderSnapshot:
    """Merge the database with what Temporal said (if it was asked) into one picture."""
    order = record.order
    if order.is_final or order.is_lost:
        source = SOURCE_FINAL
    elif order.engine == Order.PLAIN:
        source = SOURCE_PLAIN
    elif order.workflow_id:
        source = SOURCE_LIVE
    else:  # not started yet (database only), or could not be started (nothing to watch)
        source = SOURCE_FINAL if order.start_error else SOURCE_PLAIN
    if source != SOURCE_LIVE:
        temporal = None  # closed or not on Temporal: the database has the last word
    elif temporal is not None and not temporal.reachable:
        source = SOURCE_NO_TEMPORAL
    elif temporal is not None and temporal.state and temporal.state.status != "RUNNING":
        source = SOURCE_ENDED
    elif not worker_up or (temporal is not None and not temporal.answered):
        source = SOURCE_NO_WORKER
    progress = temporal.progress if temporal else None
    state = temporal.state if temporal else None
    return OrderSnapshot(
        order=order,
        steps=[_merge(step, progress, state) for step in record.steps],
        source=source,
        calls=record.calls,
        audit=record.audit,
        progress=progress,
        workflow_status=state.status if state else "",
    )


async def build_snapshot(order_id: int, *, worker_up: bool = True) -> OrderSnapshot | None:
    """One order, now: the database and Temporal asked afresh. None when it does not exist."""
    # Not thread-sensitive: many orders' snapshots load side by side, not in one queue.
    # (database_sync_to_async: that thread's connection is closed when stale, as Django
    # does after a request, so a restarted database is reconnected to.)
    records = await database_sync_to_async(load_orders, thread_sensitive=False)([order_id])
    record = records.get(order_id)
    if record is None:
        return None
    temporal = None
    if in_flight_on_temporal(record.order):
        temporal = await ask_temporal(record.order.workflow_id, worker_up=worker_up)
    return snapshot_of(record, temporal, worker_up=worker_up)


def _merge(
    db_step: OrderStep, progress: OrderProgress | None, state: WorkflowState | None
) -> StepView:
    policy = RETRY_TABLE[db_step.name]
    view = StepView(
        name=db_step.name,
        label=STEP_LABELS[db_step.name],
        state=db_step.state,
        attempts=db_step.current_attempt,
        max_attempts=policy.maximum_attempts,
        last_error=db_step.last_error,
        result=db_step.result,
        next_retry_at=None,
        policy=policy.describe(),
    )
    if progress is not None:
        queried = next((s for s in progress.steps if s.name == db_step.name), None)
        # The database is written by the attempt itself and knows retries; the workflow
        # knows the saga (compensated, skipped). Prefer the workflow only for those.
        if queried and queried.state not in (STEP_RUNNING, "pending"):
            view.state = queried.state
            view.result = queried.result or view.result
            if queried.error:
                view.last_error = queried.error
            if view.state != STEP_RETRYING:  # no next attempt is coming after all
                view.attempts = db_step.attempts
    pending = next((p for p in state.pending if p.step == db_step.name), None) if state else None
    # Each attempt writes the database before Temporal hears how it ended, so describe
    # can lag behind. It is newer only about an attempt the database never saw end (a
    # later one: a timeout the worker could not report), or about the retry the database
    # announced, which only Temporal can schedule.
    if pending is not None and (
        pending.attempt > view.attempts
        or (pending.attempt == view.attempts and view.state == STEP_RETRYING)
    ):
        view.attempts = pending.attempt
        view.last_error = pending.last_failure or view.last_error
        if pending.next_attempt_at is not None:
            view.state = STEP_RETRYING
            view.next_retry_at = pending.next_attempt_at
        elif pending.running:
            view.state = STEP_RUNNING
        elif pending.attempt > 1:
            view.state = STEP_RETRYING  # due now, waiting for a worker to pick it up
    return view
