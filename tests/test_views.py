"""Pages and fragments through Django's test client, against a real Temporal dev server."""

from __future__ import annotations

import re
import time

import pytest
from asgiref.sync import async_to_sync

from orderdash.stack import free_port
from orders.contract import WORKFLOW_NAME, OrderInput
from orders.models import Order
from orders.placement import create_order, start_workflow
from orders.simulator.models import Product, ServiceSwitch
from orders.temporal import get_client, order_workflow_id

GOOD_ORDER = {
    "product": "MS-02",
    "quantity": "2",
    "customer_name": "Margaret Hamilton",
    "email": "margaret@example.com",
    "phone": "+1 555 0142",
    "address": "11 Apollo Street",
}


@pytest.fixture
def temporal_down(settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    settings.TEMPORAL_RPC_TIMEOUT = 0.5


def test_dashboard_renders_the_whole_page(client, live_temporal, catalogue):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="place-order"' in html
    assert html.count("data-service=") == 5
    assert 'data-worker="up"' in html
    assert 'ws-connect="/ws/orders/"' in html
    assert "No orders yet" in html


def test_dashboard_htmx_request_gets_only_the_order_list(client, live_temporal, catalogue):
    client.post("/orders/new/", GOOD_ORDER)
    response = client.get("/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="order-list"') or 'id="order-list"' in html[:200]
    assert "<html" not in html
    assert 'data-order-status="' in html


def test_placing_an_order_starts_its_workflow_and_says_so_without_rendering_the_board(
    client, live_temporal, catalogue
):
    response = client.post("/orders/new/", GOOD_ORDER, headers={"HX-Request": "true"})
    order = Order.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert order.workflow_id == order_workflow_id(order.pk)
    assert f'Order <a href="/orders/{order.pk}/">#{order.pk}</a> placed' in html
    assert order.amount_cents == 2 * 2900
    # The board comes over the page's live socket (tests/test_consumers.py), rendered
    # once per filter for every socket, not once per order placed.
    assert 'id="order-list"' not in html and f'id="order-{order.pk}"' not in html


def test_placing_an_order_without_htmx_redirects_to_its_page(client, live_temporal, catalogue):
    response = client.post("/orders/new/", GOOD_ORDER)
    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.pk}/"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("product", "NOPE-1", "No product with that SKU"),
        ("quantity", "0", "Quantity must be at least 1."),
        ("quantity", "500", "At most 20 units per order."),
        ("email", "not-an-email", "Enter an email address"),
        ("customer_name", "   ", "This field is required."),
        ("quantity", "٤", "Enter a whole number."),  # Arabic-Indic four
        ("quantity", "４", "Enter a whole number."),  # full-width four
        ("quantity", "1e1", "Enter a whole number."),
    ],
)
def test_bad_order_input_is_explained_next_to_the_field_and_creates_nothing(
    client, catalogue, field, value, message
):
    response = client.post(
        "/orders/new/", GOOD_ORDER | {field: value}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert f'data-field="{field}"' in html
    assert not Order.objects.exists()
    # Without htmx: the whole page, the same message beside the field, nothing created.
    page = client.post("/orders/new/", GOOD_ORDER | {field: value})
    assert page.status_code == 400
    assert "<!doctype html>" in page.content.decode() and message in page.content.decode()
    assert 'ws-connect="/ws/orders/"' in page.content.decode()
    assert not Order.objects.exists()


def test_quantity_beyond_what_is_available_is_refused(client, catalogue):
    Product.objects.filter(sku="MN-27").update(stock=5, reserved=2)
    response = client.post(
        "/orders/new/",
        GOOD_ORDER | {"product": "MN-27", "quantity": "4"},
        headers={"HX-Request": "true"},
    )
    assert "Only 3 of 27-inch monitor available right now." in response.content.decode()
    assert not Order.objects.exists()


def test_an_order_placed_while_temporal_is_down_is_queued_within_a_second(
    client, catalogue, temporal_down
):
    started = time.monotonic()
    response = client.post("/orders/new/", GOOD_ORDER, headers={"HX-Request": "true"})
    assert time.monotonic() - started < 1.5
    order = Order.objects.get()
    assert response.status_code == 200
    assert (order.status, order.workflow_id) == ("queued", "")
    assert order.start_error.startswith("Queued: Temporal is not reachable")
    flash = response.content.decode()
    assert f"#{order.pk}</a> queued: it is saved and starts by itself" in flash
    page = client.get(f"/orders/{order.pk}/").content.decode()
    assert 'data-order-status="queued"' in page and 'data-queued="true"' in page
    assert 'data-queued="1"' in client.get("/").content.decode()  # the banner counts it


def test_pages_still_render_when_temporal_is_unreachable(client, catalogue, temporal_down):
    client.post("/orders/new/", GOOD_ORDER)
    order = Order.objects.get()
    dashboard = client.get("/").content.decode()
    assert "Temporal unreachable" in dashboard
    assert 'data-worker="down"' in dashboard
    detail = client.get(f"/orders/{order.pk}/")
    assert detail.status_code == 200
    assert 'data-order-status="queued"' in detail.content.decode()


def test_flipping_a_switch_applies_it_and_returns_the_panel(client, catalogue):
    response = client.post(
        "/services/inventory/", {"mode": "flaky", "failures": "3"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    switch = ServiceSwitch.objects.get(service="inventory")
    assert (switch.mode, switch.failures, switch.failures_left) == ("flaky", 3, 3)
    assert 'data-service="inventory" data-mode="flaky"' in html


def test_a_bad_switch_setting_is_refused_and_changes_nothing(client, catalogue):
    response = client.post(
        "/services/inventory/", {"mode": "explode"}, headers={"HX-Request": "true"}
    )
    assert "Unknown mode explode." in response.content.decode()
    assert ServiceSwitch.objects.get(service="inventory").mode == "healthy"
    response = client.post("/services/teleporter/", {"mode": "down"})
    assert response.status_code == 400
    assert "not one of the available choices" in response.content.decode()
    assert not ServiceSwitch.objects.filter(service="teleporter").exists()


def test_switches_only_take_posts(client, catalogue):
    assert client.get("/services/inventory/").status_code == 405


def test_order_page_shows_steps_policy_and_links(client, live_temporal, catalogue):
    client.post("/orders/new/", GOOD_ORDER)
    order = Order.objects.get()
    html = client.get(f"/orders/{order.pk}/").content.decode()
    assert f'id="order-{order.pk}"' in html
    assert len(re.findall(r'data-step="\w+" data-state=', html)) == 6
    assert "6 attempts, backoff 1s ×2 up to 30s, 5s per attempt" in html
    assert f"/admin/orders/order/{order.pk}/change/" in html
    assert f'/namespaces/default/workflows/{order_workflow_id(order.pk)}"' in html
    assert f'ws-connect="/ws/orders/{order.pk}/"' in html


def test_an_unknown_order_is_a_friendly_404(client, catalogue):
    response = client.get("/orders/987654/")
    assert response.status_code == 404
    assert "There is no such page or order." in response.content.decode()


def test_a_non_numeric_order_url_is_a_404_too(client, catalogue):
    assert client.get("/orders/abc/").status_code == 404


def test_a_workflow_id_another_order_holds_in_temporal_is_reported_not_adopted(
    client, live_temporal, catalogue
):
    # As after the dashboard's database was reset while Temporal kept its history: the
    # new order's workflow id is already someone else's.
    order = create_order(
        {
            "product": catalogue["MS-02"],
            "quantity": 1,
            "customer_name": "Margaret Hamilton",
            "email": "margaret@example.com",
            "address": "11 Apollo Street",
        }
    )
    taken = order_workflow_id(order.pk)

    async def start_someone_elses_workflow() -> None:
        temporal = await get_client()
        await temporal.start_workflow(
            WORKFLOW_NAME,
            OrderInput(order.pk, "MS-02", 1, 100, "Someone Else", "else@example.com", "", "x"),
            id=taken,
            task_queue="nobody-polls-this",  # it just sits there, running
        )

    async_to_sync(start_someone_elses_workflow)()
    async_to_sync(start_workflow)(order)
    order.refresh_from_db()
    assert (order.status, order.workflow_id) == ("stopped", "")
    assert f"Temporal already holds another order's workflow {taken}" in order.failure_reason
    page = client.get(f"/orders/{order.pk}/").content.decode()
    assert f"Temporal already holds another order&#x27;s workflow {taken}" in page
    assert 'data-order-status="stopped"' in page


def test_a_start_that_already_went_through_is_adopted_not_doubled(client, live_temporal, catalogue):
    order = create_order(
        {
            "product": catalogue["MS-02"],
            "quantity": 1,
            "customer_name": "Margaret Hamilton",
            "email": "margaret@example.com",
            "address": "11 Apollo Street",
        }
    )

    async def run_id() -> str:
        temporal = await get_client()
        return (await temporal.get_workflow_handle(order_workflow_id(order.pk)).describe()).run_id

    async_to_sync(start_workflow)(order)
    first_run = async_to_sync(run_id)()
    # As if that start's answer had been lost: the order still looks queued.
    Order.objects.filter(pk=order.pk).update(status="queued", workflow_id="")
    order.refresh_from_db()
    async_to_sync(start_workflow)(order)
    order.refresh_from_db()
    assert order.workflow_id == order_workflow_id(order.pk) and order.status != "queued"
    assert async_to_sync(run_id)() == first_run


@pytest.mark.parametrize(
    "path",
    ["/static/../x", "/static/%2e%2e/manage.py", "/static/../orderdash/settings.py", "/orders/-1/"],
)
def test_a_path_outside_what_exists_is_a_plain_404(client, catalogue, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Traceback" not in response.content.decode()


def test_static_files_are_served_by_the_web_process(client):
    assert client.get("/static/orders/orderdash.css").status_code == 200


def test_orders_waiting_for_approval_are_counted_and_one_click_away(client, running_order):
    Order.objects.filter(pk=running_order.pk).update(status="awaiting_approval")
    page = client.get("/").content.decode()
    assert 'data-awaiting="1"' in page
    assert '/?status=awaiting_approval">1 order waits for an operator' in page
    inbox = client.get("/?status=awaiting_approval").content.decode()
    assert f'id="order-{running_order.pk}"' in inbox
    assert 'data-status-filter="awaiting_approval"' in inbox
    assert 'ws-connect="/ws/orders/?status=awaiting_approval"' in inbox  # and it stays live
    assert f'id="order-{running_order.pk}"' not in client.get("/?status=completed").content.decode()
