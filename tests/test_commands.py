"""The terminal tools: services, place_order and seed_demo, run through call_command."""

from __future__ import annotations

import asyncio
import io
import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from temporalio.client import Client

from orderdash.stack import free_port
from orders.contract import SERVICES, WORKFLOW_NAME, OrderStatus
from orders.models import Order
from orders.simulator.models import Product, ServiceSwitch
from orders.temporal import order_workflow_id
from tests.conftest import set_switch


def run(*args: str, **options: object) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def seeded(db) -> None:
    """The demo catalogue and switches, without the transactional_db that `catalogue` needs."""
    call_command("seed_demo", stdout=io.StringIO())


def switches() -> dict[str, tuple[str, int, int]]:
    return {s.service: (s.mode, s.failures, s.failures_left) for s in ServiceSwitch.objects.all()}


# --- services --------------------------------------------------------------------------


def test_it_lists_all_five_switches(seeded):
    set_switch("payment", "down")

    lines = run("services").splitlines()

    assert [line.split()[0] for line in lines] == list(SERVICES)
    assert [line.split(maxsplit=1)[1] for line in lines] == [
        "healthy",
        "down",
        "healthy",
        "healthy",
        "healthy",
    ]


def test_it_sets_a_flaky_switch_with_its_countdown(seeded):
    out = run("services", "set", "inventory", "flaky", "--failures", "2")

    assert switches()["inventory"] == ("flaky", 2, 2)
    assert "inventory  flaky (2 of 2 failures left)" in out.splitlines()


def test_it_sets_a_slow_switch_with_its_latency(seeded):
    out = run("services", "set", "shipping", "slow", "--latency-ms", "1500")

    switch = ServiceSwitch.objects.get(service="shipping")
    assert (switch.mode, switch.latency_ms) == ("slow", 1500)
    assert "shipping   slow (1500 ms)" in out.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["warehouse", "down"], "warehouse is not one of the available choices"),
        (["warehouse", "down"], "services: inventory, payment, shipping, email, sms"),
        (["inventory", "broken"], "Unknown mode broken."),
        (["inventory", "broken"], "modes: healthy, down, flaky, slow, reject, crash"),
        (["inventory", "flaky", "--failures", "abc"], "failures: Enter a whole number."),
        (["inventory", "flaky", "--failures", "٤"], "failures: Enter a whole number."),
        (["inventory", "flaky", "--failures", "0"], "greater than or equal to 1"),
        (["inventory", "flaky", "--failures", "-3"], "greater than or equal to 1"),
        (["inventory", "slow", "--latency-ms", "1"], "greater than or equal to 10"),
    ],
)
def test_it_refuses_a_bad_switch_setting_and_changes_nothing(seeded, args, message):
    set_switch("inventory", "flaky", failures=3)
    before = switches()

    with pytest.raises(CommandError, match=re.escape(message)):
        run("services", "set", *args)

    assert switches() == before


# --- place_order: bad input never reaches the database ---------------------------------


def place(*extra: str, product: str = "KB-01", quantity: str = "1") -> str:
    return run("place_order", "--product", product, "--quantity", quantity, *extra)


@pytest.mark.parametrize(
    ("product", "quantity", "extra", "message"),
    [
        ("NOPE-1", "1", [], "product: No product with that SKU"),
        ("KB-01", "0", [], "quantity: Quantity must be at least 1."),
        ("KB-01", "-1", [], "quantity: Quantity must be at least 1."),
        ("KB-01", "abc", [], "quantity: Enter a whole number."),
        ("MN-27", "20", [], "quantity: Only 3 of 27-inch monitor available right now."),
        ("KB-01", "1", ["--email", "ada-at-example"], "email: Enter an email address like"),
        ("KB-01", "1", ["--customer", ""], "customer_name: This field is required."),
        ("KB-01", "1", ["--customer", "   "], "customer_name: This field is required."),
    ],
)
def test_it_refuses_a_bad_order_and_creates_no_row(seeded, product, quantity, extra, message):
    Product.objects.filter(sku="MN-27").update(stock=5, reserved=2)

    with pytest.raises(CommandError) as raised:
        place(*extra, product=product, quantity=quantity)

    assert str(raised.value).startswith("Order not placed.")
    assert message in str(raised.value)
    assert not Order.objects.exists()


