"""The order page's timeline: every attempt on one time axis, with the backoff between."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync

from orders.contract import OrderStatus, StepState
from orders.models import Order
from orders.placement import place_order
from orders.progress import build_snapshot
from orders.render import render_order
from orders.simulator.models import Outcome, ServiceCall
from orders.step_state import StepView
from orders.timeline import build_timeline
from tests.conftest import set_switch

ATTEMPT = re.compile(r'data-attempt="(\d+)" data-step="(\w+)" data-outcome="(\w+)"')


def wait_for_final(order: Order, timeout: float = 30) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status in OrderStatus.final():
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {order.pk} still {order.status} after {timeout}s")


def gaps_in_lane(html: str, lane: str) -> list[float]:
    section = html.split(f'data-lane="{lane}"', 1)[1].split("tl-label", 2)[1]
    return [float(seconds) for seconds in re.findall(r'data-gap="([\d.]+)"', section)]


def test_it_shows_inventory_failing_twice_waiting_1s_then_2s_then_succeeding(
    live_temporal, catalogue
):
    set_switch("inventory", "flaky", failures=2)
    order = place_order(
        {
            "product": catalogue["KB-01"],
            "quantity": 1,
            "customer_name": "Ada Lovelace",
            "email": "ada@example.com",
            "address": "12 Analytical Row",
        }
    )
    assert wait_for_final(order).status == OrderStatus.COMPLETED

    snapshot = async_to_sync(build_snapshot)(order.pk)
    html = render_order(snapshot, "up", ledger_cache={})

    assert 'data-timeline="true"' in html
    inventory = [(a, o) for a, step, o in ATTEMPT.findall(html) if step == "inventory"]
    assert inventory == [("1", "error"), ("2", "error"), ("3", "ok")]
    steps_drawn = {step for _, step, _ in ATTEMPT.findall(html)}
    assert steps_drawn == {"inventory", "payment", "commit", "shipping", "email", "sms"}
    # Temporal's backoff: 1 s, then 2 s (plus the moment it takes to dispatch the attempt).
    first, second = gaps_in_lane(html, "inventory")
    assert 0.9 <= first < 1.9, first
    assert 1.9 <= second < 3.5, second
    assert gaps_in_lane(html, "payment") == []  # one attempt, no wait


def call(service: str, operation: str, attempt: int, outcome: str, at_s: float) -> ServiceCall:
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    return ServiceCall(
        service=service,
        operation=operation,
        attempt=attempt,
        outcome=outcome,
        duration_ms=100,
        started_at=origin + timedelta(seconds=at_s),
        created_at=origin + timedelta(seconds=at_s, milliseconds=100),
    )


def test_undoing_gets_lanes_of_its_own_after_the_flow():
    calls = [
        call("inventory", "reserve", 1, Outcome.OK, 0),
        call("payment", "charge", 1, Outcome.REJECTED, 0.2),
        call("inventory", "release", 1, Outcome.ERROR, 0.4),
        call("inventory", "release", 2, Outcome.OK, 1.5),
    ]
    timeline = build_timeline(calls)
    assert [(lane.label, lane.compensation) for lane in timeline.lanes] == [
        ("Reserve inventory", False),
        ("Charge payment", False),
        ("Undo: release stock", True),
    ]
    undo = timeline.lanes[2]
    assert [round(gap.seconds, 2) for gap in undo.gaps] == [1.0]
    assert undo.attempts[1].left == round(100 * 1.5 / 1.6, 2)
    assert timeline.span_s == 1.6


def test_a_retry_temporal_has_scheduled_is_drawn_as_a_wait_ahead():
    calls = [call("shipping", "ship", 1, Outcome.ERROR, 0)]
    retrying = StepView(
        "shipping",
        StepState.RETRYING,
        2,
        next_retry_at=datetime(2026, 1, 1, 0, 0, 1, 100_000),  # Temporal's naive UTC
    )
    timeline = build_timeline(calls, [retrying])
    (gap,) = timeline.lanes[0].gaps
    assert gap.scheduled and round(gap.seconds, 2) == 1.0
    assert timeline.span_s == 1.1


def test_an_order_no_service_has_seen_has_no_timeline_yet():
    assert build_timeline([]) is None
