"""The progress hub: what turns Temporal and database changes into fragments on screens.

Per web process there is at most one poller per watched in-flight order and one board
poller (order list, switches, worker status), however many browsers watch. Each poller
sends a fragment to its Channels group only when the fragment changed, so Temporal load
grows with the orders being watched, never with the number of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone

from orders.audit import OrderAudit
from orders.models import Order, ServiceSwitch
from orders.progress import (
    SOURCE_FINAL,
    SOURCE_LIVE,
    SOURCE_NO_WORKER,
    OrderSnapshot,
    build_snapshot,
)
from orders.temporal import WORKER_UP, worker_status
from worker.shared import OrderProgress

log = logging.getLogger(__name__)

ORDER_POLL_S = 0.1  # how often the watched orders' database signatures are checked
ORDER_REFRESH_S = 2.0  # Temporal is asked at least this often even when nothing changed
SNAPSHOTS_AT_ONCE = 32  # orders refreshed at once: mostly waiting on Temporal, not CPU
BOARD_POLL_S = 0.25
STATUS_POLL_S = 1.0
BOARD_ROWS = 25

BOARD_GROUP = "board"
STATUS_GROUP = "status"


def order_group(order_id: int) -> str:
    return f"order.{order_id}"


# --- rendering -------------------------------------------------------------------------


def render_order(snapshot: OrderSnapshot, worker: str) -> str:
    return render_to_string(
        "orders/partials/order_detail.html", {"snapshot": snapshot, "worker": worker, "oob": True}
    )


def render_status(worker: str) -> str:
    return render_to_string("orders/partials/worker_status.html", {"worker": worker, "oob": True})


def board_context() -> dict:
    orders = list(Order.objects.select_related("product").prefetch_related("steps")[:BOARD_ROWS])
    return {
        "orders": orders,
        "switches": list(ServiceSwitch.objects.order_by("id")),
        "modes": ServiceSwitch.MODES,
        "mode_help": ServiceSwitch.MODE_HELP,
    }


def render_board() -> tuple[str, str]:
    context = board_context() | {"oob": True, "live": True}
    return (
        render_to_string("orders/partials/order_list.html", context),
        render_to_string("orders/partials/switches.html", context),
    )


def _order_signatures(order_ids: list[int]) -> dict[int, tuple]:
    """Per order, a value that changes whenever an activity writes anything about it.

    Activities touch the order's updated_at last, after the ledger row and the step
    record, so a change seen here is a change that is complete.
    """
    return {
        pk: (updated_at, status)
        for pk, updated_at, status in Order.objects.filter(pk__in=order_ids).values_list(
            "pk", "updated_at", "status"
        )
    }


def _board_signature() -> tuple:
    # Activities bump the order's updated_at with every step change they record.
    switches = ServiceSwitch.objects.order_by("id").values_list(
        "mode", "failures_left", "latency_ms"
    )
    # A plain-script order turns "lost" by going quiet, which changes no row: count them.
    stalled = Order.objects.filter(
        engine=Order.PLAIN,
        status="running",
        updated_at__lt=timezone.now() - timedelta(seconds=Order.PLAIN_STALL_S),
    ).count()
    return (Order.objects.aggregate(Max("id"), Max("updated_at")), tuple(switches), stalled)


# --- the hub ---------------------------------------------------------------------------


@dataclass
class Watch:
    task: asyncio.Task
    watchers: int = 0


@dataclass
class OrderWatch:
    """One watched order: who watches, and what was last seen and sent."""

    watchers: int = 0
    signature: tuple | None = None
    refreshed_at: float = 0.0
    recheck: bool = False
    last_html: str = ""
    closed: bool = False  # final (or gone): nothing more will change, nothing is polled
    refreshing: bool = False
    progress: OrderProgress | None = None  # the workflow's answer to the last query
    audit: OrderAudit | None = None  # exactly-once figures, recomputed on periodic refreshes


@dataclass
class Hub:
    orders: dict[int, OrderWatch] = field(default_factory=dict)
    orders_task: asyncio.Task | None = None
    _refreshes: set[asyncio.Task] = field(default_factory=set)  # keeps running refreshes alive
    board: Watch | None = None
    status: Watch | None = None
    worker: str = "down"
    temporal_calls: int = 0  # counted for the fan-out benchmark

    # Orders -------------------------------------------------------------------------
    def watch_order(self, order_id: int) -> None:
        self.orders.setdefault(order_id, OrderWatch()).watchers += 1
        if self.orders_task is None or self.orders_task.done():
            self.orders_task = asyncio.create_task(self._poll_orders())

    def unwatch_order(self, order_id: int) -> None:
        watch = self.orders.get(order_id)
        if watch is None:
            return
        watch.watchers -= 1
        if watch.watchers <= 0:
            del self.orders[order_id]
        if not self.orders and self.orders_task is not None:
            self.orders_task.cancel()
            self.orders_task = None

    async def order_fragment(
        self, order_id: int, watch: OrderWatch | None = None, *, ask_workflow: bool = True
    ) -> tuple[str, bool] | None:
        """(html, final) for one order now, or None when it does not exist."""
        snapshot = await build_snapshot(
            order_id,
            worker_up=self.worker == WORKER_UP,
            ask_workflow=ask_workflow,
            known_progress=watch.progress if watch else None,
            known_audit=watch.audit if watch else None,
        )
        if snapshot is None:
            return None
        if watch is not None:
            watch.progress, watch.audit = snapshot.progress, snapshot.audit
        if snapshot.source in (SOURCE_LIVE, SOURCE_NO_WORKER):
            self.temporal_calls += 2 if ask_workflow else 1  # describe (+ query)
        html = await sync_to_async(render_order, thread_sensitive=False)(snapshot, self.worker)
        return html, snapshot.source == SOURCE_FINAL

    async def _poll_orders(self) -> None:
        """One loop for every watched order: a single cheap query per tick finds what
        moved, and only those orders are asked of Temporal and rendered again."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(SNAPSHOTS_AT_ONCE)
        while True:
            try:
                open_ids = [pk for pk, watch in self.orders.items() if not watch.closed]
                if open_ids:
                    signatures = await sync_to_async(_order_signatures, thread_sensitive=False)(
                        open_ids
                    )
                    # Each refresh runs on its own: a slow one never holds up the next tick.
                    for pk, ask_workflow in self._due(open_ids, signatures, loop.time()):
                        self.orders[pk].refreshing = True
                        task = asyncio.create_task(self._refresh(pk, limit, ask_workflow))
                        self._refreshes.add(task)
                        task.add_done_callback(self._refreshes.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Polling watched orders failed; trying again")
            await asyncio.sleep(ORDER_POLL_S)

    def _due(
        self, order_ids: list[int], signatures: dict[int, tuple], now: float
    ) -> list[tuple[int, bool]]:
        """Orders to refresh now, and whether to query the workflow for each."""
        due = []
        for pk in order_ids:
            watch = self.orders.get(pk)
            if watch is None or watch.refreshing:
                continue  # a refresh under way: its order is looked at again next tick
            changed = signatures.get(pk) != watch.signature
            # Many watched orders: the periodic query (a workflow task each) spreads out.
            periodic = now - watch.refreshed_at >= ORDER_REFRESH_S * max(1, len(order_ids) / 25)
            if changed or watch.recheck or periodic:
                # The database hears of a finished attempt a moment before Temporal does:
                # after a change, ask once more on the next tick. The (slow) workflow
                # query runs on the periodic refresh; the database and describe say the rest.
                watch.recheck = changed
                watch.signature = signatures.get(pk)
                if periodic:
                    watch.refreshed_at = now
                due.append((pk, periodic or watch.progress is None))
        return due

    async def _refresh(self, order_id: int, limit: asyncio.Semaphore, ask_workflow: bool) -> None:
        watch = self.orders.get(order_id)
        if watch is None:
            return
        try:
            async with limit:
                fragment = await self.order_fragment(order_id, watch, ask_workflow=ask_workflow)
            if fragment is None:
                watch.closed = True
                return
            html, final = fragment
            if html != watch.last_html and self.orders.get(order_id) is watch:
                watch.last_html = html
                await get_channel_layer().group_send(
                    order_group(order_id), {"type": "send.html", "html": html}
                )
            watch.closed = final  # closed orders are never polled again
        except Exception:
            log.exception("Refreshing order %s failed; trying again", order_id)
        finally:
            # Cleared only after the send, so fragments leave in the order they were made.
            watch.refreshing = False

    # Board and status ----------------------------------------------------------------
    def watch_board(self) -> None:
        if self.board is None or self.board.task.done():
            self.board = Watch(asyncio.create_task(self._poll_board()))
        self.board.watchers += 1

    def unwatch_board(self) -> None:
        if self.board is None:
            return
        self.board.watchers -= 1
        if self.board.watchers <= 0:
            self.board.task.cancel()
            self.board = None

    def watch_status(self) -> None:
        if self.status is None or self.status.task.done():
            self.status = Watch(asyncio.create_task(self._poll_status()))
        self.status.watchers += 1

    def unwatch_status(self) -> None:
        if self.status is None:
            return
        self.status.watchers -= 1
        if self.status.watchers <= 0:
            self.status.task.cancel()
            self.status = None

    async def refresh_worker(self) -> str:
        self.worker = await worker_status()
        self.temporal_calls += 1
        return self.worker

    async def _poll_status(self) -> None:
        layer = get_channel_layer()
        last_html = ""
        while True:
            try:
                html = render_status(await self.refresh_worker())
                if html != last_html:
                    last_html = html
                    await layer.group_send(STATUS_GROUP, {"type": "send.html", "html": html})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Checking the worker failed; trying again")
            await asyncio.sleep(STATUS_POLL_S)

    async def _poll_board(self) -> None:
        layer = get_channel_layer()
        last_signature = None
        last_fragments: tuple[str, str] = ("", "")
        while True:
            try:
                signature = await sync_to_async(_board_signature)()
                if signature != last_signature:
                    last_signature = signature
                    fragments = await sync_to_async(render_board)()
                    for old, new in zip(last_fragments, fragments, strict=True):
                        if old != new:
                            await layer.group_send(BOARD_GROUP, {"type": "send.html", "html": new})
                    last_fragments = fragments
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Refreshing the order board failed; trying again")
            await asyncio.sleep(BOARD_POLL_S)

    async def stop(self) -> None:
        tasks = [w.task for w in [self.board, self.status] if w] + list(self._refreshes)
        if self.orders_task is not None:
            tasks.append(self.orders_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.orders.clear()
        self.orders_task = None
        self.board = self.status = None


hub = Hub()
