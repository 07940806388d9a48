"""Websockets: thin consumers that ask the hub to watch (on their channel) and forward HTML."""

from __future__ import annotations

import contextlib

from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import QueryDict
from django.template.loader import render_to_string

from orders.access import may_watch
from orders.board import parse_filter
from orders.live import hub
from orders.models import Order

# Close codes in the 4000 range are ours; htmx does not reconnect after them.
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


def live_error(message: str) -> str:
    return render_to_string("orders/partials/live_error.html", {"message": message})


class QuietConsumer(AsyncWebsocketConsumer):
    """A socket may close while something is on its way to it: when hundreds of tabs
    come and go at once, while its snapshot renders. What was meant for it is dropped
    without a traceback: ASGI servers raise an OSError for that, daphne (through
    autobahn) its own Disconnected."""

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        with contextlib.suppress(OSError, Disconnected):
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        with contextlib.suppress(OSError, Disconnected):
            await super().close(code=code, reason=reason)


class LiveConsumer(QuietConsumer):
    """Shared behaviour: worker status for everyone, and no commands accepted."""

    joined = False

    async def join(self) -> None:
        self.joined = True
        hub.watch_status(self.channel_name)
        await self.send(text_data=await hub.status_snapshot())

    async def leave(self) -> None:
        if self.joined:
            hub.unwatch_status(self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # This socket only streams updates; actions go through the page's forms.
        await self.send(
            text_data=live_error("This live connection only sends updates; it takes no commands.")
        )

    async def send_html(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def dispatch(self, message: dict) -> None:
        # Before every handler Channels closes stale database connections, a hop to its one
        # sync thread. A fragment from the hub goes straight to the socket and touches no
        # database; with hundreds of sockets those hops queued behind one another.
        if message.get("type") == "send.html":
            await self.send_html(message)
            return
        await super().dispatch(message)

    async def refuse_strangers(self) -> bool:
        """Outside demo mode only logged-in users watch; say so and close for the others."""
        if may_watch(self.scope["user"]):
            return False
        await self.send(text_data=live_error("Log in to see live updates."))
        await self.close(code=CLOSE_FORBIDDEN)
        return True


class BoardConsumer(LiveConsumer):
    """/ws/orders/?<filters>: the order list (filtered and paged as the page's address
    says), the switches, the metrics and the worker status."""

    board = ""  # the filter and page watched, in canonical form

    async def connect(self) -> None:
        await self.accept()
        if await self.refuse_strangers():
            return
        query = QueryDict(self.scope.get("query_string", b"").decode("latin-1"))
        board_filter, page, errors = parse_filter(query)
        if errors:
            await self.send(text_data=live_error("Not a board filter: " + "; ".join(errors)))
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        board = board_filter.page_query(page)
        if not hub.may_watch_board(board):
            await self.send(
                text_data=live_error(
                    f"{settings.LIVE_BOARDS_MAX} differently filtered boards are live on this"
                    " server already: this one does not update. Reload later, or use a filter"
                    " someone has open."
                )
            )
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.board = board
        hub.watch_board(self.channel_name, self.board)
        await self.join()
        for html in await hub.board_snapshot(self.board):
            await self.send(text_data=html)
        await self.send(text_data=await hub.metrics_snapshot())

    async def disconnect(self, code: int) -> None:
        if self.joined:
            hub.unwatch_board(self.channel_name, self.board)
        await self.leave()


class OrderConsumer(LiveConsumer):
    """/ws/orders/<pk>/: one order's steps, retries and attempts."""

    order_id: int | None = None

    async def connect(self) -> None:
        await self.accept()
        if await self.refuse_strangers():
            return
        order_id = self.scope["url_route"]["kwargs"]["order_id"]
        if not await Order.objects.filter(pk=order_id).aexists():
            await self.send(text_data=live_error(f"There is no order #{order_id}."))
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Watch first, snapshot second: an update pushed in between is then not missed.
        await self.join()
        hub.watch_order(order_id, self.channel_name)
        self.order_id = order_id  # from here on, disconnecting unwatches it
        # Watched already: the fragment its watchers last got is the full snapshot, and
        # anything newer reaches this socket as it is sent. Newly watched: the hub's next
        # tick builds it and sends it to every watcher, this socket included.
        if html := hub.latest_fragment(order_id):
            await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        if self.order_id is not None:
            hub.unwatch_order(self.order_id, self.channel_name)
        await self.leave()


class UnknownPathConsumer(QuietConsumer):
    """Any other /ws/ path: say what exists instead of dropping the connection."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(
            text_data=live_error(
                "No live feed at this address. Use /ws/orders/ or /ws/orders/<order number>/."
            )
        )
        await self.close(code=CLOSE_NOT_FOUND)
