"""The in-memory channel layer for a single web process, made cheap to fan out from.

Channels' own in-memory layer sweeps every channel and every group membership for
expired entries on each receive and group send. With hundreds of open sockets that sweep,
not the messages, was most of what a push cost. Here it runs at most once a second;
entries still expire, only up to a second later.
"""

from __future__ import annotations

import contextlib
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    sweep_every_s = 1.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = -self.sweep_every_s

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self.sweep_every_s:
            return
        self._swept_at = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        # The same as Channels', without a task per member: send() never waits.
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            # As in Channels: a socket that stopped reading loses the message.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)
