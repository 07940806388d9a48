"""The numbers on the page and in /metrics, checked against the database they come from."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orderdash.stack import LocalStack, free_port, run_manage, throwaway_env, wait_for_port
from orders.charts import nice_scale
from orders.contract import SERVICES, OrderStatus
from orders.live import hub
from orders.metrics import CHART_MINUTES, Ending, attempts_by_service_and_outcome, current_metrics
from orders.models import Engine, Order
from orders.placement import create_order, place_order
from orders.simulator import services
from orders.simulator.models import Outcome, ServiceCall
from orders.steps import record_lost_attempts
from tests.conftest import set_switch
from tests.test_consumers import connect, receive_until
from tests.test_monitoring import dashboard_metrics
from worker.main import sdk_metrics_runtime

# (status, engine, placed seconds ago, finished seconds ago or None)
ORDERS = [
    (OrderStatus.QUEUED, Engine.TEMPORAL, 5, None),
    (OrderStatus.PENDING, Engine.TEMPORAL, 5, None),
    (OrderStatus.RUNNING, Engine.TEMPORAL, 20, None),
    (OrderStatus.RUNNING, Engine.PLAIN, 20, None),
    (OrderStatus.AWAITING_APPROVAL, Engine.TEMPORAL, 30, None),
    (OrderStatus.AWAITING_APPROVAL, Engine.TEMPORAL, 30, None),
    (OrderStatus.COMPLETED, Engine.TEMPORAL, 50, 10),
    (OrderStatus.COMPLETED_WITH_WARNINGS, Engine.PLAIN, 50, 30),
    (OrderStatus.COMPLETED, Engine.TEMPORAL, 400, 300),  # 5 minutes ago: chart, not strip
    (OrderStatus.FAILED, Engine.TEMPORAL, 40, 15),
    (OrderStatus.STOPPED, Engine.TEMPORAL, 500, 200),
    (OrderStatus.CANCELLED, Engine.TEMPORAL, 40, 20),
    (OrderStatus.REJECTED, Engine.TEMPORAL, 40, 25),
    (OrderStatus.COMPLETED, Engine.TEMPORAL, 7200, 7000),  # two hours ago: nowhere
]
LOST = (OrderStatus.RUNNING, Engine.PLAIN, 90, None)  # its script died a minute ago
# (service, attempt, seconds ago): attempts after the first are retries
CALLS = [
    ("inventory", 1, 10),
    ("inventory", 2, 9),
    ("inventory", 3, 7),
    ("payment", 2, 40),
    ("payment", 2, 400),  # 6 or 7 minutes ago: chart only
    ("shipping", 4, 3600),  # an hour ago: nowhere
]
EXPECTED_STRIP = {
    "in_flight": 3,  # pending and running, the lost one not
    "waiting": 3,  # queued and awaiting approval
    "completed_per_minute": 2,
    "failed_per_minute": 1,
    "worker_up": 0,  # no worker polls the queue of these tests
}
EXPECTED_RETRIES_PER_MINUTE = {"inventory": 2, "payment": 1, "shipping": 0, "email": 0, "sms": 0}
EXPECTED_WINDOW = {"placed": 14, "completed": 3, "failed": 2, "undone": 2, "retries": 4}


@pytest.fixture
def now(catalogue) -> datetime:
    """Orders and ledger rows at known times before now (placed, finished, attempted)."""
    now = timezone.now()
    orders = []
    for status, engine, placed_ago, finished_ago in [*ORDERS, LOST]:
        order = create_order(
            {
                "product": catalogue["KB-01"],
                "quantity": 1,
                "customer_name": "Grace Hopper",
                "email": "grace@example.com",
                "address": "1 Cobol Street",
                "engine": engine,
            }
        )
        Order.objects.filter(pk=order.pk).update(
            status=status,
            created_at=now - timedelta(seconds=placed_ago),
            finished_at=None if finished_ago is None else now - timedelta(seconds=finished_ago),
        )
        orders.append(order)
    Order.objects.filter(pk=orders[-1].pk).update(updated_at=now - timedelta(seconds=60))
    for i, (service, attempt, ago) in enumerate(CALLS):
        call = ServiceCall.objects.create(
            service=service,
            operation="call",
            order=orders[i],
            idempotency_key=f"key-{i}",
            attempt=attempt,
            outcome=Outcome.ERROR,
        )
        ServiceCall.objects.filter(pk=call.pk).update(created_at=now - timedelta(seconds=ago))
    return now


def test_the_strip_and_the_charts_count_what_the_database_holds(now):
    metrics = current_metrics(now)
    figures = {
        "in_flight": metrics.in_flight,
        "waiting": metrics.waiting,
        "completed_per_minute": metrics.completed_per_minute,
        "failed_per_minute": metrics.failed_per_minute,
    }
    assert figures == {k: v for k, v in EXPECTED_STRIP.items() if k != "worker_up"}
    assert (metrics.queued, metrics.awaiting_approval) == (1, 2)
    assert metrics.retries_per_minute == EXPECTED_RETRIES_PER_MINUTE
    window = {
        "placed": sum(minute.placed for minute in metrics.minutes),
        "retries": sum(sum(minute.retries.values()) for minute in metrics.minutes),
    } | {
        ending: sum(minute.ended[ending] for minute in metrics.minutes) for ending in Ending.values
    }
    assert window == EXPECTED_WINDOW
    assert len(metrics.minutes) == CHART_MINUTES
    assert metrics.minutes[-1].start <= now < metrics.minutes[-1].start + timedelta(minutes=1)


def test_the_dashboard_shows_the_strip_and_the_charts_with_those_numbers(client, now, settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nobody there: worker not up
    html = client.get("/").content.decode()
    for name, value in EXPECTED_STRIP.items():
        assert re.search(rf'data-metric="{name}" data-value="{value}"', html), name
    for service, value in EXPECTED_RETRIES_PER_MINUTE.items():
        assert f'data-retry-service="{service}" data-value="{value}"' in html
    throughput = re.search(r'<figure class="chart" data-chart="throughput"([^>]*)>', html)
    retries = re.search(r'<figure class="chart" data-chart="retries"([^>]*)>', html)
    assert throughput and retries
    for name in ("placed", "completed", "failed", "undone"):
        assert f'data-{name}="{EXPECTED_WINDOW[name]}"' in throughput.group(1)
    assert 'data-inventory="2" data-payment="2"' in retries.group(1)
    # Drawn, not only counted: a bar per minute and series that has any, and the line.
    completed = re.findall(r"<title>\d\d:\d\d UTC: (\d+) completed</title>", html)
    assert sum(map(int, completed)) == EXPECTED_WINDOW["completed"]
    assert '<polyline class="line series-placed"' in html


def test_the_metrics_read_time_windows_through_indexes_never_every_order(now):
    """Six queries, each a search through an index: none scans a whole table, so their
    cost follows the orders of the last 15 minutes, not all the orders ever placed."""
    with CaptureQueriesContext(connection) as queries:
        current_metrics()
    assert len(queries) == 6
    plans = []
    with connection.cursor() as cursor:
        for query in queries:
            cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
            plans.append(" | ".join(str(row[-1]) for row in cursor.fetchall()))
    # SEARCH: a range through an index; SCAN: every row (or every index entry).
    scans = [plan for plan in plans if "SEARCH" not in plan or re.search(r"SCAN [a-z]", plan)]
    assert scans == [], "\n".join(plans)


@pytest.mark.parametrize(
    ("largest", "scale"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (49, 50), (51, 100)]
)
def test_chart_scales_are_round_numbers_just_above_the_largest_value(largest, scale):
    assert nice_scale(largest) == scale


@pytest.fixture
async def fresh_hub():
    yield
    await hub.stop()


async def test_the_board_socket_pushes_the_strip_when_an_order_completes(
    live_temporal, catalogue, fresh_hub
):
    communicator = await connect("/ws/orders/")
    try:
        first = await receive_until(communicator, r'id="metrics-strip"')
        assert 'data-metric="completed_per_minute" data-value="0"' in first
        # The test's worker polls (maybe not yet at the very first message).
        await receive_until(communicator, r'data-metric="worker_up" data-value="1"')

        def finish_one() -> None:
            order = create_order(
                {
                    "product": catalogue["KB-01"],
                    "quantity": 1,
                    "customer_name": "Ada",
                    "email": "ada@example.com",
                    "address": "1 Engine Row",
                }
            )
            Order.objects.filter(pk=order.pk).update(
                status=OrderStatus.COMPLETED, finished_at=timezone.now()
            )

        await sync_to_async(finish_one)()
        pushed = await receive_until(
            communicator, r'data-metric="completed_per_minute" data-value="1"', timeout=15
        )
        assert 'id="metrics-charts"' in pushed and 'data-completed="1"' in pushed
    finally:
        await communicator.disconnect()


# /metrics ----------------------------------------------------------------------------
def scrape(client, **headers: str) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def wait_until_final(order: Order, timeout: float = 60) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.is_final:
            return order
        time.sleep(0.2)
    raise AssertionError(f"order {order.pk} still {order.status} after {timeout}s")


def test_metrics_counts_orders_and_attempts_as_the_database_does_after_real_orders(
    client, live_temporal, catalogue
):
    data = {
        "product": catalogue["KB-01"],
        "quantity": 1,
        "customer_name": "Barbara Liskov",
        "email": "barbara@example.com",
        "address": "2 Substitution Way",
    }
    set_switch("inventory", "flaky", failures=2)
    retried = wait_until_final(place_order(data))
    set_switch("payment", "reject")
    declined = wait_until_final(place_order(data))
    assert (retried.status, declined.status) == (OrderStatus.COMPLETED, OrderStatus.FAILED)
    create_order(data)  # one more, saved and not started: queued

    samples = scrape(client)

    for status in OrderStatus.values:
        for engine in Engine.values:
            labels = (("engine", engine), ("status", status))
            expected = Order.objects.filter(status=status, engine=engine).count()
            assert samples[("orderdash_orders", labels)] == expected, labels
    for service in SERVICES:
        for outcome in Outcome.values:
            labels = (("outcome", outcome), ("service", service))
            expected = ServiceCall.objects.filter(service=service, outcome=outcome).count()
            assert samples[("orderdash_step_attempts_total", labels)] == expected, labels
    # What those counts say, so a collector reading nothing cannot pass by agreeing on 0.
    attempts = "orderdash_step_attempts_total"
    assert samples[(attempts, (("outcome", "error"), ("service", "inventory")))] == 2
    assert samples[(attempts, (("outcome", "rejected"), ("service", "payment")))] == 1
    assert samples[("orderdash_orders", (("engine", "temporal"), ("status", "queued")))] == 1
    assert samples[("orderdash_orders_in_flight", ())] == 0
    assert samples[("orderdash_worker_up", ())] == 1


def test_an_attempt_recorded_lost_that_answers_late_stays_counted_as_lost(client, catalogue):
    """Counters never go down: the late answer changes the ledger row, not the count."""
    order = create_order(
        {
            "product": catalogue["KB-01"],
            "quantity": 1,
            "customer_name": "Radia Perlman",
            "email": "radia@example.com",
            "address": "1 Spanning Tree",
        }
    )
    key = f"order-{order.pk}:charge"
    # Attempt 2 starts and finds attempt 1 without an answer: lost with its worker.
    record_lost_attempts(order.pk, "payment", "charge", before=2, idempotency_key=key)
    before = scrape(client)
    # Then attempt 1 answers after all, and its row says so.
    late = services.CallContext(
        order_id=order.pk,
        idempotency_key=key,
        attempt=1,
        started_at=timezone.now(),
        timeout_s=10,
        heartbeat=lambda: None,
        worker="4242@worker",
    )
    services.charge_payment(late, 2900)
    assert ServiceCall.objects.get(order=order, attempt=1).outcome == Outcome.OK
    after = scrape(client)

    attempts = "orderdash_step_attempts_total"
    lost, ok = ((attempts, (("outcome", o), ("service", "payment"))) for o in ("lost", "ok"))
    assert (before[lost], after[lost]) == (1, 1)
    assert (before[ok], after[ok]) == (0, 0)
    assert all(after[name] >= value for name, value in before.items() if name[0] == attempts)
    # One statement (a row changing between two reads would be counted twice), read from
    # an index alone.
    with CaptureQueriesContext(connection) as queries:
        attempts_by_service_and_outcome()
    (query,) = queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
        plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
    assert "USING COVERING INDEX call_outcomes" in plan, plan


TOKEN = "a-scrape-token-0123456789"
CASES = [
    # demo mode, METRICS_TOKEN, Authorization header, logged in → status, said
    (True, TOKEN, "", False, 200, "orderdash_orders"),
    (True, "", "", False, 200, "orderdash_orders"),
    (False, TOKEN, f"Bearer {TOKEN}", False, 200, "orderdash_orders"),
    (False, TOKEN, f"bearer {TOKEN}", False, 200, "orderdash_orders"),
    (False, TOKEN, "", False, 401, "needs the header 'Authorization: Bearer"),
    (False, TOKEN, "", True, 401, "needs the header 'Authorization: Bearer"),
    (False, TOKEN, f"Basic {TOKEN}", False, 401, "needs the header"),
    (False, TOKEN, "Bearer ", False, 401, "needs the header"),
    (False, TOKEN, "Bearer wrong-token", False, 403, "not this server's METRICS_TOKEN"),
    (False, TOKEN, f"Bearer {TOKEN}x", False, 403, "not this server's METRICS_TOKEN"),
    (False, "", "", False, 302, "/accounts/login/?next=/metrics"),
    (False, "", "Bearer anything", False, 302, "/accounts/login/?next=/metrics"),
    (False, "", "", True, 200, "orderdash_orders"),
]


@pytest.mark.parametrize(("demo", "token", "header", "logged_in", "status", "said"), CASES)
def test_who_may_read_metrics(
    client, settings, django_user_model, demo, token, header, logged_in, status, said
):
    settings.DEMO_MODE, settings.METRICS_TOKEN = demo, token
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nobody there: answers at once
    if logged_in:
        client.force_login(django_user_model.objects.create_user("vera", password="x" * 12))
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == status
    body = response.content.decode() + response.get("Location", "")
    assert said in body
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_only_answers_get(client):
    assert client.post("/metrics").status_code == 405


# The worker's own SDK metrics --------------------------------------------------------
def test_the_worker_serves_the_sdk_metrics_on_worker_metrics_port(temporal_server, tmp_path):
    port = free_port()
    env = throwaway_env(tmp_path, "sdkmetrics") | {
        "TEMPORAL_ADDRESS": temporal_server,
        "TEMPORAL_WORKFLOW_ID_PREFIX": f"sdkm{port}-",
        "WORKER_METRICS_PORT": str(port),
    }
    with LocalStack(env=env, log_dir=tmp_path) as stack:
        stack.manage("migrate", "--no-input", "-v0")
        stack.manage("seed_demo")
        stack.start_worker()
        wait_for_port(port, timeout=60)
        # One order through, so the activity and workflow metrics have samples too.
        stack.manage("place_order", "--product", "KB-01", "--quantity", "1", "--wait")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    served = set()
    for family in text_string_to_metric_families(text):
        served |= {sample.name for sample in family.samples}
    assert re.search(rf'task_queue="{env["TEMPORAL_TASK_QUEUE"]}"', text), text[:2000]
    assert "temporal_activity_execution_latency_bucket" in served
    # Every SDK metric the provisioned Grafana dashboard draws is one the worker serves.
    asked = dashboard_metrics("temporal_")
    assert asked and asked <= served, asked - served


def test_without_worker_metrics_port_the_worker_serves_no_metrics(settings):
    assert settings.WORKER_METRICS_PORT == 0  # unset in the tests' environment
    assert sdk_metrics_runtime("127.0.0.1", settings.WORKER_METRICS_PORT) is None


def test_a_metrics_port_already_taken_is_reported_and_the_worker_runs_without(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert sdk_metrics_runtime("127.0.0.1", port) is None
    assert "Temporal SDK metrics are off" in caplog.text
    assert "Address already in use" in caplog.text


@pytest.mark.parametrize("value", ["nine", "70000", "-1"])
def test_a_bad_worker_metrics_port_stops_the_process_at_start_with_a_clear_message(tmp_path, value):
    env = throwaway_env(tmp_path, "badport") | {"WORKER_METRICS_PORT": value}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "WORKER_METRICS_PORT must be" in result.stderr
