"""Merging the database with what Temporal said: which source wins for each step.

The activity writes each attempt's end to the database a moment before Temporal hears of
it, so describe can lag behind; these pin down that the page never steps backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.template.loader import render_to_string

from orders.contract import StepState
from orders.models import Order, OrderStep
from orders.placement import create_order
from orders.progress import Source, TemporalView, load_orders, snapshot_of
from orders.simulator.models import Charge, Outcome, Reservation, ServiceCall
from orders.step_state import PendingAttempt
from orders.temporal import WorkflowState

NEXT_TRY = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
def order(running_order) -> Order:
    return running_order


def record_inventory(order: Order, state: str, attempts: int, error: str = "") -> None:
    OrderStep.objects.filter(order=order, name="inventory").update(
        state=state, attempts=attempts, last_error=error
    )


def describe(attempt: int, *, running: bool, next_at: datetime | None = None, failure: str = ""):
    pending = PendingAttempt(
        step="inventory",
        attempt=attempt,
        last_failure=failure,
        next_attempt_at=next_at,
        running=running,
    )
    return TemporalView(state=WorkflowState(status="RUNNING", pending=[pending]))


def inventory(order: Order, temporal: TemporalView | None):
    snapshot = snapshot_of(load_orders([order.pk])[order.pk], temporal, worker_up=True)
    return snapshot, next(step for step in snapshot.steps if step.name == "inventory")


@pytest.mark.django_db(transaction=True)
def test_a_failed_attempt_shows_the_next_one_before_temporal_hears_of_it(order):
    record_inventory(order, StepState.RETRYING, 1, "Inventory Service Unavailable")
    # Describe still shows attempt 1 running: Temporal has not heard it failed.
    snapshot, step = inventory(order, describe(1, running=True))
    assert (step.state, step.attempt) == (StepState.RETRYING, 2)
    assert step.last_error == "Inventory Service Unavailable"
    assert step.next_retry_at is None
    assert snapshot.awaits_schedule  # the hub asks Temporal again for the schedule
    html = render_to_string("orders/partials/order_detail.html", {"snapshot": snapshot})
    assert 'data-step="inventory" data-state="retrying" data-attempt="2"' in html
    assert "as soon as Temporal schedules it" in html


@pytest.mark.django_db(transaction=True)
def test_temporal_schedule_fills_in_the_countdown(order):
    record_inventory(order, StepState.RETRYING, 1, "Inventory Service Unavailable")
    snapshot, step = inventory(order, describe(2, running=False, next_at=NEXT_TRY, failure="x"))
    assert (step.state, step.attempt, step.next_retry_at) == (StepState.RETRYING, 2, NEXT_TRY)
    assert step.last_error == "x"
    assert not snapshot.awaits_schedule
    html = render_to_string("orders/partials/order_detail.html", {"snapshot": snapshot})
    assert f'data-next-retry="{NEXT_TRY.isoformat()}"' in html


@pytest.mark.django_db(transaction=True)
def test_a_started_attempt_is_not_sent_back_to_waiting_by_a_stale_describe(order):
    record_inventory(order, StepState.RUNNING, 2, "Inventory Service Unavailable")
    _, step = inventory(order, describe(2, running=False, next_at=NEXT_TRY))
    assert (step.state, step.attempt, step.next_retry_at) == (StepState.RUNNING, 2, None)


@pytest.mark.django_db(transaction=True)
def test_a_timeout_the_worker_never_reported_comes_from_describe(order):
    record_inventory(order, StepState.RUNNING, 1)
    timeout = "activity StartToClose timeout"
    _, step = inventory(order, describe(2, running=False, next_at=NEXT_TRY, failure=timeout))
    assert (step.state, step.attempt, step.last_error) == (StepState.RETRYING, 2, timeout)


@pytest.mark.django_db(transaction=True)
def test_a_completed_step_ignores_describe(order):
    record_inventory(order, StepState.COMPLETED, 3)
    _, step = inventory(order, describe(3, running=True))
    assert (step.state, step.attempt) == (StepState.COMPLETED, 3)


@pytest.mark.django_db(transaction=True)
def test_database_alone_when_temporal_is_unreachable(order):
    record_inventory(order, StepState.RETRYING, 2, "Inventory Service Unavailable")
    snapshot, step = inventory(order, TemporalView(reachable=False))
    assert snapshot.source == Source.NO_TEMPORAL
    assert (step.state, step.attempt) == (StepState.RETRYING, 3)
    assert not snapshot.awaits_schedule  # nobody to ask until the periodic round
    html = render_to_string("orders/partials/order_detail.html", {"snapshot": snapshot})
    assert "unknown while Temporal is unreachable" in html


@pytest.mark.django_db(transaction=True)
def test_the_order_list_announces_the_same_attempt_as_the_order_page(order, client):
    record_inventory(order, StepState.RETRYING, 1, "Inventory Service Unavailable")
    html = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-step="inventory" data-state="retrying" data-attempt="2"' in html


@pytest.mark.django_db(transaction=True)
def test_loading_many_orders_costs_the_same_queries_as_one(
    order, catalogue, django_assert_num_queries
):
    others = [
        create_order(
            {
                "product": catalogue["KB-01"],
                "quantity": 1,
                "customer_name": f"Customer {n}",
                "email": f"c{n}@example.com",
                "address": "2 Harbor Road",
            }
        )
        for n in range(9)
    ]
    for other in [order, *others]:
        ServiceCall.objects.create(
            order=other,
            service="inventory",
            operation="reserve",
            attempt=1,
            outcome=Outcome.OK,
            idempotency_key=f"k-{other.pk}",
        )
    with django_assert_num_queries(8):
        one = load_orders([order.pk])
    with django_assert_num_queries(8):
        many = load_orders([order.pk, *(o.pk for o in others)])
    assert len(one) == 1 and len(many) == 10
    assert [c.service for c in many[order.pk].calls] == ["inventory"]
    assert many[order.pk].audit.services[0].line.startswith("inventory: 1 attempt")
    assert snapshot_of(one[order.pk], None, worker_up=True).source == Source.LIVE


@pytest.mark.django_db(transaction=True)
def test_a_retry_due_while_no_worker_polls_says_it_waits_for_one(order):
    record_inventory(order, StepState.RETRYING, 1, "Inventory Service Unavailable")
    snapshot = snapshot_of(
        load_orders([order.pk])[order.pk], describe(2, running=False), worker_up=False
    )
    step = next(step for step in snapshot.steps if step.name == "inventory")
    assert (step.state, step.attempt, step.next_retry_at) == (StepState.RETRYING, 2, None)
    html = render_to_string("orders/partials/order_detail.html", {"snapshot": snapshot})
    assert 'next try <span class="countdown">when a worker is back</span>' in html


@pytest.mark.django_db(transaction=True)
def test_a_workflow_terminated_in_temporal_says_so_on_the_page(order):
    record_inventory(order, StepState.RETRYING, 2, "Inventory Service Unavailable")
    terminated = TemporalView(state=WorkflowState(status="TERMINATED", pending=[]))
    snapshot = snapshot_of(load_orders([order.pk])[order.pk], terminated, worker_up=True)
    assert snapshot.source == Source.ENDED
    assert not snapshot.awaits_schedule  # nothing to wait for: no retry is coming
    html = render_to_string("orders/partials/order_detail.html", {"snapshot": snapshot})
    assert f"Temporal reports workflow {order.workflow_id} as terminated" in html
    assert "as soon as Temporal schedules it" not in html


@pytest.mark.django_db(transaction=True)
def test_effects_are_read_again_only_when_their_services_ledger_changed(
    order, django_assert_num_queries
):
    def answer(service: str, operation: str, attempt: int, outcome: str) -> None:
        ServiceCall.objects.update_or_create(
            order=order,
            service=service,
            operation=operation,
            attempt=attempt,
            defaults={"outcome": outcome, "idempotency_key": f"k-{order.pk}-{operation}"},
        )

    def reserve() -> None:
        Reservation.objects.create(key="r", order=order, product=order.product, quantity=1)

    cache: dict = {}
    answer("payment", "charge", 1, Outcome.ERROR)
    steps = [
        # (what happens first, queries, (reservations, charges) the audit sees)
        (lambda: None, 8, (0, 0)),  # the first read fills the cache
        (lambda: record_inventory(order, StepState.RUNNING, 2), 4, (0, 0)),  # no answer: cached
        # An effect before its ledger row: not seen until the row comes.
        (
            lambda: Charge.objects.create(order=order, key="c", payment_id="P", amount_cents=1),
            4,
            (0, 0),
        ),
        # The payment ledger moved: the charges are read again, and nothing else.
        (lambda: answer("payment", "charge", 2, Outcome.OK), 5, (0, 1)),
        (lambda: answer("payment", "charge", 2, Outcome.REPLAYED), 5, (0, 1)),  # an outcome
        (reserve, 4, (0, 1)),
        (lambda: answer("inventory", "reserve", 1, Outcome.OK), 5, (1, 1)),
        # Email and SMS leave one kind of effect (messages): one query for either.
        (lambda: answer("sms", "send", 1, Outcome.ERROR), 5, (1, 1)),
    ]
    for happen, queries, (reservations, charges) in steps:
        happen()
        with django_assert_num_queries(queries):
            record = load_orders([order.pk], cache)[order.pk]
        effects = record.audit.effects
        assert (len(effects.reservations), len(effects.charges)) == (reservations, charges)
