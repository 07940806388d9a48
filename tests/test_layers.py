"""The in-memory channel layer: Channels' behaviour, with a cheaper expiry sweep."""

from __future__ import annotations

import asyncio

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

from orderdash.layers import InMemoryChannelLayer


async def test_group_send_reaches_every_member_once():
    layer = InMemoryChannelLayer()
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("order.1", channel)
    await layer.group_send("order.1", {"type": "send.html", "html": "<p>1</p>"})
    for channel in channels:
        message = await asyncio.wait_for(layer.receive(channel), timeout=1)
        assert message == {"type": "send.html", "html": "<p>1</p>"}
    assert all(channel not in layer.channels for channel in channels)  # nothing left over


async def test_a_full_channel_loses_messages_without_stopping_the_others():
    layer = InMemoryChannelLayer(capacity=1)
    stuck, reading = await layer.new_channel(), await layer.new_channel()
    for channel in (stuck, reading):
        await layer.group_add("order.1", channel)
    await layer.group_send("order.1", {"type": "send.html", "html": "first"})
    await layer.group_send("order.1", {"type": "send.html", "html": "second"})
    assert (await layer.receive(stuck))["html"] == "first"
    assert (await layer.receive(reading))["html"] == "first"


async def test_expired_messages_and_their_channels_are_still_swept():
    layer = InMemoryChannelLayer(expiry=0)
    layer.sweep_every_s = 0.05
    gone, alive = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("order.1", gone)
    await layer.send(gone, {"type": "send.html", "html": "never read"})
    await asyncio.sleep(0.1)
    await layer.group_add("order.1", alive)
    await layer.group_send("order.1", {"type": "send.html", "html": "fresh"})
    # The unread, expired message took its channel out of the group, as in Channels.
    assert gone not in layer.groups.get("order.1", {})
    assert gone not in layer.channels


async def test_the_sweep_runs_at_most_once_per_interval(monkeypatch):
    sweeps = 0
    channels_sweep = ChannelsInMemoryChannelLayer._clean_expired

    def counting_sweep(layer: ChannelsInMemoryChannelLayer) -> None:
        nonlocal sweeps
        sweeps += 1
        channels_sweep(layer)

    monkeypatch.setattr(ChannelsInMemoryChannelLayer, "_clean_expired", counting_sweep)
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("order.1", channel)
    for n in range(50):
        await layer.group_send("order.1", {"type": "send.html", "html": str(n)})
        assert (await layer.receive(channel))["html"] == str(n)
    assert sweeps == 1  # Channels' own layer sweeps on each of those 100 calls
