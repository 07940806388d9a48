"""OrderWorkflow: the order flow from the seed, written as if nothing ever failed.

Retries, backoff, timeouts and persistence are Temporal's job (see RETRY_TABLE); this
code only says what happens in which order and what to undo when a step fails for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orders.contract import (
        DECIDE_UPDATE,
        PROGRESS_QUERY,
        RETRY_TABLE,
        STEP_ACTIVITIES,
        STEPS,
        WORKFLOW_NAME,
        Decision,
        FinishRequest,
        OrderInput,
        OrderOutcome,
        OrderProgress,
        OrderStatus,
        StatusRequest,
        Step,
        StepProgress,
        StepRequest,
        StepResult,
        StepState,
        step_key,
    )

# The steps that change the world, with the activity that undoes each of them.
COMPENSATIONS = {
    "inventory": "release_inventory",
    "payment": "refund_payment",
    "shipping": "cancel_shipping",
}


class OrderRejected(Exception):
    """An operator refused the order, or nobody decided before the deadline."""


def root_cause(error: BaseException) -> BaseException:
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return error


def failure_message(error: BaseException) -> str:
    """The innermost message: 'Card declined', not 'Activity task failed'."""
    error = root_cause(error)
    if isinstance(error, ApplicationError):
        return error.message
    return str(error) or type(error).__name__


@workflow.defn(name=WORKFLOW_NAME)
class OrderWorkflow:
    def __init__(self) -> None:
        self._order_id = 0
        self._status = OrderStatus.RUNNING
        self._steps = {name: StepProgress(name=name) for name in STEPS}
        self._warnings: list[str] = []
        self._awaiting_approval = False
        self._decision: Decision | None = None

    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: Decision) -> str:
        if self._decision is not None:
            # Two operators at once: both passed the validator in one workflow task.
            verdict = "approved" if self._decision.approve else "rejected"
            raise ApplicationError(
                f"Order #{self._order_id} was already {verdict} by {self._decision.by}."
            )
        self._decision = decision
        return "approved" if decision.approve else "rejected"

    @decide.validator
    def only_while_waiting(self, decision: Decision) -> None:
        # Refused here, the update never reaches history: nothing changes.
        if self._decision is not None:
            verdict = "approved" if self._decision.approve else "rejected"
            raise ValueError(
                f"Order #{self._order_id} was already {verdict} by {self._decision.by}."
            )
        if not self._awaiting_approval:
            raise ValueError(
                f"Order #{self._order_id} is not waiting for approval (it is {self._status})."
            )

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> OrderProgress:
        return OrderProgress(
            order_id=self._order_id,
            status=self._status,
            steps=[replace(step) for step in self._steps.values()],
            warnings=list(self._warnings),
        )

    @workflow.run
    async def run(self, order: OrderInput) -> OrderOutcome:
        self._order_id = order.order_id
        request = StepRequest(
            order_id=order.order_id,
            idempotency_key="",
            sku=order.sku,
            quantity=order.quantity,
            amount_cents=order.amount_cents,
            email=order.email,
            phone=order.phone,
            address=order.address,
        )
        outcome = OrderOutcome(order_id=order.order_id, status=OrderStatus.RUNNING)
        try:
            await self._step("inventory", request)
            if order.needs_approval:
                await self._await_approval(order)
            outcome.payment_id = (await self._step("payment", request)).reference
            await self._step("commit", request)
            outcome.tracking_number = (await self._step("shipping", request)).reference
            await self._notify(request)
        except ActivityError as error:
            cancelled = is_cancelled_exception(error)
            outcome.error = "Cancelled" if cancelled else failure_message(error)
            status = OrderStatus.CANCELLED if cancelled else OrderStatus.FAILED
            return await _beyond_cancellation(self._undo_and_finish(request, outcome, status))
        except asyncio.CancelledError:
            outcome.error = "Cancelled"
            return await _beyond_cancellation(
                self._undo_and_finish(request, outcome, OrderStatus.CANCELLED)
            )
        except OrderRejected as rejected:
            outcome.error = str(rejected)
            return await _beyond_cancellation(
                self._undo_and_finish(request, outcome, OrderStatus.REJECTED)
            )
        status = OrderStatus.COMPLETED_WITH_WARNINGS if self._warnings else OrderStatus.COMPLETED
        return await _beyond_cancellation(self._finish(outcome, status))

    async def _undo_and_finish(
        self, request: StepRequest, outcome: OrderOutcome, status: str
    ) -> OrderOutcome:
        await self._undo(request)
        return await self._finish(outcome, status)

    async def _step(self, name: str, request: StepRequest) -> StepResult:
        step = self._steps[name]
        step.state = StepState.RUNNING
        # The Temporal Web UI shows this beside the workflow: the step it is on now.
        workflow.set_current_details(f"{Step(name).label}")
        policy = RETRY_TABLE[name]
        attempt = workflow.start_activity(
            STEP_ACTIVITIES[name],
            replace(request, idempotency_key=self._key(name)),
            result_type=StepResult,
            start_to_close_timeout=policy.start_to_close,
            heartbeat_timeout=policy.heartbeat,
            retry_policy=policy.retry_policy(),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            result = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The order is being cancelled. Let the attempt in flight end first: undoing
            # before it ends would release stock it has not reserved yet (or refund a
            # charge not made yet), and what it then did would stay.
            attempt.cancel()
            try:
                result = await attempt
            except BaseException:
                step.state = StepState.FAILED  # tried: undoing it is safe either way
            else:
                self._took_effect(step, result)
            raise
        except ActivityError as error:
            step.state = StepState.FAILED
            step.error = failure_message(error)
            cause = root_cause(error)
            if isinstance(cause, ApplicationError) and cause.details:
                step.attempts = int(cause.details[0])  # the activity sends its attempt number
            raise
        self._took_effect(step, result)
        return result

    def _took_effect(self, step: StepProgress, result: StepResult) -> None:
        step.state = StepState.COMPLETED
        step.attempts = result.attempt
        step.result = result.reference
        step.error = ""

    async def _await_approval(self, order: OrderInput) -> None:
        """Hold the order, its stock reserved, until an operator decides or time runs out."""
        self._status, self._awaiting_approval = OrderStatus.AWAITING_APPROVAL, True
        await self._report_status(OrderStatus.AWAITING_APPROVAL)
        deadline = timedelta(seconds=order.approval_timeout_s)
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=deadline)
        except TimeoutError:
            self._decision = Decision(
                approve=False,
                by="the deadline",
                reason=f"no decision within {_duration(deadline)}",
            )
        finally:
            self._awaiting_approval = False
        decision = self._decision
        if not decision.approve:
            why = f": {decision.reason}" if decision.reason else ""
            raise OrderRejected(f"Rejected by {decision.by}{why}")
        self._status = OrderStatus.RUNNING
        await self._report_status(OrderStatus.RUNNING)

    async def _report_status(self, status: str) -> None:
        await _record("record_status", StatusRequest(order_id=self._order_id, status=status))

    async def _notify(self, request: StepRequest) -> None:
        # Email and SMS go out together. Email is part of the promise; SMS is a courtesy,
        # so when it keeps failing the order still completes, with a warning.
        email, sms = await asyncio.gather(
            self._step("email", request),
            self._step("sms", request),
            return_exceptions=True,
        )
        if isinstance(sms, ActivityError):
            self._warnings.append(f"SMS not sent: {failure_message(sms)}")
        elif isinstance(sms, BaseException):
            raise sms
        if isinstance(email, BaseException):
            raise email

    async def _undo(self, request: StepRequest) -> None:
        """The saga: undo, newest first, every step that changed the world."""
        for name in ("shipping", "payment", "inventory"):
            # Undo every step that was tried, finished or not: a timed-out charge may have
            # gone through. Undoing is idempotent and a no-op when nothing happened.
            if self._steps[name].state not in (StepState.COMPLETED, StepState.FAILED):
                continue
            policy = RETRY_TABLE["compensation"]
            await workflow.execute_activity(
                COMPENSATIONS[name],
                replace(request, idempotency_key=f"{self._key(name)}:undo"),
                result_type=StepResult,
                start_to_close_timeout=policy.start_to_close,
                heartbeat_timeout=policy.heartbeat,
                retry_policy=policy.retry_policy(),
            )
            if self._steps[name].state == StepState.COMPLETED:
                self._steps[name].state = StepState.COMPENSATED
            if name == "inventory" and self._steps["commit"].state == StepState.COMPLETED:
                self._steps["commit"].state = StepState.COMPENSATED
        for step in self._steps.values():
            if step.state in (StepState.PENDING, StepState.RUNNING):
                step.state = StepState.SKIPPED

    async def _finish(self, outcome: OrderOutcome, status: str) -> OrderOutcome:
        self._status = status
        outcome.status = status
        outcome.warnings = list(self._warnings)
        await _record(
            "finish_order",
            FinishRequest(
                order_id=outcome.order_id,
                status=status,
                payment_id=outcome.payment_id,
                tracking_number=outcome.tracking_number,
                warnings=outcome.warnings,
                error=outcome.error,
                step_states={name: step.state for name, step in self._steps.items()},
            ),
        )
        return outcome

    def _key(self, step: str) -> str:
        return step_key(workflow.info().workflow_id, step)


# Histories written before the order's own records became local activities (below) hold
# ordinary activities there; they replay (a query on an old order does) as they ran.
RECORDS_LOCALLY = "records-locally"


async def _record(activity: str, request: StatusRequest | FinishRequest) -> None:
    """Write the order's status or outcome to the database: the worker's own write, not a
    call to a service.

    A local activity: the worker runs it at once and Temporal keeps only a marker, where
    an ordinary activity costs the server a task, a poll and a start (an eighth of its
    work per order). Retried like any activity; if the worker is lost meanwhile, the
    workflow task goes to another worker, which writes it again (the write is idempotent).
    """
    policy = RETRY_TABLE["compensation"]
    options = {
        "start_to_close_timeout": policy.start_to_close,
        "retry_policy": policy.retry_policy(),
    }
    if workflow.patched(RECORDS_LOCALLY):
        await workflow.execute_local_activity(activity, request, **options)
    else:
        await workflow.execute_activity(activity, request, **options)


async def _beyond_cancellation(work: Coroutine[Any, Any, OrderOutcome]) -> OrderOutcome:
    """Run the undoing and the finish to the end, whatever cancel request arrives meanwhile.

    A cancel that lands while the saga undoes a failure, or while the outcome is being
    written, would otherwise cancel those activities too: the stock and the charge would
    stay, and the order would never get its final status.
    """
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
