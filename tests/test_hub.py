"""The hub's loop on its own: watchers coming and going while it waits on the database."""

from __future__ import annotations

import asyncio
import math

import pytest
from channels import db as channels_db
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders import live
from orders.contract import FinishRequest
from orders.live import Hub
from orders.models import OrderStep
from orders.progress import TemporalView
from orders.temporal import WORKER_UP
from worker.activities import finish_order


@pytest.mark.django_db(transaction=True)
async def test_a_watcher_leaving_during_a_tick_does_not_break_the_loop(monkeypatch):
    hub = Hub()
    hub.orders = {1: live.OrderWatch(watchers=1), 2: live.OrderWatch(watchers=1)}
    read_signatures = live._order_signatures

    def last_socket_of_order_1_closes_meanwhile(order_ids: list[int]) -> dict[int, tuple]:
        del hub.orders[1]
        return read_signatures(order_ids)

    monkeypatch.setattr(live, "_order_signatures", last_socket_of_order_1_closes_meanwhile)
    await hub._tick(asyncio.get_running_loop().time(), asyncio.Semaphore(1))
    assert list(hub.orders) == [2]
    assert hub.orders[2].closed  # no such order in the database: nothing left to poll


@pytest.mark.django_db(transaction=True)
async def test_an_order_keeps_being_asked_after_temporal_was_unreachable(running_order):
    hub = Hub()
    pk = running_order.pk
    hub.orders = {pk: live.OrderWatch(watchers=1, temporal=TemporalView(reachable=False))}
    await hub._rebuild([pk])
    watch = hub.orders[pk]
    assert "Temporal is not reachable" in watch.last_html
    assert watch.workflow_id == running_order.workflow_id  # the periodic round asks again


@pytest.mark.django_db(transaction=True)
async def test_a_worker_coming_back_is_queried_at_once(monkeypatch):
    hub = Hub(worker="down")
    hub.orders = {1: live.OrderWatch(watchers=1, queried_at=100.0)}

    async def worker_is_back() -> str:
        return WORKER_UP

    monkeypatch.setattr(live, "worker_status", worker_is_back)
    assert await hub.refresh_worker() == WORKER_UP
    watch = hub.orders[1]
    assert watch.queried_at == -math.inf and watch.confirm >= 1 and watch.reload


@pytest.mark.django_db(transaction=True)
async def test_a_failing_ask_waits_for_the_next_round(monkeypatch):
    async def broken(*args: object, **kwargs: object) -> TemporalView:
        raise RuntimeError("unexpected answer")

    monkeypatch.setattr(live, "ask_temporal", broken)
    hub = Hub()
    watch = live.OrderWatch(watchers=1, workflow_id="order-1", asking=True)
    hub.orders = {1: watch}
    await hub._ask(1, watch, asyncio.Semaphore(1), query=True)
    assert watch.asked_at > -math.inf and not watch.asking  # not asked again every tick
    assert watch.temporal == TemporalView(reachable=False) and watch.reload


@pytest.mark.django_db(transaction=True)
async def test_orders_whose_update_could_not_be_sent_are_sent_again(running_order, monkeypatch):
    class BrokenLayer:
        async def group_send(self, group: str, message: dict) -> None:
            raise ConnectionError("channel layer away")

    monkeypatch.setattr(live, "get_channel_layer", BrokenLayer)
    hub = Hub()
    pk = running_order.pk
    hub.orders = {pk: live.OrderWatch(watchers=1, temporal=TemporalView(reachable=False))}
    with pytest.raises(ConnectionError):
        await hub._tick(asyncio.get_running_loop().time(), asyncio.Semaphore(1))
    assert hub.orders[pk].last_html == "" and hub.orders[pk].reload


@pytest.mark.django_db(transaction=True)
def test_finishing_an_order_writes_its_steps_before_its_final_status(running_order):
    request = FinishRequest(
        order_id=running_order.pk, status="failed", step_states={"inventory": "compensated"}
    )
    with CaptureQueriesContext(connection) as queries:
        finish_order(request)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    # The dashboard stops watching an order once its status is final.
    assert updates[-1].startswith('UPDATE "orders_order"'), updates
    assert OrderStep.objects.get(order=running_order, name="inventory").state == "compensated"


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
    hub.orders = {running_order.pk: live.OrderWatch(watchers=1, temporal=TemporalView())}
    await hub._tick(asyncio.get_running_loop().time(), asyncio.Semaphore(1))
    assert closed >= 4  # before and after each hop: the signatures, then the rebuild


@pytest.mark.django_db(transaction=True)
async def test_periodic_asks_keep_pace_when_ticks_run_long(monkeypatch):
    asked = []

    async def answer(workflow_id: str, **kwargs: object) -> TemporalView:
        asked.append(workflow_id)
        return TemporalView()

    monkeypatch.setattr(live, "ask_temporal", answer)
    hub = Hub()
    hub.orders = {
        pk: live.OrderWatch(
            watchers=1, workflow_id=f"order-{pk}", temporal=TemporalView(), reload=False
        )
        for pk in range(1, 101)
    }
    every = hub.refresh_every()  # 8 s for 100 watched orders
    now = asyncio.get_running_loop().time()
    hub.ticked_at = now - 2.0  # the previous tick took two seconds
    await hub._tick(now, asyncio.Semaphore(100))
    await asyncio.gather(*hub._asks)
    # A quarter of the round went by, so a quarter of the orders are due, not one.
    assert len(asked) == math.ceil(100 * 2.0 / every) == 25
