"""The live websockets, driven with WebsocketCommunicator against a real Temporal dev server."""

from __future__ import annotations

import asyncio
import re

import channels.consumer
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from orderdash.asgi import application
from orders.live import hub
from orders.placement import place_order
from orders.simulator.models import Product, ServiceSwitch
from orders.steps import record_step
from orders.temporal import get_client
from tests.conftest import set_switch

HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


@pytest.fixture(autouse=True)
async def fresh_hub():
    yield
    await hub.stop()


def order_data(sku: str = "KB-01") -> dict:
    return {
        "product": Product.objects.get(sku=sku),
        "quantity": 1,
        "customer_name": "Katherine Johnson",
        "email": "katherine@example.com",
        "phone": "+1 555 0199",
        "address": "4 Orbit Lane",
    }


async def connect(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=HEADERS)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def receive_until(communicator: WebsocketCommunicator, pattern: str, timeout: float = 30):
    """Collect messages until one matches; fail with everything seen if none does."""
    seen = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        message = await communicator.receive_output(timeout=deadline - loop.time())
        if message["type"] == "websocket.close":
            raise AssertionError(f"socket closed before {pattern!r}; saw {seen}")
        text = message.get("text", "")
        seen.append(text)
        if re.search(pattern, text):
            return text
    raise AssertionError(f"no message matched {pattern!r}; saw {seen}")


async def test_order_socket_sends_a_full_snapshot_on_connect(live_temporal, catalogue):
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    communicator = await connect(f"/ws/orders/{order.pk}/")
    try:
        await receive_until(communicator, r'data-worker="up"')
        snapshot = await receive_until(communicator, rf'id="order-{order.pk}"')
        assert len(re.findall(r'data-step="\w+" data-state=', snapshot)) == 6
        assert 'hx-swap-oob="true"' in snapshot
    finally:
        await communicator.disconnect()


async def test_order_socket_pushes_retries_and_completion(live_temporal, catalogue):
    await sync_to_async(set_switch)("inventory", "flaky", failures=2)
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    communicator = await connect(f"/ws/orders/{order.pk}/")
    try:
        # Attempt 2 or 3 announced, depending on which backoff the snapshot lands in,
        # with the countdown to the time Temporal scheduled it for.
        retrying = await receive_until(
            communicator,
            r'data-step="inventory" data-state="retrying" data-attempt="[23]"'
            r"[^$]*?data-next-retry=",
        )
        assert "Service Unavailable" in retrying
        done = await receive_until(communicator, r'data-order-status="completed"', timeout=40)
        assert 'data-step="inventory" data-state="completed" data-attempt="3"' in done
    finally:
        await communicator.disconnect()


async def test_two_sockets_on_one_order_share_one_poller(live_temporal, catalogue):
    await sync_to_async(set_switch)("shipping", "down")
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    first = await connect(f"/ws/orders/{order.pk}/")
    second = await connect(f"/ws/orders/{order.pk}/")
    try:
        await receive_until(first, rf'id="order-{order.pk}"')
        await receive_until(second, rf'id="order-{order.pk}"')
        assert list(hub.orders) == [order.pk]
        assert hub.orders[order.pk].watchers == 2
        assert hub.running
        # Both see the same pushed update from the single poller.
        pattern = r'data-step="shipping" data-state="retrying"'
        await receive_until(first, pattern)
        await receive_until(second, pattern)
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_a_new_socket_on_a_watched_order_gets_what_the_others_last_got(
    live_temporal, catalogue
):
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    first = await connect(f"/ws/orders/{order.pk}/")
    second = None
    try:
        done = await receive_until(first, r'data-order-status="completed"')
        second = await connect(f"/ws/orders/{order.pk}/")
        await receive_until(second, r'data-worker="up"')
        assert await receive_until(second, rf'id="order-{order.pk}"') == done
        assert hub.orders[order.pk].watchers == 2
    finally:
        await first.disconnect()
        if second is not None:
            await second.disconnect()


