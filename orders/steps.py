"""The one writer of step records: every attempt, compensation and finish goes through here.

Activities, compensations, the workflow's finish and the plain script all call
`record_step` (and `record_outcome` at the end). Each write also moves the order's
`updated_at`, the signature the live hub watches, last: a change the hub sees is complete.
"""

from __future__ import annotations

from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from orderdash.db import write_transaction
from orders.contract import STEP_CALLS, OrderStatus, StepState, step_key
from orders.models import Order, OrderStep
from orders.simulator.models import Outcome, ServiceCall


def record_step(
    order_id: int,
    step: str,
    state: str,
    *,
    attempt: int | None = None,
    error: str | None = None,
    result: str | None = None,
    worker: str | None = None,
) -> bool:
    """Record what one attempt (or the saga) did to a step; False when it was too late.

    `worker` names the worker of a starting attempt, for the ledger should it die with it.

    An attempt that timed out may still end after its successor started: an older
    attempt never overwrites what a newer one wrote. The order turns running with its
    first attempt (and never leaves a final status).
    """
    now = timezone.now()
    fields: dict[str, object] = {"state": state}
    steps = OrderStep.objects.filter(order_id=order_id, name=step)
    if attempt is not None:
        fields["attempts"] = attempt
        steps = steps.filter(attempts__lte=attempt)
    if state == StepState.RUNNING:
        fields["started_at"] = now
        fields["entered_at"] = Coalesce(F("entered_at"), Value(now))  # the first attempt's
    elif state == StepState.COMPLETED:
        fields["finished_at"] = now
    if error is not None:
        fields["last_error"] = error
    if result is not None:
        fields["result"] = result
    if worker is not None:
        fields["worker"] = worker
    # One write transaction for both rows: on SQLite every transaction queues for the
    # one write lock, so two statements in one cost half the wait of two on their own.
    with write_transaction():
        if not steps.update(**fields):
            return False
        # Only a starting attempt turns the order running: whatever an attempt records
        # later (retrying, completed, failed) follows its own start.
        _touch(order_id, running=state == StepState.RUNNING)
    return True


def record_lost_attempts(
    order_id: int,
    service: str,
    operation: str,
    *,
    before: int,
    first: int = 1,
    idempotency_key: str,
    worker: str = "",
    noticed_by: str = "",
    touch: bool = True,
) -> list[int]:
    """Record as lost every attempt from `first` to before `before` that left no row in
    the ledger (and, unless `touch` is False, let the hub know).

    An attempt writes its ledger row when the service answers; one whose worker died
    first writes nothing, and Temporal starts the next attempt once a timeout notices.
    That next attempt calls this, so the ledger counts what Temporal's history counts.
    `worker` is the lost attempt's worker when known (the step's record or the attempt's
    last heartbeat named it). If the attempt was alive after all and answers late, its
    own row replaces this one.
    Returns the attempt numbers recorded.
    """
    if before <= first:
        return []
    calls = ServiceCall.objects.filter(order_id=order_id, service=service, operation=operation)
    seen = set(calls.filter(attempt__range=(first, before - 1)).values_list("attempt", flat=True))
    missing = [n for n in range(first, before) if n not in seen]
    if not missing:
        return []
    who = f"its worker {worker}" if worker else "its worker"
    note = f"No answer: lost with {who}" + (f"; {noticed_by}" if noticed_by else "")
    lost = [
        ServiceCall(
            order_id=order_id,
            service=service,
            operation=operation,
            attempt=n,
            idempotency_key=idempotency_key,
            outcome=Outcome.LOST,
            error=note,
            # Only the attempt just before this one left its worker's name behind.
            worker=worker if n == before - 1 else "",
        )
        for n in missing
    ]
    with write_transaction():
        # ignore_conflicts: its own row, or another attempt's record of it, came first.
        ServiceCall.objects.bulk_create(lost, ignore_conflicts=True)
        if touch:
            _touch(order_id, running=False)
    return missing


def touch_order(order_id: int) -> None:
    """Something moved without changing a step (a compensation's ledger row, the plain
    script still alive during a pause): let the hub know."""
    with write_transaction():
        _touch(order_id, running=False)


def record_status(order_id: int, status: str) -> None:
    """A status the workflow reports while it runs (waiting for approval, and back)."""
    open_order = Order.objects.filter(pk=order_id).exclude(status__in=OrderStatus.final())
    with write_transaction():
        open_order.update(status=status, updated_at=timezone.now())


def record_outcome(
    order_id: int,
    status: str,
    *,
    step_states: dict[str, str] | None = None,
    payment_id: str = "",
    tracking_number: str = "",
    warnings: list[str] | None = None,
    error: str = "",
) -> None:
    """The order's end: each step's final state and the status, in one transaction.

    The hub reads a final status as "nothing changes any more", so the steps must
    already say how it ended when the status is seen.
    """
    # One transaction: the hub sees the steps and the status change together. Rows in the
    # order every attempt's answer writes them (ledger, step, order): on PostgreSQL, a late
    # answer meanwhile waits rather than deadlocks.
    with write_transaction():
        _record_unanswered_last_attempts(order_id)
        if step_states:
            by_name = [When(name=step, then=Value(state)) for step, state in step_states.items()]
            steps = OrderStep.objects.filter(order_id=order_id, name__in=step_states)
            steps.update(state=Case(*by_name, default=F("state")))
        now = timezone.now()
        Order.objects.filter(pk=order_id).update(
            status=status,
            payment_id=payment_id,
            tracking_number=tracking_number,
            warnings=warnings or [],
            failure_reason=error,
            finished_at=now,
            updated_at=now,
        )


def _record_unanswered_last_attempts(order_id: int) -> None:
    """A step's last attempt can die with its worker too, and then no attempt comes after
    it to say so: at the end, a step's last attempt without a ledger row is lost. (Earlier
    ones were each recorded by the attempt after them, or are still on their way: an
    attempt that timed out may answer after the order ended.)"""
    started = dict(
        OrderStep.objects.filter(order_id=order_id, attempts__gt=0).values_list("name", "attempts")
    )
    if not started:
        return
    answered = set(
        ServiceCall.objects.filter(order_id=order_id).values_list("service", "operation", "attempt")
    )
    workflow_id = Order.objects.filter(pk=order_id).values_list("workflow_id", flat=True).first()
    for step, attempts in started.items():
        service, operation = STEP_CALLS[step]
        if (service, operation, attempts) in answered:
            continue
        record_lost_attempts(
            order_id,
            service,
            operation,
            before=attempts + 1,
            first=attempts,
            idempotency_key=step_key(workflow_id or "", step),
            noticed_by="the order ended without its answer",
            touch=False,  # the order's end is written next, in the same transaction
        )


def _touch(order_id: int, *, running: bool) -> None:
    fields: dict[str, object] = {"updated_at": timezone.now()}
    if running:
        # In the same statement: an order with an attempt under way is running, unless
        # it has already ended (a late attempt of a cancelled order).
        fields["status"] = Case(
            When(~Q(status__in=OrderStatus.final()), then=Value(OrderStatus.RUNNING)),
            default=F("status"),
        )
    Order.objects.filter(pk=order_id).update(**fields)
