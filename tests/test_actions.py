"""Operators' actions against a real Temporal dev server and worker: each does what it
says, an action that does not apply is refused and changes nothing, and every one is
recorded with who and why."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from orders.actions import act
from orders.contract import RETRY_TABLE
from orders.models import OperatorAction, Order
from orders.placement import place_order
from orders.progress import build_snapshot
from orders.simulator.models import Charge, Product, Reservation, ServiceCall
from tests.conftest import set_switch


def place(sku: str = "KB-01", quantity: int = 1) -> Order:
    return place_order(
        {
            "product": Product.objects.get(sku=sku),
            "quantity": quantity,
            "customer_name": "Frances Allen",
            "email": "frances@example.com",
            "phone": "+1 555 0123",
            "address": "3 Compiler Court",
        }
    )


def wait_until(order: Order, check, timeout: float = 30, what: str = "") -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if check(order):
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {order.pk} is {order.status} after {timeout}s: {what}")


def step_state(order: Order, name: str) -> tuple[str, int]:
    snapshot = async_to_sync(build_snapshot)(order.pk)
    step = next(s for s in snapshot.steps if s.name == name)
    return step.state, step.attempt


def wait_for_step(order: Order, name: str, state: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen, attempt = step_state(order, name)
        if seen == state:
            return attempt
        time.sleep(0.1)
    raise AssertionError(f"{name} of order {order.pk} never {state} (last: {seen})")


def test_cancelling_an_order_in_flight_undoes_it_and_records_who(live_temporal, catalogue):
    set_switch("shipping", "down")
    order = place()
    wait_until(order, lambda o: o.payment_id or Charge.objects.filter(order=o).exists())
    result = act(order, "cancel", actor="olga", reason="customer called")
    assert result.accepted, result.message
    order = wait_until(order, lambda o: o.status == "cancelled", what="cancelled")
    assert all(c.refunded_at for c in Charge.objects.filter(order=order))
    assert Reservation.objects.get(order=order).state == "released"
    entry = OperatorAction.objects.get(order=order)
    assert (entry.actor, entry.action, entry.reason, entry.accepted) == (
        "olga",
        "cancel",
        "customer called",
        True,
    )


def test_a_second_cancel_at_the_same_moment_is_told_and_has_no_effect(live_temporal, catalogue):
    set_switch("inventory", "down")
    order = place()
    first = act(order, "cancel", actor="olga")
    second = act(order, "cancel", actor="otto")
    assert first.accepted and not second.accepted
    assert second.message == f"Order #{order.pk} is already being cancelled by olga."
    wait_until(order, lambda o: o.status == "cancelled")


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        ("completed", "cancel", "is already completed."),
        ("completed", "approve", "is already completed."),
        ("running", "approve", "is not waiting for approval (it is running)."),
        ("running", "reject", "is not waiting for approval (it is running)."),
        ("running", "retry-now", "has no step retrying now: nothing to retry now."),
        ("running", "resume", "has no step paused now: nothing to resume."),
        ("running", "explode", "There is no action 'explode'"),
    ],
)
def test_an_action_that_does_not_apply_is_refused_and_changes_nothing(
    running_order, status, action, message
):
    Order.objects.filter(pk=running_order.pk).update(status=status)
    running_order.refresh_from_db()
    result = act(running_order, action, actor="olga")
    assert not result.accepted and message in result.message
    running_order.refresh_from_db()
    assert running_order.status == status and running_order.cancel_requested_by == ""
    assert not OperatorAction.objects.get(order=running_order).accepted


def test_a_big_order_waits_for_approval_and_goes_on_when_approved(
    live_temporal, catalogue, settings
):
    settings.APPROVAL_THRESHOLD_CENTS = 10_000  # two keyboards
    small = place(quantity=1)
    big = place(quantity=2)
    wait_until(small, lambda o: o.status == "completed")
    big = wait_until(big, lambda o: o.status == "awaiting_approval")
    assert not Charge.objects.filter(order=big).exists()  # nothing charged while it waits
    assert act(big, "approve", actor="olga", reason="known customer").accepted
    wait_until(big, lambda o: o.status == "completed")
    again = act(big, "approve", actor="otto")
    assert not again.accepted and "is already completed" in again.message


def test_a_rejected_order_is_undone(live_temporal, catalogue, settings):
    settings.APPROVAL_THRESHOLD_CENTS = 1
    order = wait_until(place(), lambda o: o.status == "awaiting_approval")
    assert act(order, "reject", actor="olga", reason="looks like fraud").accepted
    order = wait_until(order, lambda o: o.status == "rejected")
    assert order.failure_reason == "Rejected by olga: looks like fraud"
    assert Reservation.objects.get(order=order).state == "released"
    assert not Charge.objects.filter(order=order).exists()


def test_an_order_nobody_decides_on_is_rejected_at_the_deadline(live_temporal, catalogue, settings):
    settings.APPROVAL_THRESHOLD_CENTS = 1
    settings.APPROVAL_TIMEOUT_SECONDS = 2
    order = wait_until(place(), lambda o: o.status == "rejected", timeout=30)
    assert order.failure_reason == "Rejected by the deadline: no decision within 2 s"
    assert Reservation.objects.get(order=order).state == "released"


def test_a_paused_step_makes_no_attempt_until_resumed(live_temporal, catalogue):
    set_switch("payment", "down")
    order = place()
    wait_for_step(order, "payment", "retrying")
    assert act(order, "pause", actor="olga", reason="payment provider incident").accepted
    wait_for_step(order, "payment", "paused")
    attempts = ServiceCall.objects.filter(order=order, service="payment").count()
    time.sleep(3)  # backoffs of 1 s and 2 s would have made two more attempts by now
    assert ServiceCall.objects.filter(order=order, service="payment").count() == attempts
    set_switch("payment", "healthy")
    assert act(order, "resume", actor="olga").accepted
    wait_until(order, lambda o: o.status == "completed")
    history = list(OperatorAction.objects.filter(order=order).values_list("action", flat=True))
    assert history == ["resume", "pause"]


def test_retry_now_starts_the_next_attempt_instead_of_waiting_out_the_backoff(
    live_temporal, catalogue, monkeypatch
):
    # A long backoff: without retry-now the second attempt would come after 60 s.
    minute = timedelta(seconds=60)
    slow = replace(RETRY_TABLE["payment"], initial_interval=minute, maximum_interval=minute)
    monkeypatch.setitem(RETRY_TABLE, "payment", slow)
    set_switch("payment", "flaky", failures=1)
    order = place()
    wait_for_step(order, "payment", "retrying")
    clicked = time.monotonic()
    assert act(order, "retry-now", actor="olga").accepted
    wait_until(order, lambda o: o.status == "completed", timeout=20)
    assert time.monotonic() - clicked < 10
    assert ServiceCall.objects.filter(order=order, service="payment").count() == 2


def test_the_order_command_acts_and_explains_refusals(running_order):
    Order.objects.filter(pk=running_order.pk).update(status="completed")
    with pytest.raises(CommandError, match="is already completed"):
        call_command("order", "cancel", str(running_order.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="Unknown action 'nuke'"):
        call_command("order", "nuke", str(running_order.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="ORDER_ID must be an order number"):
        call_command("order", "cancel", "٤٢", stdout=io.StringIO())
    with pytest.raises(CommandError, match="There is no order #99999"):
        call_command("order", "cancel", "99999", stdout=io.StringIO())
    entry = OperatorAction.objects.get(order=running_order)
    assert entry.actor.endswith("(terminal)") and not entry.accepted


def test_audit_counts_what_operators_did(running_order):
    Order.objects.filter(pk=running_order.pk).update(status="completed")
    running_order.refresh_from_db()
    act(running_order, "cancel", actor="olga")  # refused: already completed
    call_command("services", "set", "sms", "down", stdout=io.StringIO())
    out = io.StringIO()
    with pytest.raises(SystemExit):  # the completed order has no charge: it does not add up
        call_command("audit", stdout=out, stderr=io.StringIO())
    assert "Operators: 0 action(s) on these orders, 1 refused; 1 switch change(s)." in (
        out.getvalue()
    )


def test_a_cancel_while_the_saga_undoes_a_failure_does_not_stop_the_undoing(
    live_temporal, catalogue, settings
):
    settings.APPROVAL_THRESHOLD_CENTS = 1  # holds the order after its stock is reserved
    order = wait_until(place(), lambda o: o.status == "awaiting_approval")
    set_switch("payment", "reject")  # the card is declined: the saga releases the stock…
    set_switch("inventory", "down")  # …which keeps failing while inventory is down
    assert act(order, "approve", actor="olga").accepted
    wait_until(
        order,
        lambda o: ServiceCall.objects.filter(
            order=o, operation="release", outcome="error"
        ).exists(),
        what="a release attempt failed",
    )
    assert act(order, "cancel", actor="otto", reason="mid-saga").accepted
    set_switch("inventory", "healthy")
    order = wait_until(order, lambda o: o.is_final, what="the saga to finish")
    assert order.status == "failed"  # how it ended: the declined card, fully undone
    assert Reservation.objects.get(order=order).state == "released"
