"""Activities: the workflow's only door to the outside world.

They are plain functions run in the worker's thread pool, because the simulated services
use Django's (synchronous) ORM. Each one keeps the order's step record current, so the
admin shows every attempt even though Temporal keeps only the last failure.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import close_old_connections, transaction
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from orders.contract import (
    STEP_CALLS,
    FinishRequest,
    StatusRequest,
    StepRequest,
    StepResult,
    StepState,
)
from orders.models import OrderStep
from orders.simulator import services
from orders.simulator.models import Outcome
from orders.steps import (
    record_lost_attempts,
    record_outcome,
    record_status,
    record_step,
    touch_order,
)

F = TypeVar("F", bound=Callable[..., object])


def worker_identity() -> str:
    """This worker as Temporal names it (the SDK's default identity, given explicitly to
    the Worker in worker/main.py): the ledger records it on every attempt."""
    return f"{os.getpid()}@{socket.gethostname()}"


@contextmanager
def _fresh_connection() -> Iterator[None]:
    # Activity threads live long: drop connections the database has since closed.
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


HEARTBEAT_EVERY_S = 0.5


def _heartbeat() -> None:
    # The details say which worker runs which attempt; Temporal hands them to the next
    # attempt, which so learns whose death it is retrying (see `_record_lost_attempts`).
    activity.heartbeat(worker_identity(), activity.info().attempt)


def _heartbeat_or_stop() -> None:
    """The heartbeat of a service taking its time, which is where a cancelled attempt
    stops (see `sync_activity`): a timed-out attempt, a cancelled order, a worker
    shutting down."""
    _heartbeat()
    if activity.is_cancelled():
        raise CancelledError("Cancelled")


def sync_activity(name: str) -> Callable[[F], F]:
    """An activity that Temporal cancels by telling it, not by raising into its thread.

    By default the SDK cancels a sync activity by raising CancelledError into its thread
    at whatever line runs next. An attempt waiting for SQLite's write lock in the
    `BEGIN IMMEDIATE` of `transaction.atomic()` gets it right after SQLite granted the
    lock, before Django notes that a transaction is open: no commit or rollback follows,
    and the connection keeps the write lock after the attempt ended, for good in a thread
    that lives on, until the garbage collector closes it in one that exits. Every other
    writer, the web process's included, meanwhile fails with "database is locked". Raised
    while the attempt starts its heartbeat thread, it has also left the attempt hanging.
    Attempts are short; a slow service's wait is where they look at the cancellation.
    """
    return activity.defn(name=name, no_thread_cancel_exception=True)


@contextmanager
def _heartbeating() -> Iterator[None]:
    """Heartbeat from beside the attempt for as long as it runs.

    The heartbeat timeout is there to notice a dead worker within seconds. An attempt
    that waits its turn at the database (SQLite takes one writer at a time) is alive,
    and must not be mistaken for a dead one: a thread of its own keeps heartbeating,
    in the attempt's activity context, while the attempt's thread waits or works.
    """
    context = contextvars.copy_context()
    done = threading.Event()

    def pump() -> None:
        while not done.wait(HEARTBEAT_EVERY_S):
            if context.run(activity.is_worker_shutdown):
                return  # nobody to tell any more
            try:
                context.run(_heartbeat)
            except BaseException:  # the worker is stopping (loop closed or cancelling)
                return

    # Not joined: the attempt's answer never waits on a heartbeat in flight; the pump
    # sees `done` within half a second and ends.
    threading.Thread(target=pump, name="heartbeat", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _context(request: StepRequest) -> services.CallContext:
    info = activity.info()
    timeout = info.start_to_close_timeout.total_seconds() if info.start_to_close_timeout else 0
    return services.CallContext(
        order_id=request.order_id,
        idempotency_key=request.idempotency_key,
        attempt=info.attempt,
        started_at=info.started_time,
        timeout_s=timeout,
        heartbeat=_heartbeat_or_stop,
        worker=worker_identity(),
    )


class _StepAnswer:
    """The step's record of the service's answer, written with its ledger row
    (`CallContext.answered`): one write transaction for both, and the page shows the
    attempt's end in the same change as the ledger."""

    def __init__(self, step: str, order_id: int, attempt: int) -> None:
        self.step, self.order_id, self.attempt = step, order_id, attempt
        self.recorded = False

    def __call__(self, outcome: str, text: str) -> None:
        if outcome in (Outcome.OK, Outcome.REPLAYED):
            self.record(StepState.COMPLETED, result=text)
        elif outcome == Outcome.REJECTED:
            self.record(StepState.FAILED, error=text)
        else:
            final = _is_last_attempt(self.attempt)
            self.record(StepState.FAILED if final else StepState.RETRYING, error=text)

    def record(self, state: str, **what: str) -> None:
        record_step(self.order_id, self.step, state, attempt=self.attempt, **what)
        # Recorded once it commits (with the ledger row, when written inside its
        # transaction): a commit that fails leaves the attempt to record it on its own.
        transaction.on_commit(self.committed)

    def committed(self) -> None:
        self.recorded = True