def test_it_queues_the_order_when_temporal_is_unreachable(seeded, settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens there

    started = time.monotonic()
    out = place("--customer", "Offline Olga")

    order = Order.objects.get()
    assert time.monotonic() - started < 10
    assert out.startswith(
        f"Order #{order.pk} queued: Temporal is not reachable at {settings.TEMPORAL_ADDRESS}"
    )
    assert "starts by itself as soon as Temporal answers" in out
    assert order.customer_name == "Offline Olga"
    assert order.status == "queued"
    assert order.workflow_id == ""
    assert order.start_error.startswith(
        f"Queued: Temporal is not reachable at {settings.TEMPORAL_ADDRESS}"
    )
    assert order.steps.count() == 6


# --- place_order against a real Temporal dev server and worker -------------------------


def describe(workflow_id: str):
    async def go():
        client = await Client.connect(settings.TEMPORAL_ADDRESS)
        return await client.get_workflow_handle(workflow_id).describe()

    return asyncio.run(go())


def wait_for_final(order: Order, timeout: float = 15) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status in OrderStatus.final():
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {order.pk} still {order.status} after {timeout}s")


def test_it_places_an_order_and_starts_its_workflow(live_temporal, catalogue):
    out = place("--customer", "Grace Hopper", quantity="2")

    order = Order.objects.get()
    assert order.customer_name == "Grace Hopper"
    assert order.quantity == 2
    assert order.amount_cents == 2 * 8900
    assert order.workflow_id == order_workflow_id(order.pk)
    assert order.start_error == ""
    assert (
        out.strip()
        == f"Order #{order.pk} placed: 2 × KB-01, $178.00, run by workflow {order.workflow_id}"
    )
    description = describe(order.workflow_id)
    assert description.workflow_type == WORKFLOW_NAME
    assert description.task_queue == settings.TEMPORAL_TASK_QUEUE
    # Without --wait the command returns at once; the worker still finishes the order.
    assert wait_for_final(order).status == "completed"


def test_it_follows_a_flaky_order_through_its_retries_to_completion(live_temporal, catalogue):
    set_switch("inventory", "flaky", failures=2)

    out = place("--wait")  # returns normally, so the exit status is 0

    order = Order.objects.get()
    lines = out.splitlines()
    reserve = [line for line in lines if line.startswith("  inventory.reserve attempt")]
    assert len(reserve) == 3, out
    assert reserve[0].startswith("  inventory.reserve attempt 1: error — Inventory Service Unavail")
    assert reserve[1].startswith("  inventory.reserve attempt 2: error — Inventory Service Unavail")
    assert reserve[2] == "  inventory.reserve attempt 3: ok"
    retries = [i for i, line in enumerate(lines) if line.startswith("  retry: ")]
    assert retries, out
    assert lines.index(reserve[0]) < retries[0] < lines.index(reserve[2])
    assert all(
        re.fullmatch(
            r"  retry: inventory attempt [23] of 6 in \d+\.\ds"
            r" \(last error: Inventory Service Unavailable.*\)",
            lines[i],
        )
        for i in retries
    ), out
    assert "Reserve inventory: retrying" in lines
    assert lines[-1] == (
        f"Order #{order.pk} completed, payment {order.payment_id}, tracking {order.tracking_number}"
    )
    assert order.status == "completed"


def test_it_exits_1_when_the_payment_is_declined(live_temporal, catalogue):
    set_switch("payment", "reject")
    out = io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("place_order", "--product", "KB-01", "--quantity", "1", "--wait", stdout=out)

    order = Order.objects.get()
    assert exited.value.code == 1
    assert order.status == "failed"
    assert f"Order #{order.pk} failed: Card declined" in out.getvalue()
    assert "  payment.charge attempt 1: rejected — Card declined" in out.getvalue()


def test_it_exits_2_when_the_order_completes_with_warnings(live_temporal, catalogue):
    set_switch("sms", "down")
    out = io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("place_order", "--product", "KB-01", "--quantity", "1", "--wait", stdout=out)

    order = Order.objects.get()
    lines = out.getvalue().splitlines()
    assert exited.value.code == 2
    assert order.status == "completed_with_warnings"
    assert any(line.startswith(f"Order #{order.pk} completed with warnings") for line in lines)
    assert order.warnings, "the order should carry the SMS warning"
    assert any("sms" in warning.lower() for warning in order.warnings)
    assert lines[-len(order.warnings) :] == [f"Warning: {w}" for w in order.warnings]
    assert sum(line.startswith("  sms.send attempt") for line in lines) == 3


# --- seed_demo -------------------------------------------------------------------------


def test_it_seeds_twice_without_duplicating_anything(db):
    first = run("seed_demo")
    Product.objects.filter(sku="KB-01").update(stock=7)  # an operator's change survives a reseed
    second = run("seed_demo")

    users = get_user_model().objects
    assert Product.objects.count() == 5
    assert sorted(ServiceSwitch.objects.values_list("service", flat=True)) == sorted(SERVICES)
    assert set(ServiceSwitch.objects.values_list("mode", flat=True)) == {"healthy"}
    assert users.filter(is_superuser=True).count() == 1
    assert users.get(is_superuser=True).check_password("orderdash")
    assert Product.objects.get(sku="KB-01").stock == 7
    assert "Demo admin created: admin / orderdash" in first
    assert "Demo admin created" not in second


def test_it_places_an_order_for_the_plain_script(catalogue):
    out = io.StringIO()
    call_command(
        "place_order", "--product", "KB-01", "--quantity", "1", "--engine", "plain", stdout=out
    )
    order = Order.objects.get()
    assert (order.engine, order.workflow_id, order.status) == ("plain", "", "pending")
    assert "run by the plain script" in out.getvalue()


def test_it_refuses_an_unknown_engine(catalogue):
    with pytest.raises(CommandError, match="Engine must be temporal or plain"):
        call_command("place_order", "--product", "KB-01", "--quantity", "1", "--engine", "x")
    assert not Order.objects.exists()
