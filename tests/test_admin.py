"""The ops view in the Django admin: find an order, read its steps and attempts, go to Temporal."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orders.contract import SERVICES, Step, workflow_id_for
from orders.models import Order
from orders.placement import create_order
from orders.simulator.models import Product, ServiceCall, ServiceSwitch

CHANGELIST = reverse("admin:orders_order_changelist")


@pytest.fixture
def keyboard(db) -> Product:
    return Product.objects.create(
        sku="KB-01", name="Mechanical keyboard", price_cents=8900, stock=50
    )


def new_order(product: Product, name: str, email: str, **fields: object) -> Order:
    order = create_order(
        {
            "product": product,
            "quantity": 2,
            "customer_name": name,
            "email": email,
            "phone": "",
            "address": "1 Compiler Way",
        }
    )
    if fields:
        Order.objects.filter(pk=order.pk).update(**fields)
        order.refresh_from_db()
    return order


@pytest.fixture
def orders(keyboard) -> dict[str, Order]:
    # No digits in names or emails, no workflow ids: a search for a pk can only match the id.
    return {
        "grace": new_order(keyboard, "Grace Hopper", "grace@example.com", status="completed"),
        "alan": new_order(
            keyboard,
            "Alan Turing",
            "alan@example.com",
            status="failed",
            failure_reason="Card declined",
        ),
        "ada": new_order(keyboard, "Ada Lovelace", "ada@example.com", status="running"),
    }


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [order.pk for order in response.context["cl"].result_list]


def test_it_sends_anonymous_visitors_to_the_login_page(client, orders):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_lists_every_order_newest_first(admin_client, orders):
    response = admin_client.get(CHANGELIST)

    assert listed(response) == [orders["ada"].pk, orders["alan"].pk, orders["grace"].pk]
    page = response.content.decode()
    for name in ("Grace Hopper", "Alan Turing", "Ada Lovelace"):
        assert name in page
    assert "$178.00" in page


def test_it_counts_each_orders_attempts_in_the_list(admin_client, orders):
    grace = orders["grace"]
    for attempt, outcome in [(1, "error"), (2, "error"), (3, "ok")]:
        ServiceCall.objects.create(
            service="inventory",
            operation="reserve",
            order=grace,
            idempotency_key="k",
            attempt=attempt,
            outcome=outcome,
        )

    response = admin_client.get(CHANGELIST)

    counts = {order.pk: order.attempt_total for order in response.context["cl"].result_list}
    assert counts == {orders["grace"].pk: 3, orders["alan"].pk: 0, orders["ada"].pk: 0}


def test_it_filters_orders_by_status(admin_client, orders):
    response = admin_client.get(CHANGELIST, {"status__exact": "failed"})

    assert listed(response) == [orders["alan"].pk]


def test_it_finds_orders_by_customer_name(admin_client, orders):
    response = admin_client.get(CHANGELIST, {"q": "hopper"})

    assert listed(response) == [orders["grace"].pk]


def test_it_finds_an_order_by_its_id(admin_client, orders):
    response = admin_client.get(CHANGELIST, {"q": str(orders["alan"].pk)})

    assert listed(response) == [orders["alan"].pk]


def test_it_finds_an_order_by_its_workflow_id(admin_client, orders):
    grace = orders["grace"]
    Order.objects.filter(pk=grace.pk).update(workflow_id=workflow_id_for(grace.pk))

    response = admin_client.get(CHANGELIST, {"q": f"order-{grace.pk}"})

    assert listed(response) == [grace.pk]


def test_it_shows_an_orders_steps_ledger_errors_and_temporal_link(admin_client, orders, settings):
    settings.TEMPORAL_UI_URL = "http://temporal-ui.test:8080"
    settings.TEMPORAL_NAMESPACE = "default"
    order = orders["alan"]
    Order.objects.filter(pk=order.pk).update(workflow_id=workflow_id_for(order.pk))
    order.steps.filter(name="inventory").update(state="completed", attempts=2, result="RES-41")
    order.steps.filter(name="payment").update(state="failed", last_error="Card declined")
    ServiceCall.objects.create(
        service="inventory",
        operation="reserve",
        order=order,
        idempotency_key="order-x/res",
        attempt=1,
        outcome="error",
        error="Inventory Service Unavailable (flaky)",
    )
    ServiceCall.objects.create(
        service="payment",
        operation="charge",
        order=order,
        idempotency_key="order-x/pay",
        attempt=1,
        outcome="rejected",
        error="Card declined by the issuer",
    )

    response = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    for label in Step.labels:
        assert label in page
    assert "RES-41" in page
    assert "Inventory Service Unavailable (flaky)" in page
    assert "Card declined by the issuer" in page
    assert "order-x/pay" in page
    url = f"http://temporal-ui.test:8080/namespaces/default/workflows/order-{order.pk}"
    assert f'href="{url}"' in page
    # The steps and the ledger are history: the page offers no way to add or edit rows.
    assert 'name="steps-MAX_NUM_FORMS" value="0"' in page
    assert 'name="calls-MAX_NUM_FORMS" value="0"' in page
    assert 'name="steps-0-state"' not in page
    assert 'name="calls-0-error"' not in page


def test_it_says_not_started_instead_of_a_temporal_link(admin_client, keyboard, settings):
    settings.TEMPORAL_UI_URL = "http://temporal-ui.test:8080"
    order = new_order(
        keyboard, "Offline Olga", "olga@example.com", start_error="Queued: no Temporal"
    )

    response = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "not started" in page
    assert "Queued: no Temporal" in page
    assert "temporal-ui.test" not in page


def test_it_lists_the_ledger_and_the_switches(admin_client, orders):
    for service in SERVICES:
        ServiceSwitch.objects.create(service=service)
    ServiceCall.objects.create(
        service="sms",
        operation="send",
        order=orders["ada"],
        idempotency_key="k",
        attempt=1,
        outcome="error",
        error="Sms Service Unavailable",
    )

    ledger = admin_client.get(reverse("admin:simulator_servicecall_changelist"), {"q": "Sms"})
    switches = admin_client.get(reverse("admin:simulator_serviceswitch_changelist"))

    assert ledger.status_code == switches.status_code == 200
    assert [call.error for call in ledger.context["cl"].result_list] == ["Sms Service Unavailable"]
    assert [s.service for s in switches.context["cl"].result_list] == list(SERVICES)
