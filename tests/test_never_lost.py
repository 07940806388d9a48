"""An accepted order is never lost: queued while Temporal is away, started when it is back,
and an order whose workflow Temporal stopped says so instead of "running" for ever."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import connection

from orderdash.stack import LocalStack, free_port
from orders import starter
from orders.actions import act
from orders.audit import audit_order
from orders.models import Order
from orders.placement import create_order, place_order, start_workflow
from orders.simulator.models import Charge, Product
from orders.temporal import get_client, order_workflow_id
from tests.conftest import set_switch

GOOD_ORDER = {
    "product": "MS-02",
    "quantity": "1",
    "customer_name": "Margaret Hamilton",
    "email": "margaret@example.com",
    "phone": "+1 555 0142",
    "address": "11 Apollo Street",
}


def wait_for_status(order: Order, statuses: tuple[str, ...], timeout: float) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status in statuses:
            return order
        time.sleep(0.2)
    raise AssertionError(f"order {order.pk} still {order.status} after {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_an_order_placed_while_temporal_is_down_starts_when_it_returns(
    client, catalogue, settings, workflow_id_prefix, tmp_path
):
    address = f"127.0.0.1:{free_port()}"
    settings.TEMPORAL_ADDRESS = address
    settings.TEMPORAL_TASK_QUEUE = f"queued-{uuid.uuid4()}"
    env = {
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": settings.TEMPORAL_TASK_QUEUE,
        "TEMPORAL_WORKFLOW_ID_PREFIX": workflow_id_prefix,
        "STARTER_EVERY_SECONDS": "0.5",
    }
    with LocalStack(env, log_dir=tmp_path) as stack:
        stack.start_temporal(address)
        stack.stop_temporal()  # Temporal was here, and went away

        started = time.monotonic()
        response = client.post("/orders/new/", GOOD_ORDER, headers={"HX-Request": "true"})
        assert time.monotonic() - started < 1.5
        order = Order.objects.get()
        assert (response.status_code, order.status, order.workflow_id) == (200, "queued", "")

        # The worker (its starter with it) runs while Temporal is still away, then
        # Temporal comes back: the order starts by itself and goes all the way.
        stack.start_worker()
        time.sleep(1)
        stack.start_temporal(address)
        order = wait_for_status(order, ("completed",), timeout=60)
    assert order.workflow_id == order_workflow_id(order.pk)
    assert order.start_error == ""
    assert audit_order(order).adds_up


@pytest.mark.django_db(transaction=True)
def test_audit_fails_for_an_order_queued_past_the_limit_or_never_started(catalogue, settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there
    product = Product.objects.get(sku="KB-01")
    fields = {
        "product": product,
        "quantity": 1,
        "customer_name": "Offline Olga",
        "email": "olga@example.com",
        "address": "1 Nowhere Lane",
    }
    queued = place_order(fields)
    call_command("audit", stdout=io.StringIO())  # queued within the limit: fine

    settings.QUEUED_LIMIT_SECONDS = 0
    time.sleep(0.01)
    with pytest.raises(SystemExit):
        call_command("audit", stdout=io.StringIO())
    assert any("queued for" in p for p in audit_order(queued).problems)

    Order.objects.filter(pk=queued.pk).update(status="running")  # neither started nor queued
    queued.refresh_from_db()
    assert audit_order(queued).problems == ["never started in Temporal, and not queued to start"]


@pytest.mark.django_db(transaction=True)
def test_an_order_whose_workflow_was_terminated_becomes_stopped(
    live_temporal, catalogue, monkeypatch
):
    set_switch("shipping", "down")
    order = place_order(
        {
            "product": Product.objects.get(sku="KB-01"),
            "quantity": 1,
            "customer_name": "Terminated Tom",
            "email": "tom@example.com",
            "address": "2 Harbor Road",
        }
    )
    wait_for_status(order, ("running",), timeout=20)

    async def terminate() -> None:
        temporal = await get_client()
        await temporal.get_workflow_handle(order.workflow_id).terminate(reason="test")

    async_to_sync(terminate)()
    monkeypatch.setattr(starter, "QUIET_FOR", starter.timedelta(0))
    assert async_to_sync(starter.reconcile_in_flight)() == (1, 0)
    order.refresh_from_db()
    assert order.status == "stopped"
    assert f"reports it as terminated for workflow {order.workflow_id}" in order.failure_reason
    assert async_to_sync(starter.reconcile_in_flight)() == (0, 0)  # once only


def keyboard_order() -> dict:
    return {
        "product": Product.objects.get(sku="KB-01"),
        "quantity": 1,
        "customer_name": "Queued Quentin",
        "email": "quentin@example.com",
        "address": "4 Waiting Lane",
    }


@pytest.mark.django_db(transaction=True)
def test_a_queued_order_cancelled_before_it_starts_is_never_started(
    live_temporal, catalogue, settings
):
    reachable = settings.TEMPORAL_ADDRESS
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # Temporal away
    order = place_order(keyboard_order())
    assert order.status == "queued"
    placed = Order.objects.get(pk=order.pk).updated_at
    assert act(order, "cancel", actor="olga").accepted
    settings.TEMPORAL_ADDRESS = reachable  # back: the starter's round finds nothing to start
    assert async_to_sync(starter.start_queued)() == 0
    order.refresh_from_db()
    assert (order.status, order.workflow_id) == ("cancelled", "")
    assert order.updated_at > placed  # the live board's change check sees it


@pytest.mark.django_db(transaction=True)
def test_an_order_cancelled_while_its_start_was_under_way_is_undone(live_temporal, catalogue):
    order = create_order(keyboard_order())  # saved queued; its start is about to happen
    Order.objects.filter(pk=order.pk).update(status="cancelled", cancel_requested_by="olga")
    async_to_sync(start_workflow)(order)  # the start went through all the same

    async def workflow_status() -> str:
        temporal = await get_client()
        described = await temporal.get_workflow_handle(order_workflow_id(order.pk)).describe()
        return described.status.name

    deadline = time.monotonic() + 30
    while async_to_sync(workflow_status)() == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert async_to_sync(workflow_status)() == "COMPLETED"  # it ran its undo and finish
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert order.workflow_id == order_workflow_id(order.pk)
    assert audit_order(order).adds_up  # nothing charged, or refunded; stock released
    assert not Charge.objects.filter(order=order, refunded_at__isnull=True).exists()
