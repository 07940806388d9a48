"""Deploys stop processes with SIGTERM: nothing in hand is lost, and browsers move on."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from orderdash.stack import STOP_TIMEOUT, LocalStack, free_port, throwaway_env
from orders.models import Order, OrderStep
from orders.simulator.models import Charge, ServiceCall
from tests.topology.proxy import FailoverProxy

pytestmark = pytest.mark.topology


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.1)


def test_sigterm_to_a_worker_lets_the_payment_in_hand_finish_and_loses_no_attempt(
    temporal_server, tmp_path
):
    env = throwaway_env(tmp_path, "shutdown") | {
        "TEMPORAL_ADDRESS": temporal_server,
        "TEMPORAL_WORKFLOW_ID_PREFIX": f"stop{uuid.uuid4().hex[:8]}-",
    }
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))

    def rows(sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(database, timeout=20) as connection:
            return connection.execute(sql, params).fetchall()

    with LocalStack(env=env, log_dir=tmp_path) as stack:
        stack.manage("migrate", "--no-input", "-v0")
        stack.manage("seed_demo")
        stack.start_worker()
        # Three seconds per payment: well inside its timeout, long enough to stop the
        # worker in the middle of one.
        stack.manage("services", "set", "payment", "slow", "--latency-ms", "3000")
        stack.manage("place_order", "--product", "KB-01", "--quantity", "1")
        (order_id,) = rows(f"SELECT max(id) FROM {Order._meta.db_table}")[0]
        step_state = f"SELECT state FROM {OrderStep._meta.db_table} WHERE order_id = ? AND name = ?"
        wait_for(
            lambda: rows(step_state, order_id, "payment") == [("running",)],
            60,
            "the payment attempt running",
        )

        supervisor = stack.processes["worker"]
        supervisor.send_signal(signal.SIGTERM)
        # It exits by itself, once the attempt in hand has finished (not killed at the
        # stack's own stop timeout).
        assert supervisor.wait(timeout=25) == 0
        ledger = (
            f"SELECT attempt, outcome FROM {ServiceCall._meta.db_table}"
            " WHERE order_id = ? AND service = ?"
        )
        assert rows(ledger, order_id, "payment") == [(1, "ok")]
        stack.processes.pop("worker")

        # The next worker carries on from there: no second payment attempt, one charge.
        stack.manage("services", "set", "payment", "healthy")
        stack.start_worker()
        status = f"SELECT status FROM {Order._meta.db_table} WHERE id = ?"
        wait_for(lambda: rows(status, order_id) == [("completed",)], 60, "the order completed")
        assert rows(ledger, order_id, "payment") == [(1, "ok")]
        charges = f"SELECT count(*) FROM {Charge._meta.db_table} WHERE order_id = ?"
        assert rows(charges, order_id) == [(1,)]
        stack.manage("audit", "--order", str(order_id))


def test_sigterm_to_daphne_closes_its_sockets_and_htmx_reconnects_to_the_other_web(
    topology, logged_in
):
    web_2_port = int(topology.web_urls[1].rsplit(":", 1)[1])
    leaving_port = free_port()
    topology.start_web("web-leaving", port=leaving_port)
    with FailoverProxy([leaving_port, web_2_port]) as proxy:
        page = logged_in.new_page()
        with page.expect_websocket() as first:
            page.goto(proxy.url + "/")
        expect(page.locator("#system-status [data-worker]")).to_have_attribute("data-worker", "up")

        leaving = topology.processes.pop("web-leaving")
        # htmx reconnects only after an abnormal close (1006, 1011-1013), with backoff.
        with page.expect_websocket(timeout=20_000) as second:
            leaving.send_signal(signal.SIGTERM)
        assert first.value.is_closed()
        assert not second.value.is_closed()
        # And it exits by itself, well before a deploy's grace period runs out.
        try:
            assert leaving.wait(timeout=STOP_TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            leaving.kill()
            pytest.fail("daphne still running after SIGTERM:\n" + topology.log_tail("web-leaving"))

        # Live again, now through web-2: a switch flipped elsewhere shows on this page.
        sms = page.locator('#switches [data-service="sms"]')
        expect(sms).to_have_attribute("data-mode", "healthy")
        topology.manage("services", "set", "sms", "down")
        try:
            expect(sms).to_have_attribute("data-mode", "down")
        finally:
            topology.manage("services", "set", "sms", "healthy")
        page.close()
