"""Crashes with real processes: a supervised worker, the plain script, a restarted server."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from orderdash.stack import LocalStack
from orders.audit import audit_order
from orders.models import Order
from orders.placement import place_order
from orders.simulator.models import Charge, Product, ServiceCall, Shipment
from orders.simulator.services import CRASH_MESSAGE
from tests.conftest import set_switch, wait_for


def order_data(engine: str = "temporal") -> dict:
    return {
        "product": Product.objects.get(sku="KB-01"),
        "quantity": 1,
        "customer_name": "Barbara Liskov",
        "email": "barbara@example.com",
        "phone": "+1 555 0111",
        "address": "7 Substitution Street",
        "engine": engine,
    }


def status_of(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def test_a_worker_killed_right_after_charging_restarts_and_charges_once(
    process_env, catalogue, tmp_path
):
    set_switch("payment", "crash")
    with LocalStack(env=process_env, log_dir=tmp_path) as stack:
        stack.start_worker()
        order = place_order(order_data())
        wait_for(lambda: status_of(order) == "completed", 60, "the order to complete")
        assert stack.exited() is None, "the supervisor itself must survive the crash"

    assert Charge.objects.filter(order=order).count() == 1
    payment_calls = list(ServiceCall.objects.filter(order=order, service="payment"))
    assert [(c.attempt, c.outcome) for c in payment_calls] == [(1, "error"), (2, "replayed")]
    assert payment_calls[0].error == CRASH_MESSAGE
    assert [line.line for line in audit_order(order).services if line.service == "payment"] == [
        "payment: 2 attempts, 1 charge"
    ]
    assert audit_order(order).adds_up


def test_the_plain_script_crashing_after_charging_loses_the_order(
    process_env, catalogue, admin_client, tmp_path
):
    set_switch("payment", "crash")
    with LocalStack(env=process_env, log_dir=tmp_path) as stack:
        stack.start_plain()
        order = place_order(order_data("plain"))
        wait_for(lambda: Charge.objects.filter(order=order).exists(), 30, "the charge")
        order.refresh_from_db()
        wait_for(lambda: Order.objects.get(pk=order.pk).is_lost, 30, "the order to be lost")

    order.refresh_from_db()
    assert order.status == "running"  # nothing will ever move it again
    assert not Shipment.objects.filter(order=order).exists()
    assert Charge.objects.get(order=order).refunded_at is None
    audit = audit_order(order)
    assert audit.problems == ["lost: charged, not shipped"]

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit", "--order", str(order.pk), stdout=out, stderr=err)
    assert exit_info.value.code == 1
    assert f"Order #{order.pk} (plain, running): lost: charged, not shipped" in out.getvalue()
    assert "payment: 1 attempt, 1 charge" in out.getvalue()

    page = admin_client.get("/admin/orders/order/?effects=broken").content.decode()
    assert f"/admin/orders/order/{order.pk}/change/" in page
    detail = admin_client.get(f"/orders/{order.pk}/").content.decode()
    assert "Lost: charged, not shipped" in detail


def test_the_temporal_server_restarted_mid_order_loses_nothing(
    settings, transactional_db, catalogue, tmp_path
):
    # A server of its own, persisted to a file: this test stops it and starts it again.
    env = {
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "TEMPORAL_TASK_QUEUE": "restart-test",
        "WORKER_RESTART_PAUSE": "0.5",
    }
    with LocalStack(env=env, log_dir=tmp_path) as stack:
        address = stack.start_temporal(db_file=tmp_path / "t.db")
        settings.TEMPORAL_ADDRESS = address
        settings.TEMPORAL_TASK_QUEUE = "restart-test"
        set_switch("shipping", "down")
        stack.start_worker()
        order = place_order(order_data())
        wait_for(
            lambda: ServiceCall.objects.filter(order=order, service="shipping").exists(),
            30,
            "a failed shipping attempt",
        )
        stack.stop_temporal()
        stack.start_temporal(address, db_file=tmp_path / "t.db")
        set_switch("shipping", "healthy")
        wait_for(lambda: status_of(order) == "completed", 90, "the order to complete")
    assert Charge.objects.filter(order=order).count() == 1
    assert Shipment.objects.filter(order=order).count() == 1


def test_audit_passes_when_every_order_adds_up(live_temporal, catalogue):
    set_switch("inventory", "flaky", failures=1)
    order = place_order(order_data())
    wait_for(lambda: status_of(order) == "completed", 30, "the order to complete")
    out = io.StringIO()
    call_command("audit", stdout=out)  # returns normally: exit status 0
    assert out.getvalue().splitlines() == [
        f"Order #{order.pk} (temporal, completed): effects add up",
        "  inventory: 3 attempts (reserve 2, commit 1), 1 reservation (committed)",
        "  payment: 1 attempt, 1 charge",
        "  shipping: 1 attempt, 1 shipment",
        "  email: 1 attempt, 1 email",
        "  sms: 1 attempt, 1 SMS",
        "Operators: 0 action(s) on these orders, 0 refused; 0 switch change(s).",
    ]


def test_audit_of_an_unknown_order_says_so(catalogue):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"There is no order #999\."):
        call_command("audit", "--order", "999")
