"""The hub's loop on its own: watchers coming and going while it waits on the database."""

from __future__ import annotations

import asyncio

import pytest

from orders import live
from orders.live import Hub


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