async def test_a_workflow_terminated_in_temporal_is_reported_live(live_temporal, catalogue):
    await sync_to_async(set_switch)("inventory", "down")
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    communicator = await connect(f"/ws/orders/{order.pk}/")
    try:
        await receive_until(communicator, r'data-step="inventory" data-state="retrying"')
        client = await get_client()
        await client.get_workflow_handle(order.workflow_id).terminate(reason="ops test")
        ended = await receive_until(communicator, r'data-workflow-ended="true"')
        assert "as terminated" in ended
    finally:
        await communicator.disconnect()


async def test_disconnecting_the_last_watcher_stops_the_poller(live_temporal, catalogue):
    await sync_to_async(set_switch)("shipping", "down")
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    communicator = await connect(f"/ws/orders/{order.pk}/")
    await receive_until(communicator, rf'id="order-{order.pk}"')
    assert hub.running
    await communicator.disconnect()
    await asyncio.sleep(0.2)
    assert order.pk not in hub.orders
    assert not hub.running


async def test_a_closed_order_is_not_polled(live_temporal, catalogue):
    order = await sync_to_async(place_order)(await sync_to_async(order_data)())
    communicator = await connect(f"/ws/orders/{order.pk}/")
    try:
        await receive_until(communicator, r'data-order-status="completed"')
        await asyncio.sleep(0.3)
        assert hub.orders[order.pk].closed
    finally:
        await communicator.disconnect()


async def test_unknown_order_closes_with_a_clear_message(transactional_db):
    communicator = WebsocketCommunicator(application, "/ws/orders/424242/", headers=HEADERS)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    message = await communicator.receive_from(timeout=10)
    assert "There is no order #424242." in message
    closed = await communicator.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4404}
    assert 424242 not in hub.orders


async def test_malformed_path_closes_with_a_clear_message(transactional_db):
    communicator = WebsocketCommunicator(application, "/ws/orders/abc/", headers=HEADERS)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert "No live feed at this address" in await communicator.receive_from(timeout=10)
    assert (await communicator.receive_output(timeout=10))["code"] == 4404


async def test_messages_sent_to_the_socket_are_refused_politely(live_temporal, catalogue):
    communicator = await connect("/ws/orders/")
    try:
        await receive_until(communicator, r'id="order-list"')
        await communicator.send_to(text_data='{"mode": "down", "service": "payment"}')
        reply = await receive_until(communicator, r'id="live-error"')
        assert "takes no commands" in reply
        switch = await ServiceSwitch.objects.aget(service="payment")
        assert switch.mode == "healthy"
    finally:
        await communicator.disconnect()


async def test_a_fragment_from_the_hub_reaches_the_socket_without_a_database_hop(
    live_temporal, catalogue, monkeypatch
):
    communicator = await connect("/ws/orders/")
    try:
        await receive_until(communicator, r'id="order-list"')
        hops = []

        async def counted() -> None:
            hops.append(1)

        # What Channels runs before every other handler: a hop to its sync thread.
        monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
        (channel,) = hub.board_channels
        await get_channel_layer().send(channel, {"type": "send.html", "html": '<i id="probe">'})
        await receive_until(communicator, r'id="probe"')
        assert hops == []
        await communicator.send_to(text_data="hello")  # any other handler still hops first
        await receive_until(communicator, r'id="live-error"')
        assert hops == [1]
    finally:
        await communicator.disconnect()


async def test_board_socket_shows_new_orders_and_switch_flips(live_temporal, catalogue):
    communicator = await connect("/ws/orders/")
    try:
        await receive_until(communicator, r'id="switches"')
        await sync_to_async(set_switch)("payment", "down")
        flipped = await receive_until(communicator, r'data-service="payment" data-mode="down"')
        assert 'id="switches"' in flipped
        order = await sync_to_async(place_order)(await sync_to_async(order_data)())
        await receive_until(communicator, rf'id="order-{order.pk}"')
    finally:
        await communicator.disconnect()
    assert (hub.board_watchers, hub.status_watchers, hub.running) == (0, 0, False)


