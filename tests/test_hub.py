"""The hub's loop on its own: what it asks Temporal, when, and what it sends."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels import db as channels_db

from orders import live
from orders.board import PAGE_REREAD_S
from orders.contract import StepState
from orders.live import Hub, OrderWatch
from orders.models import Order, OrderStep
from orders.placement import create_order
from orders.progress import TemporalView
from orders.step_state import PendingAttempt
from orders.steps import record_step
from orders.temporal import WORKER_UP, WorkflowState


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.django_db(transaction=True)
async def test_a_watcher_leaving_during_a_tick_does_not_break_the_loop(monkeypatch):
    hub = Hub()
    hub.orders = {1: OrderWatch(channels={"test!socket"}), 2: OrderWatch(channels={"test!socket"})}
    read_signatures = live._order_signatures

    def last_socket_of_order_1_closes_meanwhile(order_ids: list[int]) -> dict[int, tuple]:
        del hub.orders[1]
        return read_signatures(order_ids)

    monkeypatch.setattr(live, "_order_signatures", last_socket_of_order_1_closes_meanwhile)
    await hub.tick(now(), asyncio.Semaphore(1))
    assert hub.orders == {}  # order 2 is not in the database: nothing left to watch


@pytest.mark.django_db(transaction=True)
async def test_an_order_keeps_being_asked_after_temporal_was_unreachable(running_order):
    hub = Hub()
    pk = running_order.pk
    hub.orders = {pk: OrderWatch(channels={"test!socket"}, temporal=TemporalView(reachable=False))}
    await hub._refresh_orders(now())
    watch = hub.orders[pk]
    assert "Temporal is not reachable" in watch.html
    assert watch.workflow_id == running_order.workflow_id  # the periodic round asks again


@pytest.mark.django_db(transaction=True)
async def test_a_worker_coming_back_is_asked_about_at_once(monkeypatch):
    hub = Hub()
    hub.orders = {1: OrderWatch(channels={"test!socket"}, ask_at=1e9, dirty=False)}

    async def worker_is_back() -> str:
        return WORKER_UP

    monkeypatch.setattr(live, "worker_status", worker_is_back)
    assert await hub.refresh_worker() == WORKER_UP
    assert hub.orders[1].ask_at == 0.0 and hub.orders[1].dirty


@pytest.mark.django_db(transaction=True)
async def test_a_failing_ask_waits_for_the_next_round(monkeypatch, running_order):
    async def broken(*args: object, **kwargs: object) -> TemporalView:
        raise RuntimeError("unexpected answer")

    monkeypatch.setattr(live, "ask_temporal", broken)
    hub = Hub()
    hub.orders = {running_order.pk: OrderWatch(channels={"test!socket"})}
    await hub._refresh_orders(now())
    watch = hub.orders[running_order.pk]
    watch.asking = True
    await hub._ask(running_order.pk, watch, asyncio.Semaphore(1))
    assert not watch.asking and watch.ask_at >= now() + live.REFRESH_S * 0.8
    assert watch.temporal == TemporalView(reachable=False) and watch.dirty


@pytest.mark.django_db(transaction=True)
async def test_orders_whose_update_could_not_be_sent_are_sent_again(running_order, monkeypatch):
    class BrokenLayer:
        async def send(self, channel: str, message: dict) -> None:
            raise ConnectionError("channel layer away")

    monkeypatch.setattr(live, "get_channel_layer", BrokenLayer)
    hub = Hub()
    pk = running_order.pk
    hub.orders = {pk: OrderWatch(channels={"test!socket"}, temporal=TemporalView(reachable=False))}
    with pytest.raises(ConnectionError):
        await hub._refresh_orders(now())
    assert hub.orders[pk].html == "" and hub.orders[pk].dirty


async def watching_two_orders(running_order: Order) -> Hub:
    """A hub watching `running_order` and a second order in flight, each on its own socket
    (channel "test!<pk>"), rendered without asking Temporal first."""
    second = await sync_to_async(create_order)(
        {
            "product": running_order.product,
            "quantity": 1,
            "customer_name": "Grace Hopper",
            "email": "grace@example.com",
            "address": "1 Harvard Way",
        }
    )
    await Order.objects.filter(pk=second.pk).aupdate(
        workflow_id=f"{running_order.workflow_id}-2", status="running"
    )
    hub = Hub()
    unreachable = TemporalView(reachable=False)
    hub.orders = {
        pk: OrderWatch(channels={f"test!{pk}"}, temporal=unreachable)
        for pk in (running_order.pk, second.pk)
    }
    return hub


@pytest.mark.django_db(transaction=True)
async def test_each_order_of_a_tick_is_sent_as_soon_as_it_is_rendered(running_order, monkeypatch):
    """Orders that change together (a wave of retries) are rendered one after the other in
    one tick: each goes out while the next is rendered, not once all are."""
    first_sent = threading.Event()
    sent: list[str] = []

    class RecordingLayer:
        async def send(self, channel: str, message: dict) -> None:
            sent.append(channel)
            first_sent.set()

    went_out_before: list[bool] = []  # per order rendered: had the one before gone out?
    render = live.render_order

    def render_once_the_one_before_went_out(snapshot, *args: object) -> str:
        went_out_before.append(not went_out_before or first_sent.wait(timeout=5))
        return render(snapshot, *args)

    monkeypatch.setattr(live, "get_channel_layer", RecordingLayer)
    monkeypatch.setattr(live, "render_order", render_once_the_one_before_went_out)
    hub = await watching_two_orders(running_order)
    await hub._refresh_orders(now())
    assert went_out_before == [True, True]
    assert sorted(sent) == sorted(f"test!{pk}" for pk in hub.orders)
    assert all(watch.html for watch in hub.orders.values())


@pytest.mark.django_db(transaction=True)
async def test_what_a_cancelled_tick_renders_afterwards_is_dropped(running_order, monkeypatch):
    """The hub stopping cancels its tick, but not the thread rendering for it: an order
    that thread finishes afterwards is neither kept nor sent."""
    rendering, finish = threading.Event(), threading.Event()
    sent: list[str] = []

    class RecordingLayer:
        async def send(self, channel: str, message: dict) -> None:
            sent.append(channel)

    render = live.render_order

    def slow_render(snapshot, *args: object) -> str:
        rendering.set()
        finish.wait(timeout=5)
        return render(snapshot, *args)

    monkeypatch.setattr(live, "get_channel_layer", RecordingLayer)
    monkeypatch.setattr(live, "render_order", slow_render)
    hub = Hub()
    watch = OrderWatch(channels={"test!socket"}, temporal=TemporalView(reachable=False))
    hub.orders = {running_order.pk: watch}
    handed_over = asyncio.Event()
    take = hub._take_built

    def take_and_tell(*args: object) -> None:
        take(*args)
        handed_over.set()

    monkeypatch.setattr(hub, "_take_built", take_and_tell)
    tick = asyncio.ensure_future(hub._refresh_orders(now()))
    await asyncio.to_thread(rendering.wait, 5)
    tick.cancel()
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await tick
    await asyncio.wait_for(handed_over.wait(), 5)  # the thread finished and handed it over
    await asyncio.sleep(0.1)  # a send it started would be under way by now
    assert (watch.snapshot, watch.html, sent) == (None, "", [])


@pytest.mark.django_db(transaction=True)
async def test_an_order_whose_send_failed_is_sent_again_and_the_others_not(
    running_order, monkeypatch
):
    broken = f"test!{running_order.pk}"

    class HalfBrokenLayer:
        async def send(self, channel: str, message: dict) -> None:
            if channel == broken:
                raise ConnectionError("channel layer away")

    monkeypatch.setattr(live, "get_channel_layer", HalfBrokenLayer)
    hub = await watching_two_orders(running_order)
    with pytest.raises(ConnectionError):
        await hub._refresh_orders(now())
    failed, sent = hub.orders.values()
    assert (failed.html, failed.dirty) == ("", True)
    assert sent.html and not sent.dirty


@pytest.mark.django_db(transaction=True)
async def test_a_retry_the_database_announced_is_followed_up_quickly_with_describe_only(
    running_order, monkeypatch
):
    await OrderStep.objects.filter(order=running_order, name="inventory").aupdate(
        state=StepState.RETRYING, attempts=1, last_error="Inventory Service Unavailable"
    )
    asked = []

    async def not_scheduled_yet(workflow_id: str, *, query: bool, **kwargs: object):
        asked.append(query)
        pending = PendingAttempt("inventory", 1, running=True)  # Temporal has not heard yet
        return TemporalView(WorkflowState("RUNNING", [pending]))

    monkeypatch.setattr(live, "ask_temporal", not_scheduled_yet)
    hub = Hub()
    hub.worker = WORKER_UP
    pk = running_order.pk
    hub.orders = {pk: OrderWatch(channels={"test!socket"}, temporal=TemporalView())}
    await hub._refresh_orders(now())
    watch = hub.orders[pk]
    assert watch.needs_follow_up and watch.ask_at <= now()
    gaps = []
    for _ in range(4):
        await hub._ask(pk, watch, asyncio.Semaphore(1))
        await hub._refresh_orders(now())
        gaps.append(watch.ask_at - now())
    assert asked == [True, False, False, False]  # the first is the periodic round's query
    assert gaps == sorted(gaps) and gaps[0] < 0.2  # soon, then less and less often


@pytest.mark.django_db(transaction=True)
async def test_periodic_asks_are_spread_over_the_round(monkeypatch, running_order):
    async def answer(workflow_id: str, **kwargs: object) -> TemporalView:
        return TemporalView()

    monkeypatch.setattr(live, "ask_temporal", answer)
    hub = Hub()
    hub.orders = {running_order.pk: OrderWatch(channels={"test!socket"})}
    await hub._refresh_orders(now())
    watch = hub.orders[running_order.pk]
    due = set()
    for _ in range(20):
        await hub._ask(running_order.pk, watch, asyncio.Semaphore(1))
        due.add(round(watch.ask_at - now(), 2))
    every = hub.refresh_every()
    assert all(0.75 * every <= gap <= 1.2 * every for gap in due) and len(due) > 5


@pytest.mark.django_db(transaction=True)
async def test_the_hub_closes_stale_database_connections_like_a_request_does(
    running_order, monkeypatch
):
    closed = 0
    close = channels_db.close_old_connections

    def counting_close() -> None:
        nonlocal closed
        closed += 1
        close()

    monkeypatch.setattr(channels_db, "close_old_connections", counting_close)
    hub = Hub()
    hub.orders = {running_order.pk: OrderWatch(channels={"test!socket"}, temporal=TemporalView())}
    await hub.tick(now(), asyncio.Semaphore(1))
    assert closed >= 2  # before and after the tick's hop: signatures and rebuild together


@pytest.mark.django_db(transaction=True)
async def test_a_board_whose_orders_did_not_move_is_rendered_again_from_the_rows_it_read(
    running_order, monkeypatch
):
    """As the clock moves, a board of orders on a step shows their time again without
    reading (and counting) the orders; once one changes, the page is read afresh."""
    await sync_to_async(record_step)(running_order.pk, "payment", "running", attempt=1)
    given = []
    render_boards = live.render_boards

    def recording(queries: list[str], pages: dict | None = None):
        given.append(dict(pages or {}))
        return render_boards(queries, pages)

    monkeypatch.setattr(live, "render_boards", recording)
    monkeypatch.setattr(live, "BOARD_CLOCK_S", 1e9)  # the test moves the clock itself
    hub = Hub()
    hub.boards = {"": live.BoardWatch(channels={"test!socket"})}
    await hub._publish_board()
    board = hub.boards[""]
    assert board.ticking and f'id="order-{running_order.pk}"' in board.html
    await hub._publish_board()  # nothing moved, not even the clock: nothing rendered
    hub._board_clock -= 1  # the clock moved
    await hub._publish_board()
    await sync_to_async(record_step)(running_order.pk, "payment", "completed", attempt=1)
    await hub._publish_board()
    assert [bool(pages) for pages in given] == [False, True, False]
    assert 'data-current-step="payment"' not in board.html


def test_rendering_a_page_again_as_of_now_reads_only_its_rows(
    running_order, django_assert_num_queries
):
    record_step(running_order.pk, "payment", "running", attempt=1)
    first = live.render_boards([""])[0][""]
    with django_assert_num_queries(1):  # the page's rows by primary key: no count, no steps
        lists, switches = live.render_boards([""], {"": first.page})
    assert lists[""].ticking and switches is None  # the switches did not change either
    assert lists[""].html.count('data-current-step="payment"') == 1


@pytest.mark.parametrize("missed", ["a change older than the newest", "a page read long ago"])
def test_a_page_the_change_check_missed_is_read_afresh(running_order, missed):
    """The change check compares the newest change only. A write that took its time
    before waiting for the lock commits an older one, unseen: the page's own rows are
    checked, and a page is read again every PAGE_REREAD_S whatever it says."""
    record_step(running_order.pk, "payment", "running", attempt=1)
    first = live.render_boards([""])[0][""]
    page = first.page
    if missed == "a change older than the newest":
        older = running_order.updated_at - timedelta(seconds=1)
        Order.objects.filter(pk=running_order.pk).update(status="completed", updated_at=older)
        OrderStep.objects.filter(order=running_order, name="payment").update(state="completed")
    else:
        Order.objects.filter(pk=running_order.pk).update(status="completed")  # updated_at kept
        OrderStep.objects.filter(order=running_order, name="payment").update(state="completed")
        page = page | {"read_at": page["read_at"] - PAGE_REREAD_S - 1}
    lists, _ = live.render_boards([""], {"": page})
    assert 'data-order-status="completed"' in lists[""].html
    assert 'data-current-step="payment"' not in lists[""].html


@pytest.mark.django_db(transaction=True)
async def test_a_quiet_board_sleeps_until_its_next_clock(monkeypatch):
    """Metrics made and nothing moved since: the loop waits for the board's clock, not
    TICK_S after TICK_S until the metrics' quiet clock."""
    hub = Hub()
    hub.boards = {"": live.BoardWatch(channels={"test!socket"})}
    hub.status_channels = {"test!socket"}
    started = now()
    hub._board_signature = hub._metrics_signature = ("nothing moved",)
    hub._board_at, hub._status_at = started + live.BOARD_EVERY_S, started + live.STATUS_EVERY_S
    hub._metrics_at, hub._metrics_quiet_at = started - 1, started + live.METRICS_QUIET_S
    assert hub._next_tick_at(started) == started + live.BOARD_EVERY_S
    hub._board_signature = ("an order moved",)  # the metrics are due at the next tick
    assert hub._next_tick_at(started) == started + live.TICK_S
