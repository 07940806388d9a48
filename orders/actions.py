"""What an operator can do to an order: one plain function per action.

The order page's buttons, the `order` command and anything else call `act`, which runs
the action and records who did what, when, why and what they were told, refused or not.
An action that does not apply says why and changes nothing.
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from orders.contract import Decision, OrderStatus, Step, StepState
from orders.models import Action, Engine, OperatorAction, Order
from orders.progress import build_snapshot
from orders.steps import touch_order
from orders.temporal import (
    TemporalUnavailable,
    cancel_order_workflow,
    decide_order,
    order_workflow_id,
    pause_step,
    resume_step,
)


@dataclass(frozen=True)
class ActionResult:
    accepted: bool
    message: str


class Refused(Exception):
    """The action does not apply; the message says why. Nothing was changed."""


def act(
    order: Order,
    action: str,
    *,
    actor: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
    reason: str = "",
    step: str = "",
) -> ActionResult:
    """Run one action on one order and record it, whatever came of it."""
    run = ACTIONS.get(action)
    try:
        if run is None:
            raise Refused(f"There is no action {action!r}; try one of: {', '.join(ACTIONS)}.")
        message = run(order, actor, reason.strip(), step)
        result = ActionResult(True, message)
    except Refused as refused:
        result = ActionResult(False, str(refused))
    except (TemporalUnavailable, RPCError) as exc:
        result = ActionResult(False, f"Temporal did not take it ({exc}); nothing was changed.")
    OperatorAction.objects.create(
        action=action if action in Action.values else "",
        actor=actor,
        user=user if user is not None and user.is_authenticated else None,
        order=order,
        step=step if step in Step.values else "",
        reason=reason.strip(),
        accepted=result.accepted,
        message=result.message,
    )
    touch_order(order.pk)  # the page's history shows it at once
    return result


def record_switch(
    service: str, summary: str, *, actor: str, user: object = None, reason: str = ""
) -> None:
    """A failure switch flipped: who, to what, and why (a scenario says which)."""
    OperatorAction.objects.create(
        action=Action.SWITCH,
        actor=actor,
        user=user if getattr(user, "is_authenticated", False) else None,
        service=service,
        reason=reason,
        accepted=True,
        message=f"{service} set to {summary}",
    )


def _on_temporal(order: Order) -> None:
    if order.engine == Engine.PLAIN:
        raise Refused(
            f"Order #{order.pk} is run by the plain script, which has no way to be told"
            " anything once it has started."
        )
    if order.is_final:
        raise Refused(f"Order #{order.pk} is already {order.get_status_display()}.")


def cancel(order: Order, actor: str, reason: str, step: str) -> str:
    _on_temporal(order)
    if order.status == OrderStatus.QUEUED:
        # Temporal never had it: nothing was done, so nothing needs undoing.
        now = timezone.now()
        cancelled = Order.objects.filter(pk=order.pk, status=OrderStatus.QUEUED).update(
            status=OrderStatus.CANCELLED,
            failure_reason=f"Cancelled by {actor} before it started" + _why(reason),
            cancel_requested_by=actor,
            finished_at=now,
            updated_at=now,  # the change the live board watches for (an update() skips auto_now)
        )
        if cancelled:
            # A start whose answer was lost may have gone through after all: tell it too.
            with contextlib.suppress(TemporalUnavailable, RPCError):
                async_to_sync(cancel_order_workflow)(
                    order_workflow_id(order.pk), reason=f"cancelled by {actor} while queued"
                )
            return f"Order #{order.pk} cancelled before it started; nothing had been done."
        order.refresh_from_db()  # the starter started it meanwhile: cancel the workflow
    claimed = (
        Order.objects.filter(pk=order.pk, cancel_requested_by="")
        .exclude(status__in=OrderStatus.final())
        .update(cancel_requested_by=actor)
    )
    if not claimed:
        order.refresh_from_db()
        if order.is_final:
            raise Refused(f"Order #{order.pk} is already {order.get_status_display()}.")
        raise Refused(
            f"Order #{order.pk} is already being cancelled by {order.cancel_requested_by}."
        )
    try:
        async_to_sync(cancel_order_workflow)(
            order.workflow_id, reason=f"cancelled by {actor} from orderdash" + _why(reason)
        )
    except BaseException:
        Order.objects.filter(pk=order.pk).update(cancel_requested_by="")
        raise
    return (
        f"Cancelling order #{order.pk}: the workflow undoes what was done (stock released,"
        " charge refunded) and ends cancelled."
    )


def _decide(approve: bool) -> Callable[[Order, str, str, str], str]:
    def decide(order: Order, actor: str, reason: str, step: str) -> str:
        _on_temporal(order)
        if order.status != OrderStatus.AWAITING_APPROVAL:
            raise Refused(
                f"Order #{order.pk} is not waiting for approval (it is"
                f" {order.get_status_display()})."
            )
        try:
            decision = Decision(approve=approve, by=actor, reason=reason)
            async_to_sync(decide_order)(order.workflow_id, decision)
        except WorkflowUpdateFailedError as exc:
            raise Refused(str(exc.cause.message if exc.cause else exc)) from exc
        except RPCTimeoutOrCancelledError:
            # No worker took it in time: Temporal keeps it, and it may still apply.
            verdict = "approval" if approve else "rejection"
            return (
                f"Your {verdict} of order #{order.pk} is with Temporal but not yet confirmed:"
                " no worker answered in time. The page shows it once a worker takes it."
            )
        if approve:
            return f"Order #{order.pk} approved: it goes on to payment."
        return f"Order #{order.pk} rejected: its stock is released and it ends rejected."

    return decide


def _step_in(order: Order, step: str, states: tuple[str, ...], doing: str) -> str:
    """The step to act on: the one named, or the one in one of `states` now."""
    _on_temporal(order)
    if step and step not in Step.values:
        raise Refused(f"There is no step {step!r}; steps are: {', '.join(Step.values)}.")
    snapshot = async_to_sync(build_snapshot)(order.pk)
    steps = [s for s in snapshot.steps if s.state in states] if snapshot else []
    chosen = next((s for s in steps if s.name == step), None) if step else next(iter(steps), None)
    if chosen is None:
        named = f"its {step} step" if step else "no step"
        state = " or ".join(states)
        raise Refused(f"Order #{order.pk} has {named} {state} now: nothing to {doing}.")
    return chosen.name


def pause(order: Order, actor: str, reason: str, step: str) -> str:
    step = _step_in(order, step, (StepState.RETRYING, StepState.RUNNING), "pause")
    async_to_sync(pause_step)(
        order.workflow_id, step, identity=actor, reason=reason or "paused from orderdash"
    )
    return f"{Step(step).label} paused: no new attempt starts until someone resumes it."


def resume(order: Order, actor: str, reason: str, step: str) -> str:
    step = _step_in(order, step, (StepState.PAUSED,), "resume")
    async_to_sync(resume_step)(order.workflow_id, step, identity=actor)
    return f"{Step(step).label} resumed where it was: its next attempt starts now."


def retry_now(order: Order, actor: str, reason: str, step: str) -> str:
    step = _step_in(order, step, (StepState.RETRYING,), "retry now")
    # A pause and an unpause start the next attempt at once and keep the attempt count
    # (a reset would start counting again from 1).
    async_to_sync(pause_step)(order.workflow_id, step, identity=actor, reason=reason or "retry now")
    try:
        async_to_sync(resume_step)(order.workflow_id, step, identity=actor)
    except (TemporalUnavailable, RPCError) as exc:
        raise Refused(
            f"{Step(step).label} was paused to retry it now, but could not be resumed ({exc}):"
            " it is paused now; resume it when Temporal answers."
        ) from exc
    return f"{Step(step).label}: the next attempt starts now instead of after its backoff."


def terminal_user() -> str:
    """Who ran a management command, as the record names them."""
    try:
        return f"{getpass.getuser()} (terminal)"
    except (KeyError, OSError):
        return "terminal"


def _why(reason: str) -> str:
    return f": {reason}" if reason else ""


ACTIONS: dict[str, Callable[[Order, str, str, str], str]] = {
    Action.CANCEL: cancel,
    Action.APPROVE: _decide(approve=True),
    Action.REJECT: _decide(approve=False),
    Action.PAUSE: pause,
    Action.RESUME: resume,
    Action.RETRY_NOW: retry_now,
}
