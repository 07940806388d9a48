"""The chaos run: a short real one (dev server restarted, workers killed), its arguments,
and its scoreboard's verdict on crafted database states."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from orderdash.stack import free_port
from orders.chaos import ChaosDriver, current_run, open_run, request_stop, score, score_run
from orders.models import Action, ChaosRun, Engine, OperatorAction, Order
from orders.placement import create_order
from orders.simulator.models import Charge, Mode, Product, Reservation, ServiceSwitch, Shipment
from tests.conftest import set_switch


# A minute of chaos, then up to four to settle on a loaded machine: past the default limit.
@pytest.mark.timeout(420)
@pytest.mark.django_db(transaction=True)
def test_a_short_chaos_run_loses_doubles_and_strands_nothing_in_the_temporal_lane(
    catalogue, settings, workflow_id_prefix, tmp_path
):
    settings.VAR_DIR = tmp_path  # the own stack's Temporal file and logs
    # Through the fixture, so the own stack's address and queue are undone afterwards.
    settings.TEMPORAL_ADDRESS = settings.TEMPORAL_ADDRESS
    settings.TEMPORAL_TASK_QUEUE = settings.TEMPORAL_TASK_QUEUE
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "chaos",
        *("--orders", "20", "--minutes", "1", "--seed", "2024"),
        *("--own-stack", "--temporal-restarts", "1", "--settle-minutes", "4"),
        stdout=out,
        stderr=err,
    )  # returns: exit status 0, the Temporal lane kept every promise
    report = out.getvalue()
    assert "Temporal lane: nothing lost, doubled or stranded." in report, report + err.getvalue()

    run = ChaosRun.objects.get()
    board = score_run(run)
    temporal, plain = board.engines[Engine.TEMPORAL], board.engines[Engine.PLAIN]
    assert (temporal.placed, plain.placed) == (20, 20)
    assert temporal.completed + temporal.completed_with_warnings + temporal.failed == 20
    assert (temporal.lost, temporal.charged_twice, temporal.charge_stranded, temporal.stock) == (
        0,
        0,
        0,
        0,
    )
    assert (run.state, run.temporal_restarts_done) == ("finished", 1)
    assert run.switch_flips > 0
    # Every flip went through the switch record, under the run's name, and it healed them.
    flips = OperatorAction.objects.filter(action=Action.SWITCH, actor=run.actor)
    assert flips.count() >= run.switch_flips
    assert set(ServiceSwitch.objects.values_list("mode", flat=True)) == {Mode.HEALTHY}
    assert "placed" in report and "lost" in report and "charged twice" in report


BAD_ARGUMENTS = [
    ([], "the following arguments are required: --orders, --minutes"),
    (["--orders", "0", "--minutes", "1"], "--orders: 0 is not between 1 and 2000"),
    (["--orders", "-5", "--minutes", "1"], "--orders: -5 is not between 1 and 2000"),
    (["--orders", "2001", "--minutes", "1"], "--orders: 2001 is not between 1 and 2000"),
    (["--orders", "ten", "--minutes", "1"], "--orders: 'ten' is not a whole number"),
    (["--orders", "٣", "--minutes", "1"], "--orders: '٣' is not a whole number"),
    (["--orders", "5", "--minutes", "0"], "--minutes: 0 is not between 1 and 240"),
    (["--orders", "5", "--minutes", "1.5"], "--minutes: '1.5' is not a whole number"),
    (["--orders", "5", "--minutes", "1", "--seed", "-1"], "--seed: -1 is not between"),
    (["--orders", "5", "--minutes", "1", "--settle-minutes", "0"], "--settle-minutes: 0 is"),
    (
        ["--orders", "5", "--minutes", "1", "--own-stack", "--temporal-restarts", "21"],
        "--temporal-restarts: 21 is not between 0 and 20",
    ),
    (
        ["--orders", "5", "--minutes", "1", "--temporal-restarts", "2"],
        "--temporal-restarts needs --own-stack",
    ),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS)
def test_bad_arguments_say_what_is_wrong_and_change_nothing(arguments, message, catalogue):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("chaos", *arguments, stdout=io.StringIO())
    assert not ChaosRun.objects.exists()
    assert not OperatorAction.objects.exists()


def test_a_run_without_a_worker_to_run_the_orders_is_refused(catalogue, settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"  # nothing listens: no worker
    with pytest.raises(CommandError, match="No worker polls task queue"):
        call_command("chaos", "--orders", "3", "--minutes", "1", stdout=io.StringIO())
    assert not ChaosRun.objects.exists()


def test_a_second_run_is_refused_while_one_is_under_way(catalogue):
    first = open_run(orders=5, minutes=1, actor="olga")
    with pytest.raises(CommandError, match=f"Chaos run #{first.pk} is under way"):
        call_command("chaos", "--orders", "3", "--minutes", "1", stdout=io.StringIO())
    assert ChaosRun.objects.count() == 1


def test_a_run_whose_process_went_away_is_marked_so_and_its_switches_healed(catalogue):
    run = open_run(orders=5, minutes=1, actor="olga")
    set_switch("payment", "down")
    ChaosRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert current_run().state == "interrupted"
    assert ServiceSwitch.objects.get(service="payment").mode == "healthy"


def test_stopping_a_run_heals_every_switch_and_ends_it_with_a_scoreboard(catalogue):
    run = open_run(orders=50, minutes=10, actor="olga", seed=3)
    set_switch("shipping", "down")
    assert request_stop(run, "ada")
    assert set(ServiceSwitch.objects.values_list("mode", flat=True)) == {Mode.HEALTHY}
    board = ChaosDriver(run, settle_seconds=1).run()  # sees the stop before placing anything
    run.refresh_from_db()
    assert (run.state, run.stop_requested_by) == ("finished", "ada")
    assert run.note.startswith("Stopped by ada.")
    assert board.engines[Engine.TEMPORAL].placed == 0
    assert not request_stop(run, "ada")  # finished: nothing to stop


# --- the scoreboard's checks on crafted database states ----------------------------------


def _order(engine: str, status: str) -> Order:
    order = create_order(
        {
            "product": Product.objects.get(sku="KB-01"),
            "quantity": 1,
            "customer_name": "Crafted Carol",
            "email": "carol@example.com",
            "address": "3 Fixture Lane",
            "engine": engine,
        }
    )
    Order.objects.filter(pk=order.pk).update(status=status, workflow_id=f"order-{order.pk}")
    order.refresh_from_db()
    return order


def _reserve(order: Order, state: str, key: str = "") -> None:
    product = order.product
    Reservation.objects.create(
        key=key or f"res-{order.pk}", order=order, product=product, quantity=1, state=state
    )
    if state == Reservation.State.RESERVED:
        Product.objects.filter(pk=product.pk).update(reserved=product.reserved + 1)


def _charge(order: Order, key: str = "", refunded: bool = False) -> None:
    Charge.objects.create(
        key=key or f"pay-{order.pk}",
        order=order,
        payment_id=f"PAY-{key or order.pk}",
        amount_cents=order.amount_cents,
        refunded_at=timezone.now() if refunded else None,
    )


def _ship(order: Order) -> None:
    Shipment.objects.create(key=f"ship-{order.pk}", order=order, tracking_number=f"T{order.pk}")


def completed_cleanly() -> Order:
    order = _order(Engine.TEMPORAL, "completed")
    _reserve(order, Reservation.State.COMMITTED)
    _charge(order)
    _ship(order)
    return order


def charged_twice() -> Order:
    order = completed_cleanly()
    _charge(order, key=f"pay-again-{order.pk}")
    return order


def failed_and_compensated() -> Order:
    order = _order(Engine.TEMPORAL, "failed")
    _reserve(order, Reservation.State.RELEASED)
    _charge(order, refunded=True)
    return order


def failed_but_charged_and_stock_held() -> Order:
    order = _order(Engine.TEMPORAL, "failed")
    _reserve(order, Reservation.State.RESERVED)
    _charge(order)
    return order


def lost_plain_order_charged_not_shipped() -> Order:
    order = _order(Engine.PLAIN, "running")
    _reserve(order, Reservation.State.COMMITTED)
    _charge(order)
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    order.refresh_from_db()
    return order


def stopped_by_temporal() -> Order:
    return _order(Engine.TEMPORAL, "stopped")


def still_queued() -> Order:
    order = _order(Engine.TEMPORAL, "queued")
    Order.objects.filter(pk=order.pk).update(workflow_id="")
    return order


def started_but_not_finished() -> Order:
    return _order(Engine.TEMPORAL, "pending")


def waiting_for_the_plain_runner() -> Order:
    return _order(Engine.PLAIN, "pending")


def held_units_counted_twice() -> Order:
    """A clean order, but the product counts a held unit no reservation holds."""
    order = completed_cleanly()
    Product.objects.filter(pk=order.product_id).update(reserved=3)
    return order


SCOREBOARD_CASES: list[tuple[Callable[[], Order], str, dict[str, int], bool]] = [
    (completed_cleanly, Engine.TEMPORAL, {"completed": 1}, True),
    (failed_and_compensated, Engine.TEMPORAL, {"failed": 1}, True),
    (charged_twice, Engine.TEMPORAL, {"completed": 1, "charged_twice": 1}, False),
    (
        failed_but_charged_and_stock_held,
        Engine.TEMPORAL,
        {"failed": 1, "charge_stranded": 1, "stock": 1},
        False,
    ),
    (stopped_by_temporal, Engine.TEMPORAL, {"lost": 1}, False),
    (still_queued, Engine.TEMPORAL, {"queued": 1}, False),
    (started_but_not_finished, Engine.TEMPORAL, {"in_flight": 1}, False),
    (waiting_for_the_plain_runner, Engine.PLAIN, {"queued": 1}, True),
    (held_units_counted_twice, Engine.TEMPORAL, {"completed": 1}, False),
    (lost_plain_order_charged_not_shipped, Engine.PLAIN, {"lost": 1, "charge_stranded": 1}, True),
]


@pytest.mark.parametrize(
    ("craft", "engine", "counts", "temporal_ok"),
    SCOREBOARD_CASES,
    ids=[case[0].__name__ for case in SCOREBOARD_CASES],
)
def test_the_scoreboard_counts_what_the_audit_finds(catalogue, craft, engine, counts, temporal_ok):
    order = craft()
    board = score([order])
    lane = 2 if engine == Engine.TEMPORAL else 3  # rows: (name, label, temporal, plain)
    numbers = {row[0]: row[lane] for row in board.rows()}
    assert {name: n for name, n in numbers.items() if n and name != "placed"} == counts
    assert numbers["placed"] == 1
    assert board.temporal_ok is temporal_ok
    if craft is held_units_counted_twice:
        assert board.stock_problems == ["KB-01: 3 units counted as held, 0 held by reservations"]


# --- the panel's views -----------------------------------------------------------------------

HTMX = {"HX-Request": "true"}


def test_the_dashboard_shows_the_chaos_panel_with_its_start_form(client, catalogue):
    page = client.get("/").content.decode()
    assert 'id="chaos-panel"' in page and 'data-chaos="idle"' in page
    assert 'data-chaos-start="true"' in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"orders": "0", "minutes": "1"}, "At least 1 order."),
        ({"orders": "2001", "minutes": "1"}, "At most 2000 orders per run."),
        ({"orders": "٣", "minutes": "1"}, "Enter a whole number."),
        ({"orders": "5", "minutes": "241"}, "At most 240 minutes."),
        ({"orders": "5"}, "This field is required."),
    ],
)
def test_a_bad_start_says_why_and_starts_nothing(client, catalogue, data, message):
    # A page with the errors for a plain form post; the panel, which htmx swaps, for htmx.
    for headers, status in (({}, 400), (HTMX, 400)):
        response = client.post("/chaos/start/", data, headers=headers)
        assert response.status_code == status
        assert message in response.content.decode()
    assert not ChaosRun.objects.exists()


def test_a_start_while_a_run_is_under_way_is_refused(client, catalogue):
    first = open_run(orders=5, minutes=1, actor="olga")
    response = client.post("/chaos/start/", {"orders": "3", "minutes": "1"})
    assert response.status_code == 409
    assert f"Chaos run #{first.pk} is under way" in response.content.decode()
    response = client.post("/chaos/start/", {"orders": "3", "minutes": "1"}, headers=HTMX)
    assert response.status_code == 409 and 'data-chaos-error="true"' in response.content.decode()
    assert ChaosRun.objects.count() == 1


def test_stopping_when_nothing_runs_says_so(client, catalogue):
    response = client.post("/chaos/stop/")
    assert response.status_code == 409
    assert "No chaos run is placing orders now." in response.content.decode()


def test_the_panel_polls_while_a_run_is_under_way_and_stops_polling_after(client, catalogue):
    run = open_run(orders=5, minutes=1, actor="olga")
    panel = client.get("/chaos/", headers=HTMX).content.decode()
    assert 'data-chaos="running"' in panel and 'hx-trigger="every 2s"' in panel
    assert 'data-chaos-stop="true"' in panel
    ChaosRun.objects.filter(pk=run.pk).update(state="finished")
    panel = client.get("/chaos/", headers=HTMX).content.decode()
    assert 'data-chaos="finished"' in panel and "hx-trigger" not in panel
    assert 'data-chaos-verdict="kept"' in panel  # no orders: nothing lost


def test_outside_demo_mode_a_viewer_sees_the_panel_but_may_not_start_or_stop(
    client, catalogue, settings
):
    settings.DEMO_MODE = False
    client.force_login(User.objects.create_user("vera", password="a long passphrase"))
    page = client.get("/").content.decode()
    assert 'id="chaos-panel"' in page and 'data-chaos-start="true"' not in page
    for path in ("/chaos/start/", "/chaos/stop/"):
        response = client.post(path, {"orders": "3", "minutes": "1"}, headers=HTMX)
        assert response.status_code == 403
    assert not ChaosRun.objects.exists()


def test_audit_fails_for_a_product_whose_held_units_disagree_with_its_reservations(catalogue):
    Product.objects.filter(sku="MS-02").update(reserved=2)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit", stdout=out, stderr=io.StringIO())
    assert exit_info.value.code == 1
    assert (
        "Stock out of balance: MS-02: 2 units counted as held, 0 held by reservations"
        in out.getvalue()
    )
