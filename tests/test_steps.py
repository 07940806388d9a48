"""The one writer of step records: what an attempt, a compensation and a finish write."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.contract import OrderStatus, StepState
from orders.models import Order, OrderStep
from orders.steps import record_outcome, record_step


def inventory(order: Order) -> OrderStep:
    return OrderStep.objects.get(order=order, name="inventory")


@pytest.mark.django_db(transaction=True)
def test_an_attempt_turns_the_order_running_in_one_transaction(running_order):
    Order.objects.filter(pk=running_order.pk).update(status=OrderStatus.PENDING)
    with CaptureQueriesContext(connection) as queries:
        assert record_step(running_order.pk, "inventory", StepState.RUNNING, attempt=1)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements == ["BEGIN", "UPDATE", "UPDATE", "COMMIT"]
    running_order.refresh_from_db()
    assert running_order.status == OrderStatus.RUNNING
    assert (inventory(running_order).state, inventory(running_order).attempts) == ("running", 1)


@pytest.mark.django_db(transaction=True)
def test_an_older_attempt_never_overwrites_a_newer_one(running_order):
    record_step(running_order.pk, "inventory", StepState.RUNNING, attempt=3)
    late = record_step(
        running_order.pk, "inventory", StepState.RETRYING, attempt=2, error="timed out"
    )
    assert not late
    assert (inventory(running_order).state, inventory(running_order).attempts) == ("running", 3)


@pytest.mark.django_db(transaction=True)
def test_a_late_attempt_does_not_reopen_a_finished_order(running_order):
    Order.objects.filter(pk=running_order.pk).update(status=OrderStatus.CANCELLED)
    record_step(running_order.pk, "payment", StepState.RUNNING, attempt=1)
    running_order.refresh_from_db()
    assert running_order.status == OrderStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_finishing_an_order_writes_its_steps_before_its_final_status(running_order):
    with CaptureQueriesContext(connection) as queries:
        record_outcome(
            running_order.pk, OrderStatus.FAILED, step_states={"inventory": "compensated"}
        )
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    # The hub stops watching an order once its status is final.
    assert updates[-1].startswith('UPDATE "orders_order"'), updates
    assert inventory(running_order).state == "compensated"
