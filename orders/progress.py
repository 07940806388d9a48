"""One order's progress, merged from the three places that each know part of it.

- the workflow's `progress` query: step states as the workflow sees them (needs a worker);
- describe: what workflow code never sees — the attempt in flight, the last failure and
  when the next retry is due;
- the database: what the activities recorded, which is all there is when the worker is
  down, and the full attempt history Temporal does not keep.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async

from orders.audit import OrderAudit, audit_order
from orders.models import Order, OrderStep, ServiceCall
from orders.temporal import (
    TemporalUnavailable,
    WorkflowState,
    describe_order,
    query_progress,
)
from worker.shared import (
    RETRY_TABLE,
    STEP_LABELS,
    STEP_RETRYING,
    STEP_RUNNING,
    OrderProgress,
)

# Where the page's picture came from, in words the page can show.
SOURCE_LIVE = "live"
SOURCE_NO_WORKER = "no_worker"
SOURCE_NO_TEMPORAL = "no_temporal"
SOURCE_FINAL = "final"
SOURCE_PLAIN = "plain"  # the plain script: the database is all there is


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

    @property
    def current_step(self) -> StepView | None:
        for step in self.steps:
            if step.state in (STEP_RUNNING, STEP_RETRYING):
                return step
        return None


def _load(
    order_id: int, known_audit: OrderAudit | None
) -> tuple[Order, list[OrderStep], list[ServiceCall], OrderAudit] | None:
    order = Order.objects.select_related("product").filter(pk=order_id).first()
    if order is None:
        return None
    # The audit is most of the queries; in flight, the caller's recent one will do.
    fresh = known_audit is None or order.is_final or order.is_lost
    audit = audit_order(order) if fresh else known_audit
    return order, list(order.steps.all()), list(order.calls.order_by("id")), audit


async def build_snapshot(
    order_id: int,
    *,
    worker_up: bool = True,
    ask_workflow: bool = True,
    known_progress: OrderProgress | None = None,
    known_audit: OrderAudit | None = None,
) -> OrderSnapshot | None:
    """None when the order does not exist.

    The query costs a workflow task on a busy worker, so a caller refreshing often may
    pass `ask_workflow=False` with the progress it got last time; describe and the
    database (both cheap) are always read afresh.
    """
    # Not thread-sensitive: many orders' snapshots load side by side, not in one queue.
    loaded = await sync_to_async(_load, thread_sensitive=False)(
        order_id, None if ask_workflow else known_audit
    )
    if loaded is None:
        return None
    order, db_steps, calls, audit = loaded
    progress: OrderProgress | None = None if ask_workflow else known_progress
    state: WorkflowState | None = None
    if order.is_final or order.is_lost:
        source = SOURCE_FINAL
    elif order.engine == Order.PLAIN:
        source = SOURCE_PLAIN
    elif order.workflow_id:
        source = SOURCE_LIVE
    else:  # not started yet (database only), or could not be started (nothing to watch)
        source = SOURCE_FINAL if order.start_error else SOURCE_PLAIN
    if source == SOURCE_LIVE:
        try:
            # A query waits for a worker; skip it when none is polling.
            state, queried = await asyncio.gather(
                describe_order(order.workflow_id),
                query_progress(order.workflow_id) if worker_up and ask_workflow else _nothing(),
            )
        except TemporalUnavailable:
            source = SOURCE_NO_TEMPORAL
        else:
            progress = queried if ask_workflow else progress
            if not worker_up or (ask_workflow and queried is None):
                source = SOURCE_NO_WORKER
    steps = [_merge(step, progress, state) for step in db_steps]
    return OrderSnapshot(
        order=order, steps=steps, source=source, calls=calls, audit=audit, progress=progress
    )


async def _nothing() -> None:
    return None


def _merge(
    db_step: OrderStep, progress: OrderProgress | None, state: WorkflowState | None
) -> StepView:
    policy = RETRY_TABLE[db_step.name]
    view = StepView(
        name=db_step.name,
        label=STEP_LABELS[db_step.name],
        state=db_step.state,
        attempts=db_step.attempts,
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
    pending = next((p for p in state.pending if p.step == db_step.name), None) if state else None
    # The attempt writes the database before Temporal hears it finished: an attempt the
    # database already closed is not "running" any more, whatever describe still says.
    if pending is not None and (
        pending.attempt > view.attempts
        or (pending.attempt == view.attempts and view.state == STEP_RUNNING)
    ):
        view.attempts = max(view.attempts, pending.attempt)
        view.last_error = pending.last_failure or view.last_error
        if pending.next_attempt_at is not None:
            view.state = STEP_RETRYING
            view.next_retry_at = pending.next_attempt_at
        elif pending.running:
            view.state = STEP_RUNNING
        elif pending.attempt > 1:
            view.state = STEP_RETRYING  # due now, waiting for a worker to pick it up
    return view
