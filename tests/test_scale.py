"""At scale: the audit's query count and the admin's do not grow with the orders, and the
audit's three forms (one order, every order, the admin's filter) agree on every problem."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orders.admin import EffectsFilter
from orders.audit import audit_order, audit_orders, does_not_add_up, stock_out_of_balance
from orders.contract import OrderStatus
from orders.models import Engine, Order
from orders.simulator.models import Charge, Reservation, Shipment

CHANGELIST = reverse("admin:orders_order_changelist")
LEDGER = reverse("admin:simulator_servicecall_changelist")


def seed(n: int) -> None:
    call_command("seed_demo", "--history", str(n), stdout=io.StringIO(), stderr=io.StringIO())


def queries_of(run) -> int:
    with CaptureQueriesContext(connection) as queries:
        run()
    return len(queries)


def audit_command() -> str:
    out = io.StringIO()
    with contextlib.suppress(SystemExit):  # exit 1 is a verdict, not an error here
        call_command("audit", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def nth(status: str, engine: str = Engine.TEMPORAL, n: int = 0) -> Order:
    return Order.objects.filter(status=status, engine=engine).order_by("pk")[n]


def break_one_of_each_kind() -> dict[int, str]:
    """One order per problem the audit knows, each broken the way it happens for real."""
    stale = timezone.now() - timedelta(hours=2)
    broken = {}
    twice = nth(OrderStatus.COMPLETED, n=0)
    charge = Charge.objects.get(order=twice)
    Charge.objects.create(
        key=charge.key + ":again", order=twice, payment_id="PAY-AGAIN", amount_cents=1
    )
    broken[twice.pk] = "charged 2 times"
    unshipped = nth(OrderStatus.COMPLETED, n=1)
    Shipment.objects.filter(order=unshipped).update(cancelled_at=timezone.now())
    broken[unshipped.pk] = "completed without a shipment"
    held = nth(OrderStatus.COMPLETED, n=2)
    Reservation.objects.filter(order=held).update(state=Reservation.State.RESERVED)
    broken[held.pk] = "stock reserved but never committed"
    unrefunded = nth(OrderStatus.CANCELLED)
    Reservation.objects.filter(order=unrefunded).update(state=Reservation.State.COMMITTED)
    broken[unrefunded.pk] = "stock never released"
    lost = nth(OrderStatus.COMPLETED, Engine.PLAIN)
    Order.objects.filter(pk=lost.pk).update(status=OrderStatus.RUNNING, updated_at=stale)
    broken[lost.pk] = "lost: charged and shipped, never confirmed"
    unstarted = nth(OrderStatus.RUNNING)
    Order.objects.filter(pk=unstarted.pk).update(workflow_id="")
    broken[unstarted.pk] = "never started in Temporal, and not queued to start"
    late = nth(OrderStatus.QUEUED)
    Order.objects.filter(pk=late.pk).update(created_at=stale)
    broken[late.pk] = "queued for 120 min, past the 10 min limit"
    return broken


@pytest.fixture
def broken_history(db, settings) -> dict[int, str]:
    settings.QUEUED_LIMIT_SECONDS = 600
    seed(300)
    return break_one_of_each_kind()


def test_the_three_forms_of_the_audit_agree_on_every_kind_of_problem(broken_history):
    one_by_one = {o.pk: audit_order(o) for o in Order.objects.order_by("pk")}
    assert {pk: "; ".join(a.problems) for pk, a in one_by_one.items() if a.problems} == (
        broken_history
    )
    in_bulk = list(audit_orders(Order.objects.all()))
    assert [a.order.pk for a in in_bulk] == sorted(one_by_one)
    for audit in in_bulk:
        alone = one_by_one[audit.order.pk]
        assert (audit.problems, [s.line for s in audit.services]) == (
            alone.problems,
            [s.line for s in alone.services],
        )
    in_sql = set(Order.objects.filter(does_not_add_up()).values_list("pk", flat=True))
    assert in_sql == set(broken_history)


def test_the_audit_command_reports_each_broken_order_and_exits_1(broken_history):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("audit", stdout=out, stderr=err)
    assert exit_.value.code == 1
    broken = len(broken_history) + len(stock_out_of_balance())
    assert err.getvalue() == f"{broken} order(s) or product(s) whose effects don't add up.\n"
    for pk, problem in broken_history.items():
        assert f"Order #{pk} (" in out.getvalue()
        assert f"): {problem}\n" in out.getvalue()


def test_the_admins_exactly_once_filter_lists_what_the_audit_finds(admin_client, broken_history):
    broken = admin_client.get(CHANGELIST, {"effects": "broken"})
    assert {o.pk for o in broken.context["cl"].result_list} == set(broken_history)
    fine = admin_client.get(CHANGELIST, {"effects": "ok", "status__exact": "completed"})
    listed = {o.pk for o in fine.context["cl"].result_list}
    assert listed and not listed & set(broken_history)
    assert fine.context["cl"].result_count == (
        Order.objects.filter(status=OrderStatus.COMPLETED).count() - 3
    )


def test_the_exactly_once_filter_stays_in_sql_when_too_many_orders_are_broken(
    admin_client, broken_history, monkeypatch
):
    monkeypatch.setattr(EffectsFilter, "LISTED", 2)  # fewer than the broken ones
    broken = admin_client.get(CHANGELIST, {"effects": "broken"})
    assert {o.pk for o in broken.context["cl"].result_list} == set(broken_history)
    fine = admin_client.get(CHANGELIST, {"effects": "ok"})
    assert fine.context["cl"].result_count == Order.objects.count() - len(broken_history)


def test_the_audit_reads_as_many_queries_for_500_orders_as_for_50(db):
    seed(50)
    for_50 = queries_of(audit_command)
    seed(450)
    assert Order.objects.count() == 500
    assert queries_of(audit_command) == for_50 <= 10


@pytest.mark.parametrize(
    "url",
    [
        CHANGELIST,
        CHANGELIST + "?effects=broken",
        CHANGELIST + "?effects=ok",
        CHANGELIST + "?status__exact=failed&engine__exact=temporal",
        LEDGER,
        LEDGER + "?outcome__exact=error&operation__exact=charge",
    ],
)
def test_an_admin_list_reads_as_many_queries_for_400_orders_as_for_40(admin_client, url):
    seed(40)
    assert admin_client.get(url).status_code == 200
    for_40 = queries_of(lambda: admin_client.get(url))
    seed(360)
    assert queries_of(lambda: admin_client.get(url)) == for_40


def test_an_orders_admin_page_offers_no_drop_down_of_every_order(admin_client):
    seed(300)
    order = nth(OrderStatus.COMPLETED, n=5)
    url = reverse("admin:orders_order_change", args=[order.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.content.count(b"<option") < 50  # the products, the statuses: not orders
    assert b'name="compare_with"' in page.content  # an order number to type instead
    for_300 = queries_of(lambda: admin_client.get(url))
    seed(300)
    assert queries_of(lambda: admin_client.get(url)) == for_300
