"""Every attempt counted: the ledger agrees with Temporal's history, lost attempts included.

A worker process is really killed in the middle of an attempt; the attempt leaves no
answer, Temporal's heartbeat timeout notices, and the next attempt records the lost one.
"""

from __future__ import annotations

import asyncio
import re

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from orderdash.stack import LocalStack
from orders.contract import STEP_ACTIVITIES, STEP_CALLS
from orders.models import Order, OrderStep
from orders.placement import place_order
from orders.simulator.models import Outcome, Reservation, ServiceCall
from orders.steps import record_lost_attempts, record_outcome
from tests.conftest import set_switch, wait_for
from tests.test_crash import order_data, status_of


def temporal_attempts(address: str, workflow_id: str) -> dict[str, tuple[int, str]]:
    """Per activity type, the attempt Temporal's history says ran last, and its worker."""

    async def fetch() -> dict[str, tuple[int, str]]:
        client = await Client.connect(address)
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        scheduled: dict[int, str] = {}
        started: dict[str, tuple[int, str]] = {}
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attributes = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attributes.activity_type.name
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attributes = event.activity_task_started_event_attributes
                activity_type = scheduled[attributes.scheduled_event_id]
                started[activity_type] = (attributes.attempt, attributes.identity)
        return started

    return asyncio.run(fetch())


def ledger_attempts(order: Order, step: str) -> list[tuple[int, str]]:
    service, operation = STEP_CALLS[step]
    calls = ServiceCall.objects.filter(order=order, service=service, operation=operation)
    return list(calls.order_by("attempt").values_list("attempt", "outcome"))


def page_attempt(client, order: Order, step: str) -> int:
    page = client.get(f"/orders/{order.pk}/").content.decode()
    found = re.search(rf'data-step="{step}" data-state="[a-z_]+" data-attempt="(\d+)"', page)
    assert found, f"no {step} step on the order page"
    return int(found.group(1))


def test_an_attempt_killed_with_its_worker_is_counted_as_temporal_counts_it(
    process_env, catalogue, admin_client, tmp_path
):
    # Slow: the reservation is made, then the attempt takes 4 s to answer (heartbeating);
    # the worker is killed in between, so the attempt never answers at all.
    set_switch("inventory", "slow", latency_ms=4000)
    with LocalStack(env=process_env, log_dir=tmp_path) as stack:
        stack.start_worker()
        order = place_order(order_data())
        wait_for(
            lambda: Reservation.objects.filter(order=order).exists(),
            60,
            "the first inventory attempt to reserve",
        )
        killed = stack.kill_supervised("worker")
        set_switch("inventory", "healthy")
        wait_for(lambda: status_of(order) == "completed", 60, "the order to complete")
        history = temporal_attempts(process_env["TEMPORAL_ADDRESS"], order.workflow_id)

    assert ledger_attempts(order, "inventory") == [(1, Outcome.LOST), (2, Outcome.REPLAYED)]
    lost = ServiceCall.objects.get(order=order, operation="reserve", attempt=1)
    assert lost.worker.startswith(f"{killed}@")
    assert lost.error == (
        f"No answer: lost with its worker {lost.worker}; noticed by the heartbeat timeout (2 s)"
    )
    assert Reservation.objects.filter(order=order).count() == 1
    for step, activity_type in STEP_ACTIVITIES.items():
        last_attempt, identity = history[activity_type]
        ledger = ledger_attempts(order, step)
        assert [attempt for attempt, _ in ledger] == list(range(1, last_attempt + 1)), step
        assert OrderStep.objects.get(order=order, name=step).attempts == last_attempt, step
        assert page_attempt(admin_client, order, step) == last_attempt, step
        service, operation = STEP_CALLS[step]
        answered = ServiceCall.objects.get(
            order=order, service=service, operation=operation, attempt=last_attempt
        )
        assert answered.worker == identity, step  # the worker Temporal names, not the killed one


def test_an_attempt_that_answers_late_replaces_its_lost_row(running_order):
    record_lost_attempts(
        running_order.pk, "payment", "charge", before=2, idempotency_key="k", worker="1@h"
    )
    ServiceCall.objects.filter(order=running_order, attempt=1).update(
        outcome=Outcome.OK, error=""
    )  # what the late answer's own write does (services._record)
    assert record_lost_attempts(
        running_order.pk, "payment", "charge", before=3, idempotency_key="k"
    ) == [2]
    assert ledger_attempts(running_order, "payment") == [(1, Outcome.OK), (2, Outcome.LOST)]


def test_a_last_attempt_that_never_answered_is_recorded_lost_when_the_order_ends(running_order):
    OrderStep.objects.filter(order=running_order, name="payment").update(attempts=2)
    ServiceCall.objects.create(
        order=running_order,
        service="payment",
        operation="charge",
        attempt=1,
        idempotency_key="k",
        outcome=Outcome.ERROR,
    )
    record_outcome(running_order.pk, "failed", step_states={"payment": "failed"})
    assert ledger_attempts(running_order, "payment") == [(1, Outcome.ERROR), (2, Outcome.LOST)]
    lost = ServiceCall.objects.get(order=running_order, service="payment", attempt=2)
    assert lost.error == "No answer: lost with its worker; the order ended without its answer"
    assert lost.idempotency_key == f"{running_order.workflow_id}:charge"
