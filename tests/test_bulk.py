"""Bulk actions on a filtered board: the confirmation counts what the action will touch,
each order goes through the same action as a single one (and is recorded the same way),
and a partial failure says which orders and why. Against a real dev server and worker."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.http import QueryDict

from orders.contract import RETRY_TABLE
from orders.models import Engine, OperatorAction, Order, OrderStep
from orders.placement import create_order
from orders.simulator.models import ServiceCall
from tests.conftest import set_switch
from tests.test_actions import place, wait_for_step, wait_until


def database_order(catalogue, *, engine: str = Engine.TEMPORAL, status: str = "running", **steps):
    """An order as the database holds it, no workflow behind it."""
    order = create_order(
        {
            "product": catalogue["KB-01"],
            "quantity": 1,
            "customer_name": "Barbara Liskov",
            "email": "barbara@example.com",
            "address": "5 Substitution Street",
            "engine": engine,
        }
    )
    Order.objects.filter(pk=order.pk).update(status=status)
    for step, state in steps.items():
        OrderStep.objects.filter(order=order, name=step).update(state=state)
    order.refresh_from_db()
    return order


def confirm(client, action: str, query: str) -> tuple[int, str]:
    """The confirmation's count, and the newest order it counted."""
    response = client.get(f"/orders/bulk/{action}/?{query}", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200, html
    count = int(re.search(r'data-bulk-count="(\d+)"', html).group(1))
    upto = re.search(r'name="upto" value="(\d+)"', html).group(1)
    assert f'data-bulk-confirm="{action}"' in html
    return count, upto


def apply(client, action: str, data: dict) -> str:
    response = client.post(f"/orders/bulk/{action}/apply/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def two_orders_retrying_payment(monkeypatch) -> list:
    """Two Temporal orders retrying payment (down) on a long backoff: without an operator
    the next payment attempt would come only after 60 s."""
    minute = timedelta(seconds=60)
    slow = replace(RETRY_TABLE["payment"], initial_interval=minute, maximum_interval=minute)
    monkeypatch.setitem(RETRY_TABLE, "payment", slow)
    set_switch("payment", "down")
    orders = [place(), place()]
    for order in orders:
        wait_for_step(order, "payment", "retrying")
    return orders


def test_bulk_retry_now_retries_every_order_retrying_on_payment_and_says_which_it_could_not(
    client, live_temporal, catalogue, monkeypatch
):
    orders = two_orders_retrying_payment(monkeypatch)
    # The plain script retrying on payment too: it has no way to be told anything.
    plain = database_order(
        catalogue, engine=Engine.PLAIN, inventory="completed", payment="retrying"
    )
    count, upto = confirm(client, "retry-now", "state=retrying&service=payment")
    assert count == 3
    # Placed after the confirmation: not what the operator agreed to, so not touched.
    later = database_order(catalogue, inventory="completed", payment="retrying")
    set_switch("payment", "healthy")
    clicked = time.monotonic()
    html = apply(
        client,
        "retry-now",
        {"state": "retrying", "service": "payment", "upto": upto, "reason": "payment is back"},
    )
    assert 'data-bulk-done="2"' in html and 'data-bulk-refused="1"' in html
    assert f'data-bulk-refused-order="{plain.pk}"' in html and "plain script" in html
    for order in orders:
        wait_until(order, lambda o: o.status == "completed", timeout=30)
    assert time.monotonic() - clicked < 20  # not the 60 s backoff
    for order in orders:
        assert ServiceCall.objects.filter(order=order, service="payment").count() == 2
    recorded = OperatorAction.objects.filter(action="retry-now").order_by("order_id")
    assert [(a.order_id, a.accepted, a.reason, a.step) for a in recorded] == [
        (orders[0].pk, True, "payment is back", "payment"),
        (orders[1].pk, True, "payment is back", "payment"),
        (plain.pk, False, "payment is back", "payment"),
    ]
    assert not OperatorAction.objects.filter(order=later).exists()


def test_bulk_cancel_cancels_what_is_in_flight_and_names_the_order_it_could_not(
    client, live_temporal, catalogue
):
    set_switch("inventory", "down")
    in_flight = [place(), place()]
    for order in in_flight:
        wait_for_step(order, "inventory", "retrying")
    done = database_order(catalogue, status="completed")
    Order.objects.filter(pk__in=[o.pk for o in in_flight]).update(customer_name="Barbara Liskov")
    count, upto = confirm(client, "cancel", "q=liskov")
    assert count == 3
    html = apply(client, "cancel", {"q": "liskov", "upto": upto})
    assert 'data-bulk-done="2"' in html and 'data-bulk-refused="1"' in html
    assert f'data-bulk-refused-order="{done.pk}"' in html
    assert f"Order #{done.pk} is already completed." in html
    for order in in_flight:
        wait_until(order, lambda o: o.status == "cancelled", timeout=30)
    assert OperatorAction.objects.filter(action="cancel", accepted=True).count() == 2


def test_bulk_pause_holds_every_selected_order_until_a_bulk_resume(
    client, live_temporal, catalogue, monkeypatch
):
    orders = two_orders_retrying_payment(monkeypatch)
    count, upto = confirm(client, "pause", "service=payment")
    assert count == 2
    html = apply(client, "pause", {"service": "payment", "upto": upto})
    assert 'data-bulk-done="2"' in html
    for order in orders:
        wait_for_step(order, "payment", "paused")
    set_switch("payment", "healthy")
    count, upto = confirm(client, "resume", "service=payment")
    assert count == 2
    assert 'data-bulk-done="2"' in apply(client, "resume", {"service": "payment", "upto": upto})
    for order in orders:
        wait_until(order, lambda o: o.status == "completed", timeout=30)
    actions = OperatorAction.objects.filter(accepted=True).values_list("action", flat=True)
    assert sorted(actions) == ["pause", "pause", "resume", "resume"]


@pytest.mark.parametrize(
    ("action", "query", "message"),
    [
        ("cancel", "", "Filter the board first"),
        ("explode", "status=running", "There is no bulk action"),
        ("cancel", "status=lost", "Not a board filter: Status (status=lost)"),
        ("cancel", "status=rejected", "No order matches (status rejected)"),
    ],
)
def test_a_bulk_action_that_cannot_run_says_why_and_changes_nothing(
    client, catalogue, action, query, message
):
    order = database_order(catalogue)
    confirmation = client.get(f"/orders/bulk/{action}/?{query}", HTTP_HX_REQUEST="true")
    data = dict(QueryDict(query).items()) | {"upto": str(order.pk)}
    applied = client.post(f"/orders/bulk/{action}/apply/", data, HTTP_HX_REQUEST="true")
    for response in (confirmation, applied):
        assert response.status_code == 409
        assert message in response.content.decode()
    assert not OperatorAction.objects.exists()
    order.refresh_from_db()
    assert order.status == "running"


def test_a_bulk_action_posted_without_its_confirmation_is_refused(client, catalogue):
    order = database_order(catalogue)
    response = client.post("/orders/bulk/cancel/apply/", {"status": "running"})
    assert response.status_code == 409
    assert "A bulk action runs only once confirmed" in response.content.decode()
    assert not OperatorAction.objects.exists()
    order.refresh_from_db()
    assert order.status == "running"


def test_too_many_orders_for_one_bulk_action_are_refused(client, catalogue, monkeypatch):
    monkeypatch.setattr("orders.bulk.BULK_LIMIT", 2)
    for _ in range(3):
        database_order(catalogue)
    response = client.get("/orders/bulk/pause/?status=running")
    assert response.status_code == 409
    assert "3 orders match; a bulk action takes at most 2 at once" in response.content.decode()


def test_outside_demo_mode_only_operators_may_act_in_bulk(client, catalogue, settings):
    settings.DEMO_MODE = False
    order = database_order(catalogue)
    assert client.get("/orders/bulk/cancel/?status=running").status_code == 302  # log in
    client.force_login(User.objects.create_user("vera", password="a long passphrase"))
    assert client.get("/orders/bulk/cancel/?status=running").status_code == 403
    post = client.post("/orders/bulk/cancel/apply/", {"status": "running", "upto": order.pk})
    assert post.status_code == 403
    assert 'data-bulk-action="cancel"' not in client.get("/?status=running").content.decode()
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.add(Permission.objects.get(codename="operate_orders"))
    operator = User.objects.create_user("otto", password="a long passphrase")
    operator.groups.add(group)
    client.force_login(operator)
    assert 'data-bulk-action="cancel"' in client.get("/?status=running").content.decode()
    assert client.get("/orders/bulk/cancel/?status=running").status_code == 200
    assert not OperatorAction.objects.exists()
