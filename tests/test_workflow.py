"""OrderWorkflow against the real Temporal test server, with time skipping."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle

from orders.contract import WORKFLOW_NAME, OrderOutcome
from orders.models import Order
from orders.placement import create_order, order_input, place_order
from orders.simulator.models import Charge, Message, Product, Reservation, ServiceCall, Shipment
from orders.temporal import order_workflow_id
from tests.conftest import set_switch


@pytest.fixture(autouse=True)
def orm_from_async_tests(monkeypatch):
    # These tests read the database between awaits while the worker's threads write it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def new_order(sku: str = "KB-01", quantity: int = 2) -> Order:
    product = Product.objects.get(sku=sku)
    return create_order(
        {
            "product": product,
            "quantity": quantity,
            "customer_name": "Grace Hopper",
            "email": "grace@example.com",
            "phone": "+1 555 0100",
            "address": "1 Compiler Way",
        }
    )


async def start(env, task_queue: str, order: Order) -> WorkflowHandle:
    handle = await env.client.start_workflow(
        WORKFLOW_NAME,
        order_input(order),
        id=order_workflow_id(order.pk),
        task_queue=task_queue,
        result_type=OrderOutcome,
    )
    Order.objects.filter(pk=order.pk).update(workflow_id=handle.id)
    return handle


async def run_order(env, task_queue: str, order: Order) -> OrderOutcome:
    return await (await start(env, task_queue, order)).result()


def steps_of(order: Order) -> dict[str, tuple[str, int]]:
    return {s.name: (s.state, s.attempts) for s in order.steps.all()}


def calls_of(order: Order, operation: str) -> list[ServiceCall]:
    return list(order.calls.filter(operation=operation).order_by("attempt"))


async def wait_until(condition, timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_happy_path_completes_and_persists_every_step(
    time_skipping_env, skipping_worker, catalogue
):
    order = new_order("KB-01", 2)
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    order.refresh_from_db()
    assert outcome.status == order.status == "completed"
    assert order.payment_id.startswith("PAY-") and order.tracking_number.startswith("TRK-")
    assert order.finished_at is not None
    assert all(state == ("completed", 1) for state in steps_of(order).values())
    product = Product.objects.get(sku="KB-01")
    assert (product.stock, product.reserved) == (48, 0)
    assert Charge.objects.get(order=order).amount_cents == 2 * 8900
    assert Reservation.objects.get(order=order).state == Reservation.State.COMMITTED
    assert Shipment.objects.filter(order=order).count() == 1
    assert set(Message.objects.filter(order=order).values_list("channel", flat=True)) == {
        "email",
        "sms",
    }
    assert [(c.operation, c.outcome) for c in order.calls.order_by("operation")] == [
        ("charge", "ok"),
        ("commit", "ok"),
        ("reserve", "ok"),
        ("send", "ok"),
        ("send", "ok"),
        ("ship", "ok"),
    ]


async def test_flaky_inventory_completes_on_third_attempt_with_backoff(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("inventory", "flaky", failures=2)
    order = new_order()
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    assert outcome.status == "completed"
    attempts = calls_of(order, "reserve")
    assert [(c.attempt, c.outcome) for c in attempts] == [(1, "error"), (2, "error"), (3, "ok")]
    assert "Service Unavailable" in attempts[0].error
    # Time between one attempt's end and the next one's start, on Temporal's clock: the
    # backoff, plus a little bookkeeping around the call that duration_ms does not cover.
    waits = [
        (later.started_at - earlier.started_at).total_seconds() - earlier.duration_ms / 1000
        for earlier, later in itertools.pairwise(attempts)
    ]
    assert 1 <= waits[0] < 1.75, waits
    assert 2 <= waits[1] < 2.75, waits
    assert steps_of(order)["inventory"] == ("completed", 3)
    assert Product.objects.get(sku="KB-01").reserved == 0


async def test_declined_payment_fails_releases_reservation_and_charges_nothing(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("payment", "reject")
    order = new_order("MN-27", 3)
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    order.refresh_from_db()
    assert outcome.status == order.status == "failed"
    assert "Card declined" in order.failure_reason
    assert not Charge.objects.filter(order=order).exists()
    assert Reservation.objects.get(order=order).state == Reservation.State.RELEASED
    product = Product.objects.get(sku="MN-27")
    assert (product.stock, product.reserved) == (20, 0)
    assert [(c.attempt, c.outcome) for c in calls_of(order, "charge")] == [(1, "rejected")]
    steps = steps_of(order)
    assert steps["inventory"][0] == "compensated"
    assert steps["payment"][0] == "failed"
    assert {steps[name][0] for name in ("commit", "shipping", "email", "sms")} == {"skipped"}


async def test_shipping_down_for_good_refunds_and_restocks(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("shipping", "down")
    order = new_order("HS-03", 1)
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    order.refresh_from_db()
    assert outcome.status == order.status == "failed"
    assert "Service Unavailable" in order.failure_reason
    charge = Charge.objects.get(order=order)
    assert charge.refunded_at is not None
    assert Reservation.objects.get(order=order).state == Reservation.State.RELEASED
    product = Product.objects.get(sku="HS-03")
    assert (product.stock, product.reserved) == (30, 0)
    assert len(calls_of(order, "ship")) == 5  # the retry table's maximum for shipping
    steps = steps_of(order)
    assert steps["shipping"] == ("failed", 5)
    assert steps["payment"][0] == steps["inventory"][0] == steps["commit"][0] == "compensated"


async def test_sms_down_completes_with_warnings_and_email_still_sent(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("sms", "down")
    order = new_order()
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    order.refresh_from_db()
    assert outcome.status == order.status == "completed_with_warnings"
    assert order.warnings and order.warnings[0].startswith("SMS not sent")
    assert Message.objects.filter(order=order, channel="email").count() == 1
    assert not Message.objects.filter(order=order, channel="sms").exists()
    assert Charge.objects.get(order=order).refunded_at is None
    assert steps_of(order)["sms"] == ("failed", 3)


def test_payment_timing_out_after_charging_is_retried_without_a_second_charge(
    live_temporal, catalogue
):
    # Real time on the dev server: the charge goes through, the answer comes after the
    # 5 s timeout, Temporal retries, and the retry finds the charge instead of making one.
    set_switch("payment", "slow", latency_ms=6500)
    order = place_order(
        {
            "product": Product.objects.get(sku="KB-01"),
            "quantity": 1,
            "customer_name": "Grace Hopper",
            "email": "grace@example.com",
            "phone": "+1 555 0100",
            "address": "1 Compiler Way",
        }
    )
    wait_for(lambda: Charge.objects.filter(order=order).exists(), 20)
    set_switch("payment", "healthy")
    wait_for(lambda: Order.objects.get(pk=order.pk).status == "completed", 60)
    wait_for(lambda: len(calls_of(order, "charge")) == 2, 20)

    order.refresh_from_db()
    assert Charge.objects.filter(order=order).count() == 1
    first, second = calls_of(order, "charge")
    assert (first.outcome, second.outcome) == ("error", "replayed")
    assert "No answer within the 5s timeout; the charge had already happened" in first.error
    assert order.payment_id == Charge.objects.get(order=order).payment_id


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_switch_flipped_during_backoff_changes_the_outcome(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("shipping", "down")
    order = new_order()
    with time_skipping_env.auto_time_skipping_disabled():
        handle = await start(time_skipping_env, skipping_worker, order)
        await wait_until(lambda: len(calls_of(order, "ship")) == 1)
        set_switch("shipping", "healthy")
        outcome = await handle.result()

    assert outcome.status == "completed"
    assert [c.outcome for c in calls_of(order, "ship")] == ["error", "ok"]


async def test_out_of_stock_is_not_retried(time_skipping_env, skipping_worker, catalogue):
    Product.objects.filter(sku="KB-01").update(stock=1)
    order = new_order("KB-01", 1)
    Product.objects.filter(sku="KB-01").update(stock=0)
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    assert outcome.status == "failed"
    assert "Out of stock" in outcome.error
    assert [c.outcome for c in calls_of(order, "reserve")] == ["rejected"]


async def test_progress_query_reports_every_step(time_skipping_env, skipping_worker, catalogue):
    order = new_order()
    handle = await start(time_skipping_env, skipping_worker, order)
    await handle.result()
    progress = await handle.query("progress")
    assert progress["status"] == "completed"
    assert [(s["name"], s["state"], s["attempts"]) for s in progress["steps"]] == [
        (name, "completed", 1)
        for name in ("inventory", "payment", "commit", "shipping", "email", "sms")
    ]
    assert progress["steps"][1]["result"].startswith("PAY-")


async def test_cancelling_an_order_undoes_what_was_done(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("shipping", "down")
    order = new_order()
    with time_skipping_env.auto_time_skipping_disabled():
        handle = await start(time_skipping_env, skipping_worker, order)
        await wait_until(lambda: len(calls_of(order, "ship")) == 1)
        await handle.cancel()
        outcome = await handle.result()

    order.refresh_from_db()
    assert outcome.status == order.status == "cancelled"
    assert Charge.objects.get(order=order).refunded_at is not None
    assert Reservation.objects.get(order=order).state == Reservation.State.RELEASED


def test_retry_table_is_what_the_seed_promises():
    from orders.contract import RETRY_TABLE

    inventory = RETRY_TABLE["inventory"]
    assert inventory.initial_interval == timedelta(seconds=1)
    assert inventory.backoff == 2
    assert "OutOfStock" in inventory.non_retryable
    assert RETRY_TABLE["compensation"].maximum_attempts == 0


async def test_a_charge_that_timed_out_is_refunded_when_payment_then_fails_for_good(
    time_skipping_env, skipping_worker, catalogue
):
    # Attempt 1 charges but answers too late; then the service goes down for good.
    set_switch("payment", "slow", latency_ms=6500)
    order = new_order()
    with time_skipping_env.auto_time_skipping_disabled():
        handle = await start(time_skipping_env, skipping_worker, order)
        await wait_until(lambda: Charge.objects.filter(order=order).exists())
        set_switch("payment", "down")

    async def heal_once_the_charge_step_gave_up() -> None:
        # The charge step gives up after its six attempts; the refund waits for the service.
        await wait_until(lambda: len(calls_of(order, "charge")) == 6, timeout=60)
        set_switch("payment", "healthy")

    # Awaiting the result lets the server skip the backoff (31 s of it) meanwhile.
    healing = asyncio.create_task(heal_once_the_charge_step_gave_up())
    try:
        outcome = await handle.result()
        await healing
    finally:
        healing.cancel()

    assert outcome.status == "failed"
    assert Charge.objects.get(order=order).refunded_at is not None
    assert Reservation.objects.get(order=order).state == Reservation.State.RELEASED
    assert steps_of(order)["payment"] == ("failed", 6)


async def test_undoing_a_step_that_never_took_effect_does_not_wait_for_its_service(
    time_skipping_env, skipping_worker, catalogue
):
    set_switch("shipping", "down")
    order = new_order()
    outcome = await run_order(time_skipping_env, skipping_worker, order)

    assert outcome.status == "failed"
    cancel = order.calls.get(service="shipping", operation="cancel")
    assert (cancel.outcome, cancel.error) == ("replayed", "nothing to undo")