async def test_board_socket_reports_the_worker_down_when_none_polls(
    dev_server_address, settings, catalogue
):
    settings.TEMPORAL_ADDRESS = dev_server_address
    settings.TEMPORAL_TASK_QUEUE = "a-queue-no-worker-polls"
    communicator = await connect("/ws/orders/")
    try:
        await receive_until(communicator, r'data-worker="down"')
    finally:
        await communicator.disconnect()


async def receive_list_without(communicator: WebsocketCommunicator, order_id: int) -> str:
    """The next order list that no longer shows the order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    while loop.time() < deadline:
        text = await receive_until(communicator, r'id="order-list"', timeout=deadline - loop.time())
        if f'id="order-{order_id}"' not in text:
            return text
    raise AssertionError(f"order {order_id} never left the filtered board")


async def test_a_filtered_board_gains_an_order_that_starts_matching_and_loses_it_live(
    live_temporal, catalogue
):
    """Retrying on payment: the order appears while payment is down, leaves once it is back."""
    communicator = await connect("/ws/orders/?service=payment&state=retrying")
    other = await connect("/ws/orders/?status=completed")
    try:
        first = await receive_until(communicator, r'id="order-list"')
        assert "No order matches this filter" in first
        await sync_to_async(set_switch)("payment", "down")
        order = await sync_to_async(place_order)(await sync_to_async(order_data)())
        shown = await receive_until(communicator, rf'id="order-{order.pk}"')
        assert 'data-current-step="payment"' in shown
        assert set(hub.boards) == {"state=retrying&service=payment", "status=completed"}
        await sync_to_async(set_switch)("payment", "healthy")
        await receive_list_without(communicator, order.pk)
        # The other socket's filter: the order arrives there once it completes.
        await receive_until(other, rf'id="order-{order.pk}" data-order-status="completed"')
    finally:
        await communicator.disconnect()
        await other.disconnect()
    assert (hub.board_watchers, hub.boards) == (0, {})


@pytest.mark.parametrize("query", ["status=lost", "service=fax&q=x", "page=-1"])
async def test_a_board_socket_with_a_bad_filter_is_told_why_and_closed(transactional_db, query):
    communicator = WebsocketCommunicator(application, f"/ws/orders/?{query}", headers=HEADERS)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert "Not a board filter" in await communicator.receive_from(timeout=10)
    assert (await communicator.receive_output(timeout=10))["code"] == 4400
    assert hub.boards == {}


async def test_an_order_turns_stuck_on_a_live_board_as_its_time_on_the_step_passes(
    live_temporal, running_order, settings
):
    """No row changes when an order overstays its step: the board's clock shows it."""
    settings.STUCK_AFTER_SECONDS = settings.STUCK_AFTER_SECONDS | {"payment": 2}
    await sync_to_async(record_step)(running_order.pk, "payment", "running", attempt=1)
    communicator = await connect("/ws/orders/?service=payment")
    try:
        first = await receive_until(communicator, rf'id="order-{running_order.pk}"')
        assert 'data-current-step="payment"' in first and 'data-stuck="true"' not in first
        stuck = await receive_until(communicator, r'data-stuck="true"', timeout=20)
        assert f'id="order-{running_order.pk}"' in stuck
    finally:
        await communicator.disconnect()


async def test_past_the_limit_of_live_boards_a_new_filter_is_told_why_and_closed(
    dev_server_address, settings, catalogue
):
    settings.TEMPORAL_ADDRESS = dev_server_address
    settings.LIVE_BOARDS_MAX = 2
    first = await connect("/ws/orders/?status=failed")
    second = await connect("/ws/orders/?status=completed")
    same_as_first = await connect("/ws/orders/?status=failed")  # live already: no extra cost
    try:
        for communicator in (first, second, same_as_first):
            await receive_until(communicator, r'id="order-list"')
        third = WebsocketCommunicator(application, "/ws/orders/?engine=plain", headers=HEADERS)
        assert (await third.connect(timeout=10))[0]
        assert "2 differently filtered boards are live" in await third.receive_from(timeout=10)
        assert (await third.receive_output(timeout=10))["code"] == 4429
        assert set(hub.boards) == {"status=failed", "status=completed"}
    finally:
        for communicator in (first, second, same_as_first):
            await communicator.disconnect()
    assert hub.boards == {}
