"""The board's filters, search, pages and business columns (orders/board.py), through the
dashboard view; and the cost of a board not growing with the number of orders."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orderdash.settings import envstuck
from orders.board import BOARD_ROWS, BoardFilter, parse_filter
from orders.live import _board_signature
from orders.models import Engine, Order, OrderStep
from orders.placement import create_order
from orders.render import render_order_list
from orders.steps import record_step


def make_order(catalogue, name: str = "Ada Lovelace", email: str = "ada@example.com", **fields):
    """An order as the database would hold it, its steps set by `steps=`."""
    steps = fields.pop("steps", {})
    order = create_order(
        {
            "product": catalogue["KB-01"],
            "quantity": 1,
            "customer_name": name,
            "email": email,
            "address": "12 Analytical Row",
            "engine": fields.pop("engine", Engine.TEMPORAL),
        }
    )
    Order.objects.filter(pk=order.pk).update(**({"status": "running"} | fields))
    for step, state in steps.items():
        OrderStep.objects.filter(order=order, name=step).update(state=state)
    return order


@pytest.fixture
def fleet(catalogue) -> dict[str, Order]:
    """One order for each thing a filter tells apart."""
    return {
        "retrying_payment": make_order(
            catalogue, steps={"inventory": "completed", "payment": "retrying"}
        ),
        "running_inventory": make_order(catalogue, steps={"inventory": "running"}),
        "committing": make_order(
            catalogue,
            steps={"inventory": "completed", "payment": "completed", "commit": "retrying"},
        ),
        "shipping_paused": make_order(
            catalogue,
            steps={"inventory": "completed", "payment": "completed", "shipping": "paused"},
        ),
        "failed": make_order(
            catalogue, status="failed", steps={"inventory": "completed", "payment": "failed"}
        ),
        "plain": make_order(
            catalogue,
            name="Grace Hopper",
            email="grace@navy.example",
            engine=Engine.PLAIN,
            steps={"inventory": "retrying"},
        ),
        # Temporal terminated it mid-retry: its step still says so, but nothing retries.
        "stopped": make_order(catalogue, status="stopped", steps={"payment": "retrying"}),
        "completed": make_order(
            catalogue,
            name="Edsger Dijkstra",
            email="ewd@example.org",
            status="completed",
            steps=dict.fromkeys(["inventory", "payment", "commit", "shipping"], "completed"),
        ),
    }


def shown(client, query: str) -> set[int]:
    response = client.get(f"/?{query}")
    assert response.status_code == 200, response.content.decode()[:500]
    return {row.order.pk for row in response.context["rows"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "",
            " ".join(
                [
                    "retrying_payment running_inventory committing shipping_paused",
                    "failed plain stopped completed",
                ]
            ),
        ),
        ("status=failed", "failed"),
        ("status=completed", "completed"),
        ("status=stopped", "stopped"),
        ("status=running", "retrying_payment running_inventory committing shipping_paused plain"),
        ("state=retrying", "retrying_payment committing plain"),
        ("service=payment", "retrying_payment"),  # the failed order is no longer on a step
        ("service=inventory", "running_inventory committing plain"),  # commit calls inventory
        ("service=shipping", "shipping_paused"),
        ("service=sms", ""),
        ("engine=plain", "plain"),
        ("engine=temporal&state=retrying", "retrying_payment committing"),
        ("state=retrying&service=payment", "retrying_payment"),
        ("q=grace", "plain"),  # customer name, any case
        ("q=EXAMPLE.ORG", "completed"),  # email
        ("q=Dijkstra&status=failed", ""),
    ],
)
def test_each_filter_shows_exactly_the_orders_it_selects(client, fleet, query, expected):
    assert shown(client, query) == {fleet[name].pk for name in expected.split()}


def test_search_finds_an_order_by_its_number(client, fleet):
    order = fleet["committing"]
    assert shown(client, f"q={order.pk}") == {order.pk}
    assert shown(client, f"q=%23{order.pk}") == {order.pk}  # as the board writes it: #42


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=nonsense", "Status (status=nonsense): Select a valid choice."),
        ("state=sleeping", "Steps (state=sleeping): Select a valid choice."),
        ("service=fax", "On service (service=fax): Select a valid choice."),
        ("engine=steam", "Engine (engine=steam): Select a valid choice."),
        ("page=zero", "Page (page=zero): Enter a whole number."),
        ("page=0", "Page (page=0): Ensure this value is greater than or equal to 1."),
        ("q=" + "x" * 101, "Search (q="),
    ],
)
def test_an_invalid_filter_is_explained_and_lists_nothing(client, fleet, query, message):
    response = client.get(f"/?{query}")
    html = response.content.decode()
    assert response.status_code == 400
    assert 'data-filter-errors="true"' in html and message in html
    assert response.context["rows"] == []  # never "everything" instead
    assert "ws-connect" not in html
    fragment = client.get(f"/?{query}", HTTP_HX_REQUEST="true")  # the list alone
    assert fragment.status_code == 400 and message in fragment.content.decode()


def test_a_filtered_board_is_live_and_keeps_its_filter_in_the_address(client, fleet):
    html = client.get("/?service=payment&state=retrying&page=1").content.decode()
    # The canonical order of parameters, so every socket on the same filter shares a board.
    assert 'ws-connect="/ws/orders/?state=retrying&amp;service=payment"' in html
    assert 'hx-push-url="true"' in html and 'id="board-filters"' in html
    assert 'data-bulk-action="retry-now"' in html


def test_pages_keep_the_filter(client, catalogue):
    for n in range(BOARD_ROWS + 3):
        make_order(catalogue, name=f"Customer {n}")
    first = client.get("/?status=running").content.decode()
    assert 'href="?status=running&amp;page=2"' in first
    second = client.get("/?status=running&page=2")
    assert len(second.context["rows"]) == 3
    assert 'ws-connect="/ws/orders/?status=running&amp;page=2"' in second.content.decode()


def test_the_htmx_filter_form_gets_the_whole_dashboard_other_htmx_requests_the_list(client, fleet):
    whole = client.get("/?status=failed", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="dashboard")
    assert 'id="dashboard"' in whole.content.decode()
    only = client.get("/?status=failed", HTTP_HX_REQUEST="true")
    assert 'id="dashboard"' not in only.content.decode()
    assert f'id="order-{fleet["failed"].pk}"' in only.content.decode()


def test_rows_show_customer_amount_and_the_step_with_its_time_there(client, fleet):
    entered = timezone.now() - timedelta(seconds=75)
    order = fleet["retrying_payment"]
    OrderStep.objects.filter(order=order, name="payment").update(entered_at=entered)
    html = client.get(f"/?q={order.pk}").content.decode()
    assert "Ada Lovelace" in html and "ada@example.com" in html and "$" in html
    assert 'data-current-step="payment"' in html
    assert "for 1m 1" in html  # 75 s, give or take the test's own time


@pytest.mark.parametrize(
    ("seconds_on_step", "limit", "stuck"),
    [(30, 60, False), (90, 60, True), (90, 120, False)],
)
def test_an_order_longer_on_its_step_than_the_limit_is_marked_stuck(
    client, fleet, settings, seconds_on_step, limit, stuck
):
    settings.STUCK_AFTER_SECONDS = settings.STUCK_AFTER_SECONDS | {"payment": limit}
    order = fleet["retrying_payment"]
    entered = timezone.now() - timedelta(seconds=seconds_on_step)
    OrderStep.objects.filter(order=order, name="payment").update(entered_at=entered)
    html = client.get(f"/?q={order.pk}").content.decode()
    assert ('data-stuck="true"' in html) == stuck


def test_a_step_counts_its_time_from_the_first_attempt_not_the_latest(catalogue):
    order = make_order(catalogue)
    record_step(order.pk, "payment", "running", attempt=1)
    first = OrderStep.objects.get(order=order, name="payment").entered_at
    record_step(order.pk, "payment", "retrying", attempt=1, error="down")
    record_step(order.pk, "payment", "running", attempt=2)
    step = OrderStep.objects.get(order=order, name="payment")
    assert step.entered_at == first and step.started_at > first


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {"payment": 60, "sms": 120}),
        ("300", {"payment": 300, "sms": 300}),
        ("payment=10, sms=5", {"payment": 10, "sms": 5, "shipping": 60}),
    ],
)
def test_stuck_limits_come_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("STUCK_AFTER_SECONDS", value)
    defaults = {"payment": 60, "shipping": 60, "sms": 120}
    limits = envstuck("STUCK_AFTER_SECONDS", defaults)
    assert {step: limits[step] for step in expected} == expected


@pytest.mark.parametrize("value", ["fax=10", "payment=soon", "payment"])
def test_a_bad_stuck_limit_stops_the_process_at_start(monkeypatch, value):
    monkeypatch.setenv("STUCK_AFTER_SECONDS", value)
    with pytest.raises(ImproperlyConfigured, match="STUCK_AFTER_SECONDS"):
        envstuck("STUCK_AFTER_SECONDS", {"payment": 60})
    assert os.environ["STUCK_AFTER_SECONDS"] == value


def queries_for(client, query: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(f"/?{query}").status_code == 200
    return len(captured)


@pytest.mark.parametrize("query", ["", "state=retrying&service=payment", "q=ada", "page=2"])
def test_a_board_page_costs_the_same_queries_with_ten_or_a_hundred_orders(client, catalogue, query):
    for _ in range(10):
        make_order(catalogue, steps={"payment": "retrying"})
    few = queries_for(client, query)
    for _ in range(90):
        make_order(catalogue, steps={"payment": "retrying"})
    assert queries_for(client, query) == few


def test_a_live_board_render_costs_the_same_queries_with_ten_or_a_hundred_orders(catalogue):
    def cost() -> int:
        with CaptureQueriesContext(connection) as captured:
            render_order_list("state=retrying")
            _board_signature()
        return len(captured)

    for _ in range(10):
        make_order(catalogue, steps={"payment": "retrying"})
    few = cost()
    for _ in range(90):
        make_order(catalogue, steps={"payment": "retrying"})
    assert cost() == few


def test_the_live_change_check_reads_indexes_not_every_order(catalogue):
    """What the hub reads four times a second: the newest order and change, off the ends
    of their indexes (SQLite's plan says so), however many orders there are."""
    with CaptureQueriesContext(connection) as captured:
        _board_signature()
    newest = next(q["sql"] for q in captured if "MAX(updated_at)" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {newest}")
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan
    assert "order_updated_at" in plan, plan


def test_the_filter_is_parsed_into_one_canonical_form():
    board_filter, page, errors = parse_filter({"service": "payment", "state": "retrying"})
    assert (board_filter.query, page, errors) == ("state=retrying&service=payment", 1, [])
    assert board_filter.page_query(3) == "state=retrying&service=payment&page=3"
    assert BoardFilter().page_query(1) == ""
    assert board_filter.describe() == "a step retrying now, on service payment"
