"""A seeded history (`seed_demo --history N`): every status and engine, and it adds up."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.contract import OrderStatus, Step
from orders.history import HistoryError, sum_held, write_history
from orders.models import Action, Engine, OperatorAction, Order, OrderStep
from orders.simulator.models import Charge, Outcome, Product, Reservation, ServiceCall


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def history(db) -> None:
    seed("--history", "300")


def test_a_small_history_has_every_status_on_both_engines(history):
    assert Order.objects.count() == 300
    assert set(Order.objects.values_list("status", flat=True)) == set(OrderStatus.values)
    assert set(Order.objects.values_list("engine", flat=True)) == set(Engine.values)
    assert OrderStep.objects.count() == 300 * len(Step.values)


def test_a_history_has_successes_failures_and_attempts_lost_to_a_crash(history):
    outcomes = set(ServiceCall.objects.values_list("outcome", flat=True))
    assert outcomes == set(Outcome.values)
    assert ServiceCall.objects.filter(error__startswith="Process crashed").exists()
    assert Charge.objects.filter(refunded_at__isnull=False).exists()
    states = set(Reservation.objects.values_list("state", flat=True))
    assert states == set(Reservation.State.values)
    actions = set(OperatorAction.objects.values_list("action", flat=True))
    assert {Action.CANCEL, Action.APPROVE, Action.REJECT, Action.SWITCH} <= actions
    assert OperatorAction.objects.filter(accepted=False).exists()


def test_the_audit_passes_on_a_fresh_history(history):
    out = io.StringIO()
    call_command("audit", stdout=out, stderr=io.StringIO())  # exit status 0: no SystemExit
    assert out.getvalue().count("effects add up") == 300


def test_the_catalogue_holds_what_the_history_still_reserves(history):
    for product in Product.objects.all():
        assert product.reserved == sum_held(product)
        assert product.available >= 0


def test_a_second_history_follows_the_first(history):
    seed("--history", "50")
    assert Order.objects.count() == 350
    assert Order.objects.order_by("-id").first().pk == 350
    # New rows after the history get the next numbers, not one already taken.
    product = Product.objects.first()
    order = Order.objects.create(
        customer_name="After",
        email="a@example.com",
        address="1 Way",
        product=product,
        quantity=1,
        amount_cents=product.price_cents,
    )
    assert order.pk == 351


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("0", "between 1 and 1,000,000 orders; got 0"),
        ("-5", "between 1 and 1,000,000 orders; got -5"),
        ("5000000", "between 1 and 1,000,000 orders; got 5,000,000"),
    ],
)
def test_it_refuses_a_bad_history_size_and_writes_nothing(db, size, message):
    with pytest.raises(CommandError, match=message):
        seed("--history", size)
    assert not Order.objects.exists()
    assert not Product.objects.exists()


def test_it_refuses_a_history_size_that_is_not_a_number(db):
    with pytest.raises(CommandError, match="invalid int value: 'lots'"):
        seed("--history", "lots")


def test_a_history_needs_the_catalogue_first(db):
    with pytest.raises(HistoryError, match="no catalogue"):
        write_history(10)