def _record_lost_attempts(
    request: StepRequest, service: str, operation: str, step: str | None = None
) -> None:
    """Before attempt N calls its service: record attempts < N that died with their worker.

    Temporal started this attempt because a timeout gave up on the one before; if that
    one left no ledger row, its worker died before the service answered it. Its worker
    is named by the step's record (an attempt names its worker as it starts), else by
    the last heartbeat Temporal kept, (worker, attempt), handed to this attempt.
    """
    info = activity.info()
    if info.attempt <= 1:
        return
    last_worker = ""
    if step is not None:
        started = OrderStep.objects.filter(
            order_id=request.order_id, name=step, attempts=info.attempt - 1
        )
        last_worker = started.values_list("worker", flat=True).first() or ""
    details = list(info.heartbeat_details)
    if not last_worker and len(details) == 2 and details[1] == info.attempt - 1:
        last_worker = str(details[0])
    before = info.attempt
    if last_worker == worker_identity():
        # It ran in this very process, which is alive: it timed out rather than died, and
        # writes its own row when it ends (if it never does, the order's end records it).
        before, last_worker = before - 1, ""
    if info.heartbeat_timeout:
        noticed = f"noticed by the heartbeat timeout ({info.heartbeat_timeout.total_seconds():g} s)"
    else:
        limit = info.start_to_close_timeout.total_seconds() if info.start_to_close_timeout else 0
        noticed = f"noticed by the start-to-close timeout ({limit:g} s)"
    record_lost_attempts(
        request.order_id,
        service,
        operation,
        before=before,
        idempotency_key=request.idempotency_key,
        worker=last_worker,
        noticed_by=noticed,
    )


def _is_last_attempt(attempt: int) -> bool:
    policy = activity.info().retry_policy
    return bool(policy and policy.maximum_attempts and attempt >= policy.maximum_attempts)


def run_step(
    step: str, request: StepRequest, call: Callable[[services.CallContext], str]
) -> StepResult:
    """Run one attempt of an order step, keeping its database record in line."""
    with _fresh_connection(), _heartbeating():
        ctx = _context(request)
        ctx.answered = answer = _StepAnswer(step, request.order_id, ctx.attempt)
        _record_lost_attempts(request, *STEP_CALLS[step], step=step)
        record_step(
            request.order_id, step, StepState.RUNNING, attempt=ctx.attempt, worker=ctx.worker
        )
        try:
            reference = call(ctx)
        # Every answer the service gives, a rejection and a success included, was recorded
        # with its ledger row (`answer`); only a ledger row never written leaves it to us.
        except services.BusinessRejection as exc:
            raise ApplicationError(
                str(exc), ctx.attempt, type=exc.error_type, non_retryable=True
            ) from exc
        except Exception as exc:
            if not answer.recorded:  # the database failed before the ledger row was in
                answer(Outcome.ERROR, str(exc) or type(exc).__name__)
            error_type = getattr(exc, "error_type", type(exc).__name__)
            raise ApplicationError(str(exc) or error_type, ctx.attempt, type=error_type) from exc
        return StepResult(reference=reference, attempt=ctx.attempt)


