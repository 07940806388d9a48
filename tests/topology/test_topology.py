"""Two web processes and two workers on PostgreSQL and Redis, as docker compose runs them."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import ConsoleMessage, Page, WebSocket, expect

from tests.browser import submit_order_form
from tests.topology.conftest import DOTENV

pytestmark = pytest.mark.topology

# A batch of orders placed at once (queued, as when Temporal is slow to answer): the two
# workers' starters start them and the two workers share the task queue.
PLACE_BATCH = """
from orders.placement import create_order
from orders.simulator.models import Product
product = Product.objects.get(sku="CB-04")
for n in range({count}):
    create_order(dict(product=product, quantity=1, customer_name=f"Batch {{n}}",
                      email="batch@example.com", address="1 Batch Road"))
"""
FINISHED = ("completed", "completed_with_warnings", "failed", "cancelled", "rejected", "stopped")


class Frames:
    """Every websocket frame a page receives, by socket."""

    def __init__(self, page: Page) -> None:
        self.by_socket: dict[str, list[str]] = {}
        self.opened = 0
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        self.opened += 1
        frames = self.by_socket.setdefault(socket.url, [])
        socket.on("framereceived", lambda payload: frames.append(str(payload)))

    def carrying(self, marker: str) -> list[str]:
        return [frame for frames in self.by_socket.values() for frame in frames if marker in frame]


def csp_violations(page: Page, into: list[str]) -> None:
    """Collect what Chromium refused under the content security policy ("Refused to
    load/execute/apply … because it violates the following Content Security Policy …")."""

    def heard(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            into.append(message.text)

    page.on("console", heard)


def test_an_order_placed_on_web_1_is_seen_live_once_per_fragment_on_web_2(topology, logged_in):
    web_1, web_2 = topology.web_urls
    topology.manage("services", "set", "payment", "flaky", "--failures", "3")
    violations: list[str] = []
    board = logged_in.new_page()
    csp_violations(board, violations)
    response = board.goto(web_2 + "/")
    # DEBUG off: hashed static names from collectstatic, under the content security policy.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    stylesheet = board.locator("link[rel=stylesheet]").get_attribute("href")
    assert re.fullmatch(r"/static/orders/orderdash\.[0-9a-f]{12}\.css", stylesheet), stylesheet
    assert board.request.get(web_2 + stylesheet).ok
    expect(board.locator("#system-status [data-worker]")).to_have_attribute("data-worker", "up")

    placing = logged_in.new_page()
    csp_violations(placing, violations)
    placing.goto(web_1 + "/")
    placed = submit_order_form(placing)
    number = placed.inner_text().lstrip("#")

    # One page on the order per web process: each hub sends to its own sockets only.
    watchers = {}
    for url in (web_1, web_2):
        page = logged_in.new_page()
        csp_violations(page, violations)
        watchers[url] = (page, Frames(page))
        page.goto(f"{url}/orders/{number}/")

    expect(board.locator(f"#order-{number}")).to_have_attribute(
        "data-order-status", "completed", timeout=60_000
    )
    for page, _ in watchers.values():
        order = page.locator(f"#order-{number}")
        expect(order).to_have_attribute("data-order-status", "completed", timeout=60_000)
        expect(order.locator('[data-step="payment"][data-state]')).to_have_attribute(
            "data-attempt", "4"
        )
    for url, (_, frames) in watchers.items():
        fragments = frames.carrying(f'id="order-{number}"')
        # Three retries (7 s of backoff), then the rest of the flow: several different
        # pictures, each once.
        assert len(fragments) >= 3, (url, len(fragments))
        repeated = {html[:80]: n for html, n in Counter(fragments).items() if n > 1}
        assert not repeated, f"{url}: fragments that reached one socket more than once"
    # The admin, its scripts and styles, under the same policy.
    admin = logged_in.new_page()
    csp_violations(admin, violations)
    admin.goto(f"{web_1}/admin/orders/order/{number}/change/")
    expect(admin.locator("#content h1")).to_be_visible()
    admin.goto(f"{web_1}/admin/orders/order/")
    expect(admin.locator("#result_list")).to_contain_text(number)
    assert violations == []

    # Quiet sockets stay open past the channel layer's 5 s blocking read from Redis.
    opened = {url: frames.opened for url, (_, frames) in watchers.items()}
    board.wait_for_timeout(7_000)
    assert {url: frames.opened for url, (_, frames) in watchers.items()} == opened
    for name in ("web-1", "web-2"):
        assert "Traceback" not in topology.log(name), topology.log_tail(name, 40)
    topology.manage("services", "set", "payment", "healthy")


def order_statuses(topology, first_id: int) -> Counter:
    rows = topology.query("SELECT status FROM orders_order WHERE id > %s", first_id)
    return Counter(status for (status,) in rows)


def test_a_worker_killed_mid_batch_leaves_every_order_finished_by_the_other(topology):
    count = 24
    topology.manage("services", "set", "shipping", "slow", "--latency-ms", "800")
    (first_id,) = topology.query("SELECT coalesce(max(id), 0) FROM orders_order")[0]
    topology.manage("shell", "--no-imports", "-c", PLACE_BATCH.format(count=count))

    deadline = time.monotonic() + 60
    while order_statuses(topology, first_id)["completed"] < 2:
        assert time.monotonic() < deadline, order_statuses(topology, first_id)
        time.sleep(0.1)
    in_flight = count - order_statuses(topology, first_id)["completed"]
    assert in_flight > count // 2, "the batch should still be under way when the worker dies"
    topology.kill_process("worker-1")

    deadline = time.monotonic() + 120
    while sum(order_statuses(topology, first_id)[status] for status in FINISHED) < count:
        assert time.monotonic() < deadline, order_statuses(topology, first_id)
        time.sleep(0.5)
    assert order_statuses(topology, first_id) == Counter(completed=count)
    # One charge, one reservation and one shipment per order, whatever was interrupted.
    topology.manage("audit")
    topology.manage("services", "set", "shipping", "healthy")
    topology.start_worker("worker-1")  # back to two for whatever runs next


def test_a_burst_of_requests_borrows_pooled_connections_and_keeps_none_behind(topology):
    """Each web process borrows PostgreSQL connections from its pool and hands them back.

    Under daphne each request's sync code runs in a thread of its own: a connection kept
    past the request outlived the thread, and a burst of requests used to leave one web
    process holding dozens until PostgreSQL refused new clients; one closed per request
    cost PostgreSQL a new backend process for every request instead."""
    count_connections = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid != pg_backend_pid()"
    )
    # Every connection ever made to the database (the test's own reads included).
    sessions = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    (before,) = topology.query(count_connections)[0]
    (sessions_before,) = topology.query(sessions)[0]
    metrics = urllib.request.Request(
        f"{topology.web_urls[0]}/metrics",
        headers={"Authorization": f"Bearer {DOTENV['METRICS_TOKEN']}"},
    )

    def scrape(_: int) -> int:  # reads the database, as every page does
        with urllib.request.urlopen(metrics, timeout=30) as response:
            response.read()
            return response.status

    peak, reads = before, 0
    with ThreadPoolExecutor(max_workers=8) as clients:
        scrapes = [clients.submit(scrape, n) for n in range(300)]
        while not all(scrape.done() for scrape in scrapes):
            peak = max(peak, topology.query(count_connections)[0][0])
            reads += 1
            time.sleep(0.05)
    assert [scrape.result() for scrape in scrapes] == [200] * 300
    # At most one connection per request in flight (8 clients), and a few for the hub.
    assert peak - before <= 12, f"{before} connections before the burst, {peak} during it"
    (sessions_after,) = topology.query(sessions)[0]
    # Without the pool, one new connection (a backend process) per request: 300 more.
    new_connections = sessions_after - sessions_before - reads - 1
    assert new_connections <= 12, f"{new_connections} new connections for 300 requests"
