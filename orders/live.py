"""The progress hub: what turns database and Temporal changes into fragments on screens.

Per web process one loop watches every in-flight order that has a socket open on it, and
one board poller serves the order list, switches and worker status, however many browsers
watch. Each tick reads the watched orders' database signatures in one query; the orders
that moved are reloaded together, merged with what Temporal last said, rendered and sent
to their Channels group only when the fragment changed. Temporal (describe, and the query
for the saga) is asked in the background: right after the database announces a retry, to
learn when it is due, and on a slow periodic round. So Temporal load grows with the orders
being watched, never with the number of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone

from orders.models import Order, ServiceSwitch
from orders.progress import (
    SOURCE_FINAL,
    OrderSnapshot,
    TemporalView,
    ask_temporal,
    load_orders,
    snapshot_of,
)
from orders.temporal import WORKER_UP, worker_status

log = logging.getLogger(__name__)

ORDER_POLL_S = 0.05  # how often the watched orders' database signatures are checked
ORDER_REFRESH_S = 2.0  # Temporal is asked at least this often even when nothing changed
ASKS_AT_ONCE = 32  # Temporal calls in flight at once: waiting on the server, not CPU
CONFIRM_TRIES = 20  # describes (one per tick) to see a retry the database announced
BOARD_POLL_S = 0.25
STATUS_POLL_S = 1.0
BOARD_ROWS = 25

BOARD_GROUP = "board"
STATUS_GROUP = "status"


def order_group(order_id: int) -> str:
    return f"order.{order_id}"


# --- rendering -------------------------------------------------------------------------


def render_order(snapshot: OrderSnapshot, worker: str, ledger_cache: dict | None = None) -> str:
    """The order's fragment. With a cache (the hub keeps one per watched order) the
    ledger part, most of the rendering work, is rendered again only when it changed."""
    context = {"snapshot": snapshot, "worker": worker, "oob": True}
    if ledger_cache is not None:
        key = _ledger_key(snapshot)
        if ledger_cache.get("key") != key:
            ledger_cache["key"] = key
            ledger_cache["html"] = render_to_string(
                "orders/partials/order_ledger.html", {"snapshot": snapshot}
            )
        context["ledger_html"] = ledger_cache["html"]
    return render_to_string("orders/partials/order_detail.html", context)


def _ledger_key(snapshot: OrderSnapshot) -> tuple:
    # Everything order_ledger.html shows; a ledger row's other fields never change.
    audit = snapshot.audit
    return (
        snapshot.order.is_final,
        tuple(service.line for service in audit.services) if audit else None,
        tuple(audit.problems) if audit else None,
        tuple((c.id, c.outcome, c.error, c.duration_ms) for c in snapshot.calls),
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


def _load_and_render(
    order_ids: list[int],
    temporal: dict[int, TemporalView | None],
    worker: str,
    ledger_caches: dict[int, dict],
) -> dict[int, tuple[OrderSnapshot, str] | None]:
    """Snapshot and fragment per order (None when it failed). No fragment ("") for an
    order in flight on Temporal not asked yet, so nobody sees a half picture first."""
    worker_up = worker == WORKER_UP
    built: dict[int, tuple[OrderSnapshot, str] | None] = {}
    for pk, record in load_orders(order_ids).items():
        try:
            snapshot = snapshot_of(record, temporal.get(pk), worker_up=worker_up)
            asked = temporal.get(pk) is not None or not snapshot.asks_temporal
            html = render_order(snapshot, worker, ledger_caches[pk]) if asked else ""
        except Exception:
            # One order that cannot be shown must not hold back the rest of the batch.
            log.exception("Rendering order %s failed; it is tried again when it changes", pk)
            built[pk] = None
            continue
        built[pk] = (snapshot, html)
    return built


def _most_overdue(order_ids: list[int], last_done: Callable[[int], float], quota: int) -> list[int]:
    return sorted(order_ids, key=last_done)[:quota]


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
    """One watched order: who watches, and what was last seen, heard and sent."""

    watchers: int = 0
    signature: tuple | None = None
    reload: bool = True  # rebuild from the database on the next tick
    reloaded_at: float = -math.inf
    workflow_id: str = ""  # set while the order is in flight on Temporal
    temporal: TemporalView | None = None
    asking: bool = False  # a describe (and maybe query) under way
    asked_at: float = -math.inf
    queried_at: float = -math.inf
    confirm: int = 0  # describes left to see Temporal schedule a retry the database announced
    compensating: bool = False
    last_html: str = ""
    ledger_cache: dict = field(default_factory=dict)  # the ledger part, rendered once per change
    closed: bool = False  # final (or gone): nothing more will change, nothing is polled


@dataclass
class Hub:
    orders: dict[int, OrderWatch] = field(default_factory=dict)
    orders_task: asyncio.Task | None = None
    _asks: set[asyncio.Task] = field(default_factory=set)  # keeps running asks alive
    board: Watch | None = None
    status: Watch | None = None
    worker: str = "down"
    worker_checked_at: float = -math.inf
    ticked_at: float = -math.inf
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

    def latest_fragment(self, order_id: int) -> str:
        """The fragment last sent to this order's watchers ("" before the first)."""
        watch = self.orders.get(order_id)
        return watch.last_html if watch else ""

    async def _poll_orders(self) -> None:
        """One loop for every watched order. Each tick one query finds what moved, one
        batch reload rebuilds those orders from the database, and Temporal is asked
        (in the background) only to confirm retries and on a slow periodic round."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(ASKS_AT_ONCE)
        while True:
            try:
                await self._tick(loop.time(), limit)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Polling watched orders failed; trying again")
            await asyncio.sleep(ORDER_POLL_S)

    def refresh_every(self) -> float:
        # Many watched orders: the periodic rounds (a workflow task each) spread out.
        open_orders = sum(not watch.closed for watch in self.orders.values())
        return ORDER_REFRESH_S * max(1.0, open_orders / 25)

    async def _tick(self, now: float, limit: asyncio.Semaphore) -> None:
        open_ids = [pk for pk, watch in self.orders.items() if not watch.closed]
        if not open_ids:
            return
        # database_sync_to_async (here and below) closes the thread's connection when it
        # is stale, as Django does after a request: a restarted database is reconnected to.
        read_signatures = database_sync_to_async(_order_signatures, thread_sensitive=False)
        signatures = await read_signatures(open_ids)
        open_ids = [pk for pk in open_ids if pk in self.orders]  # some left while we waited
        every = self.refresh_every()
        # Periodic work is spread over the ticks of a round: orders watched together
        # would otherwise all fall due on the same tick, and that tick would be slow.
        # A busy tick takes longer than ORDER_POLL_S, so the share follows the clock.
        since_last = min(max(now - self.ticked_at, ORDER_POLL_S), every)
        self.ticked_at = now
        periodic_quota = math.ceil(len(open_ids) * since_last / every)
        due = []
        for pk in open_ids:
            watch = self.orders[pk]
            signature = signatures.get(pk)
            if signature != watch.signature:
                watch.signature, watch.reload, watch.confirm = signature, True, CONFIRM_TRIES
            if watch.reload:
                due.append(pk)
        # A plain-script order turns lost by going quiet, which changes no row: reread
        # those now and then. Orders on Temporal are reread when Temporal's answer moves.
        stale = [
            pk
            for pk in open_ids
            if not self.orders[pk].workflow_id and now - self.orders[pk].reloaded_at >= every
        ]
        due += _most_overdue(stale, lambda pk: self.orders[pk].reloaded_at, periodic_quota)
        due = list(dict.fromkeys(due))  # a plain order can be both changed and stale
        for pk in due:
            self.orders[pk].reload, self.orders[pk].reloaded_at = False, now
        if due:
            try:
                await self._rebuild(due)
            except Exception:
                for pk in due:  # nothing was shown: try again on the next tick
                    if pk in self.orders:
                        self.orders[pk].reload = True
                raise
        open_ids = [pk for pk in open_ids if pk in self.orders]
        asking = [pk for pk in open_ids if self._may_ask(pk)]
        urgent = [
            pk for pk in asking if self.orders[pk].temporal is None or self.orders[pk].confirm
        ]
        overdue = [pk for pk in asking if now - self.orders[pk].asked_at >= every]
        periodic = _most_overdue(overdue, lambda pk: self.orders[pk].asked_at, periodic_quota)
        for pk in dict.fromkeys(urgent + periodic):
            watch = self.orders[pk]
            query = watch.temporal is None or watch.compensating or now - watch.queried_at >= every
            watch.asking = True
            watch.confirm = max(0, watch.confirm - 1)
            task = asyncio.create_task(self._ask(pk, watch, limit, query=query))
            self._asks.add(task)
            task.add_done_callback(self._asks.discard)

    def _may_ask(self, order_id: int) -> bool:
        watch = self.orders.get(order_id)
        return bool(watch and not watch.closed and watch.workflow_id and not watch.asking)

    async def _rebuild(self, order_ids: list[int]) -> None:
        """Reload orders from the database, merge what Temporal said, render, send."""
        worker = self.worker
        temporal = {pk: self.orders[pk].temporal for pk in order_ids}
        ledger_caches = {pk: self.orders[pk].ledger_cache for pk in order_ids}
        # One hop to a thread for the whole batch: loading and rendering are sync work.
        built = await database_sync_to_async(_load_and_render, thread_sensitive=False)(
            order_ids, temporal, worker, ledger_caches
        )
        layer = get_channel_layer()
        for pk in order_ids:
            watch = self.orders.get(pk)
            if watch is None:
                continue
            if pk not in built:  # deleted meanwhile
                watch.closed = True
                continue
            if (entry := built[pk]) is None:  # could not be rendered (logged)
                continue
            snapshot, html = entry
            watch.workflow_id = snapshot.order.workflow_id if snapshot.asks_temporal else ""
            watch.compensating = snapshot.compensating
            if not snapshot.awaits_schedule:
                # After a change during compensation, one query shows how far the saga got.
                watch.confirm = 1 if snapshot.compensating and watch.confirm else 0
            if not html:  # in flight on Temporal and not asked yet: wait for its answer
                continue
            if html != watch.last_html:
                await layer.group_send(order_group(pk), {"type": "send.html", "html": html})
                watch.last_html = html  # only once sent: a failed send is tried again
            watch.closed = snapshot.source == SOURCE_FINAL  # never polled again

    async def _ask(
        self, order_id: int, watch: OrderWatch, limit: asyncio.Semaphore, *, query: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with limit:
                heard = await ask_temporal(
                    watch.workflow_id,
                    worker_up=self.worker == WORKER_UP,
                    query=query,
                    previous=watch.temporal,
                )
            self.temporal_calls += 2 if heard.queried else 1
            if heard.queried:
                watch.queried_at = loop.time()
            if not heard.reachable:
                watch.confirm = 0  # no point asking again before the periodic round
            if heard != watch.temporal:
                watch.temporal = heard
                watch.reload = True
        except Exception:
            log.exception("Asking Temporal about order %s failed; trying again", order_id)
            if watch.temporal is None:  # render what the database knows meanwhile
                watch.temporal, watch.reload = TemporalView(reachable=False), True
        finally:
            # Failed or not, the next periodic round decides when to ask again.
            watch.asked_at = loop.time()
            watch.asking = False

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
        worker = await worker_status()
        self.temporal_calls += 1
        self.worker_checked_at = asyncio.get_running_loop().time()
        if worker != self.worker:
            self.worker = worker
            for watch in self.orders.values():
                watch.reload = True  # the order pages say whether a worker answers
                if worker == WORKER_UP:
                    # Queries failed or were skipped while it was away: ask again now.
                    watch.queried_at = -math.inf
                    watch.confirm = max(watch.confirm, 1)
        return self.worker

    async def current_worker(self) -> str:
        """The worker status, checked within the status poll interval: a socket that
        connects while others are open costs Temporal nothing."""
        fresh = asyncio.get_running_loop().time() - self.worker_checked_at < STATUS_POLL_S
        if self.status is not None and not self.status.task.done() and fresh:
            return self.worker
        return await self.refresh_worker()

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
                signature = await database_sync_to_async(_board_signature)()
                if signature != last_signature:
                    last_signature = signature
                    fragments = await database_sync_to_async(render_board)()
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
        tasks = [w.task for w in [self.board, self.status] if w] + list(self._asks)
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
        self.worker_checked_at = -math.inf


hub = Hub()