def run_compensation(
    request: StepRequest,
    ledger_call: tuple[str, str],
    call: Callable[[services.CallContext], str],
) -> StepResult:
    """Undo a step. Its record is updated by `finish_order` once the saga is through.

    ledger_call: the (service, operation) whose ledger rows this undo writes.
    """
    with _fresh_connection(), _heartbeating():
        ctx = _context(request)
        # The hub learns of the undo's ledger row in the transaction that writes it; an
        # undo that wrote none changed nothing the hub shows.
        ctx.answered = lambda _outcome, _text: touch_order(request.order_id)
        _record_lost_attempts(request, *ledger_call)
        try:
            reference = call(ctx)
        except Exception as exc:
            error_type = getattr(exc, "error_type", type(exc).__name__)
            raise ApplicationError(str(exc) or error_type, type=error_type) from exc
        return StepResult(reference=reference, attempt=ctx.attempt)


@sync_activity("reserve_inventory")
def reserve_inventory(request: StepRequest) -> StepResult:
    return run_step(
        "inventory",
        request,
        lambda ctx: services.reserve_inventory(ctx, request.sku, request.quantity),
    )


@sync_activity("charge_payment")
def charge_payment(request: StepRequest) -> StepResult:
    return run_step(
        "payment", request, lambda ctx: services.charge_payment(ctx, request.amount_cents)
    )


@sync_activity("commit_inventory")
def commit_inventory(request: StepRequest) -> StepResult:
    return run_step(
        "commit",
        request,
        lambda ctx: services.commit_inventory(ctx, _reservation_key(request)),
    )


@sync_activity("schedule_shipping")
def schedule_shipping(request: StepRequest) -> StepResult:
    return run_step(
        "shipping", request, lambda ctx: services.schedule_shipping(ctx, request.address)
    )


@sync_activity("send_email")
def send_email(request: StepRequest) -> StepResult:
    body = f"Your order #{request.order_id} is confirmed and on its way."
    return run_step(
        "email", request, lambda ctx: services.send_message(ctx, "email", request.email, body)
    )


@sync_activity("send_sms")
def send_sms(request: StepRequest) -> StepResult:
    body = f"Order #{request.order_id} shipped."
    return run_step(
        "sms", request, lambda ctx: services.send_message(ctx, "sms", request.phone, body)
    )


@sync_activity("release_inventory")
def release_inventory(request: StepRequest) -> StepResult:
    return run_compensation(
        request,
        ("inventory", "release"),
        lambda ctx: services.release_inventory(ctx, _reservation_key(request)),
    )


@sync_activity("refund_payment")
def refund_payment(request: StepRequest) -> StepResult:
    return run_compensation(
        request,
        ("payment", "refund"),
        lambda ctx: services.refund_payment(ctx, _charge_key(request)),
    )


@sync_activity("cancel_shipping")
def cancel_shipping(request: StepRequest) -> StepResult:
    return run_compensation(
        request,
        ("shipping", "cancel"),
        lambda ctx: services.cancel_shipping(ctx, _shipment_key(request)),
    )


@sync_activity("finish_order")
def finish_order(request: FinishRequest) -> None:
    """Write the outcome: status, references, warnings and the final state of each step."""
    with _fresh_connection():
        record_outcome(
            request.order_id,
            request.status,
            step_states=request.step_states,
            payment_id=request.payment_id,
            tracking_number=request.tracking_number,
            warnings=request.warnings,
            error=request.error,
        )


@sync_activity("record_status")
def report_status(request: StatusRequest) -> None:
    with _fresh_connection():
        record_status(request.order_id, request.status)


def _order_key(request: StepRequest) -> str:
    # Keys look like "<workflow id>:<operation>[:undo]"; workflow ids hold no colon.
    return request.idempotency_key.split(":", 1)[0]


def _reservation_key(request: StepRequest) -> str:
    return f"{_order_key(request)}:reserve"


def _charge_key(request: StepRequest) -> str:
    return f"{_order_key(request)}:charge"


def _shipment_key(request: StepRequest) -> str:
    return f"{_order_key(request)}:ship"


ALL_ACTIVITIES = [
    reserve_inventory,
    charge_payment,
    commit_inventory,
    schedule_shipping,
    send_email,
    send_sms,
    release_inventory,
    refund_payment,
    cancel_shipping,
    finish_order,
    report_status,
]
