"""The live hub: one loop per web process that decides what to ask and when, and publishes.

Sockets tell the hub what they watch (an order, the board, the worker status) and on which
channel. Each tick (every 25 ms) the loop reads the watched orders' database signatures in
one query, rebuilds and renders the ones that moved in one thread hop, and sends each
order's fragment to its watchers as soon as it is rendered (while the next renders), and
only when it changed. Temporal is asked in the background: at once
for an order newly watched, quickly again while a retry the database announced waits for
Temporal's schedule (or while a saga runs), and otherwise on a slow periodic round. So
Temporal load grows with the orders watched, never with the number of sockets. The board
and the worker status are refreshed by the same loop on their own, slower clocks, and so
are the board's metrics (strip and charts), rendered once per round for every board; each
board socket watches its own filter and page (orders/board.py), and a board is read and
rendered again only when the newest change to any order (an index lookup, whatever the
number of orders) or a switch moved; a board showing orders on a step is rendered again
from the rows it read as their time there grows.

Rendering lives in orders/render.py, the picture of one order in orders/progress.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone

from orders.contract import OrderStatus
from orders.metrics import current_metrics
from orders.models import Engine, Order
from orders.progress import (
    OrderSnapshot,
    Source,
    TemporalView,
    ask_temporal,
    in_flight_on_temporal,
    load_orders,
    snapshot_of,
)
from orders.render import render_boards, render_metrics, render_order, render_status
from orders.simulator.models import ServiceSwitch
from orders.temporal import WORKER_DOWN, WORKER_UP, worker_status

log = logging.getLogger(__name__)
T = TypeVar("T")

TICK_S = 0.025  # how often the watched orders' database signatures are checked
FOLLOW_UP_S = 0.05  # first follow-up ask after a retry the database announced; then doubling
REFRESH_S = 2.0  # Temporal is asked at least this often about each watched order
BOARD_EVERY_S = 0.25
BOARD_CLOCK_S = 5.0  # a board showing orders on a step: their time there (and stuck marks)
STATUS_EVERY_S = 1.0
# The metrics are per minute over 15 minutes: a few seconds late is still right, and a
# slow clock keeps their six window queries off the busy path.
METRICS_EVERY_S = 3.0  # while orders move
# While nothing moves, the strip's per-minute windows still roll on: this often is enough.
METRICS_QUIET_S = 15.0
ASKS_AT_ONCE = 32  # Temporal calls in flight at once: waiting on the server, not CPU


@dataclass
class OrderWatch:
    """One watched order: who watches, what was last seen, heard and sent."""

    channels: set[str] = field(default_factory=set)  # the watching sockets' channels
    signature: tuple | None = None  # the database's, as last read
    dirty: bool = True  # rebuild from the database on the next tick
    snapshot: OrderSnapshot | None = None  # the picture last built
    temporal: TemporalView | None = None  # Temporal's last answer
    ask_at: float = 0.0  # when to ask Temporal next (loop clock)
    quick_asks: int = 0  # follow-up asks in a row, each a little later than the last
    asking: bool = False
    html: str = ""  # the fragment last sent
    ledger_cache: dict = field(default_factory=dict)
    effects: tuple | None = None  # its ledger and effects as last read (load_orders' cache)

    @property
    def watchers(self) -> int:
        return len(self.channels)

    @property
    def workflow_id(self) -> str:
        """The workflow to ask about, while the order is in flight on Temporal."""
        order = self.snapshot.order if self.snapshot else None
        return order.workflow_id if order is not None and in_flight_on_temporal(order) else ""

    @property
    def closed(self) -> bool:
        """Over (or gone): nothing will change, nothing is polled."""
        return self.snapshot is not None and self.snapshot.source == Source.FINAL

    @property
    def needs_follow_up(self) -> bool:
        """Temporal knows something soon that the page waits for: a retry's schedule, or
        how far the saga got."""
        return self.snapshot is not None and (
            self.snapshot.awaits_schedule or self.snapshot.compensating
        )


@dataclass
class BoardWatch:
    """The sockets watching one filtered page of the board, and the list they last got."""

    channels: set[str] = field(default_factory=set)
    html: str = ""
    ticking: bool = False  # it shows orders on a step: re-rendered as their time grows
    page: dict | None = None  # the rows last read, rendered again while nothing moves


class Hub:
    def __init__(self) -> None:
        self.orders: dict[int, OrderWatch] = {}
        self.boards: dict[str, BoardWatch] = {}  # by filter and page ("" = all, page 1)
        self.status_channels: set[str] = set()
        self.worker = WORKER_DOWN
        self.temporal_calls = 0  # counted for the fan-out benchmark
        self._loop_task: asyncio.Task | None = None
        # Set when something new is watched: wakes a loop idling between its clocks (made
        # by the loop itself, in the event loop it runs in).
        self._wake: asyncio.Event | None = None
        self._jobs: set[asyncio.Task] = set()  # asks and refreshes under way
        self._busy: set[str] = set()  # names of the periodic refreshes under way
        self._board_at = self._status_at = 0.0
        self._board_signature: tuple | None = None  # the database's, as last rendered
        self._board_clock = 0  # the BOARD_CLOCK_S period last rendered (0: not ticking)
        self._switches_html = ""
        self._status_html = ""
        self._metrics_at = 0.0
        self._metrics_quiet_at = 0.0
        self._metrics_signature: tuple | None = None  # the board's, when metrics were made
        self._metrics_html = ""
        self._metrics_worker = ""  # the worker status the metrics last sent show
        self._worker_checked_at = -1e9
        # One render in flight shared by every socket that joins meanwhile.
        self._rendering: dict[str, asyncio.Future] = {}

    # What sockets watch, each by its channel -----------------------------------------
    @property
    def board_channels(self) -> set[str]:
        return {channel for board in self.boards.values() for channel in board.channels}

    @property
    def board_watchers(self) -> int:
        return sum(len(board.channels) for board in self.boards.values())

    @property
    def status_watchers(self) -> int:
        return len(self.status_channels)

    def watch_order(self, order_id: int, channel: str) -> None:
        self.orders.setdefault(order_id, OrderWatch()).channels.add(channel)
        self._ensure_running()

    def unwatch_order(self, order_id: int, channel: str) -> None:
        watch = self.orders.get(order_id)
        if watch is not None:
            watch.channels.discard(channel)
            if not watch.channels:
                del self.orders[order_id]
        self._stop_when_idle()

    def may_watch_board(self, query: str) -> bool:
        """A board already live costs nothing more; beyond LIVE_BOARDS_MAX distinct ones
        (each rendered again on every change) no new one goes live."""
        return query in self.boards or len(self.boards) < settings.LIVE_BOARDS_MAX

    def watch_board(self, channel: str, query: str = "") -> None:
        """Watch one page of the board, filtered by `query` (BoardFilter.page_query)."""
        if not self.board_channels:
            self._metrics_html = ""  # nobody watched: the metrics last sent may be old
        board = self.boards.setdefault(query, BoardWatch())
        if not board.channels:
            self._board_signature = None  # nobody watched it: what it last got may be old
        board.channels.add(channel)
        self._ensure_running()

    def unwatch_board(self, channel: str, query: str = "") -> None:
        board = self.boards.get(query)
        if board is not None:
            board.channels.discard(channel)
            if not board.channels:
                del self.boards[query]
        self._stop_when_idle()

    def watch_status(self, channel: str) -> None:
        if not self.status_channels:
            self._status_html = ""  # nobody watched: what was last sent may be old
        self.status_channels.add(channel)
        self._ensure_running()

    def unwatch_status(self, channel: str) -> None:
        self.status_channels.discard(channel)
        self._stop_when_idle()

    def latest_fragment(self, order_id: int) -> str:
        """The fragment last sent to this order's watchers ("" before the first)."""
        watch = self.orders.get(order_id)
        return watch.html if watch else ""

    async def board_snapshot(self, query: str = "") -> tuple[str, str]:
        """The board for a socket that joins: as its watchers last got it, or rendered
        once for all the sockets joining together (hundreds may, after a reload)."""
        board = self.boards.get(query)
        if board and board.html and self._switches_html and self._board_signature is not None:
            return board.html, self._switches_html

        def render() -> tuple[str, str]:
            lists, switches = render_boards([query])
            return lists[query].html, switches or ""

        return await self._render_once(f"board?{query}", render)

    async def metrics_snapshot(self) -> str:
        """The metrics strip and charts for a socket that joins, the same way."""
        if self._metrics_html:
            return self._metrics_html
        worker = self.worker
        return await self._render_once("metrics", lambda: _metrics_fragment(worker))

    async def status_snapshot(self) -> str:
        """The worker status fragment for a socket that joins, the same way."""
        if self._status_html:
            return self._status_html

        def render() -> str:
            return render_status(self.worker)

        await self.current_worker()
        return await self._render_once("status", render)

    async def _render_once(self, name: str, render: Callable[[], T]) -> T:
        rendering = self._rendering.get(name)
        if rendering is None or rendering.done():
            # Not Channels' one sync thread: joining sockets must not queue behind it.
            work = database_sync_to_async(render, thread_sensitive=False)()
            rendering = self._rendering[name] = asyncio.ensure_future(work)
        return await asyncio.shield(rendering)

    async def current_worker(self) -> str:
        """The worker status; a socket that connects while others are open costs nothing."""
        now = asyncio.get_running_loop().time()
        if self.status_watchers > 1 and now - self._worker_checked_at < STATUS_EVERY_S:
            return self.worker
        return await self.refresh_worker()

    # The loop -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """The loop runs while anything is watched, and only then."""
        return self._loop_task is not None and not self._loop_task.done()

    def _ensure_running(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run())

    def _stop_when_idle(self) -> None:
        if self.orders or self.board_watchers or self.status_watchers:
            return
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(ASKS_AT_ONCE)
        wake = self._wake = asyncio.Event()
        while True:
            started = loop.time()
            try:
                await self.tick(started, limit)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The live hub's tick failed; trying again")
                started = loop.time()  # after a failure, a whole TICK_S before the next
            # Ticks start TICK_S apart; one that took longer (a large batch) is followed at
            # once, since whatever changed meanwhile has waited long enough.
            wake.clear()
            with contextlib.suppress(TimeoutError):
                pause = max(0.0, self._next_tick_at(started) - loop.time())
                await asyncio.wait_for(wake.wait(), pause)

    def _next_tick_at(self, started: float) -> float:
        """Watched orders are checked every TICK_S. A hub that watches only boards and the
        worker status sleeps until its next clock is due, so an idle board costs its
        clocks' queries and nothing more; a newly watched order wakes it at once."""
        if self.orders:
            return started + TICK_S
        clocks = [self._status_at] if self.status_watchers else []
        if self.board_watchers:
            clocks += [self._board_at, self._metrics_next_at()]
        return max(started + TICK_S, min(clocks, default=started + TICK_S))

    def _metrics_next_at(self) -> float:
        """When the metrics may fall due. While nothing moved that is their quiet clock,
        not the busy one: waking on the busy one would find nothing to do, every TICK_S
        until the quiet one came. A move is seen by the board's check, on a clock of its
        own, and a worker that came or went by the status's."""
        if self._board_signature == self._metrics_signature:
            return max(self._metrics_at, self._metrics_quiet_at)
        return self._metrics_at

    async def tick(self, now: float, limit: asyncio.Semaphore) -> None:
        """One round: worker status and board on their clocks, then the watched orders."""
        if self.status_watchers and now >= self._status_at:
            self._status_at = now + STATUS_EVERY_S
            self._start("status", self._publish_status())
        if self.board_watchers and now >= self._board_at:
            self._board_at = now + BOARD_EVERY_S
            self._start("board", self._publish_board())
        if self.board_watchers and self._metrics_due(now):
            self._metrics_at = now + METRICS_EVERY_S
            self._metrics_quiet_at = now + METRICS_QUIET_S
            self._metrics_signature = self._board_signature
            self._start("metrics", self._publish_metrics())
        await self._refresh_orders(now)
        for pk in self._due_asks(now):
            watch = self.orders[pk]
            watch.asking = True
            self._start("", self._ask(pk, watch, limit))

    def refresh_every(self) -> float:
        # Many watched orders: the periodic rounds (a workflow task each) spread out.
        open_orders = sum(not watch.closed for watch in self.orders.values())
        return REFRESH_S * max(1.0, open_orders / 25)

    async def _refresh_orders(self, now: float) -> None:
        """Read the signatures, rebuild the orders that moved or were marked, send."""
        watches = {pk: watch for pk, watch in self.orders.items() if not watch.closed}
        if not watches:
            return
        for watch in watches.values():
            if watch.snapshot is not None and not watch.workflow_id and now >= watch.ask_at:
                # Off Temporal (the plain script) an order turns lost by going quiet,
                # which changes no row: reread those now and then.
                watch.dirty, watch.ask_at = True, now + self.refresh_every()
        marked = {pk for pk, watch in watches.items() if watch.dirty}
        for pk in marked:
            watches[pk].dirty = False  # marked again by whatever is heard meanwhile
        loop = asyncio.get_running_loop()
        tick = _Tick()

        def ready(pk: int, entry: Built | None) -> None:
            # Called in the rendering thread as each order is ready: handed to the loop,
            # which sends it at once while the thread renders the next. Orders that
            # change together (a wave of retries) no longer all wait for the last one.
            loop.call_soon_threadsafe(self._take_built, tick, pk, watches[pk], entry)

        try:
            # One hop to a thread per tick: the signatures, then loading and rendering what
            # moved, are sync work. database_sync_to_async closes the thread's stale
            # connection, as Django does after a request: a restarted database is
            # reconnected to. The loop runs callbacks in the order they came, so every
            # order handed to `ready` is taken before the hop's own answer arrives.
            signatures = await database_sync_to_async(_read_and_build, thread_sensitive=False)(
                watches, marked, self.worker, ready
            )
            for pk, watch in watches.items():
                if signatures.get(pk) != watch.signature:
                    watch.signature, watch.quick_asks = signatures.get(pk), 0
            for pk in tick.taken:
                watch = self.orders.get(pk)
                if watch is not None and watch.needs_follow_up and watch.quick_asks == 0:
                    watch.ask_at = min(watch.ask_at, now)
        except Exception:
            await tick.close()
            for pk in marked | set(tick.taken):  # nothing was shown: try again next tick
                if pk in self.orders:
                    self.orders[pk].dirty = True
            raise
        except asyncio.CancelledError:
            for send in tick.sends.values():  # the hub is stopping: nobody waits for them
                send.cancel()
            raise
        finally:
            # A tick cancelled while its thread still renders (the hub stopping): what
            # the thread hands over afterwards is dropped, as the whole batch was before.
            tick.over = True
        # This tick's fragments are out before the next tick renders newer ones.
        if failed := await tick.close():
            for pk in failed:
                if pk in self.orders:
                    self.orders[pk].dirty = True
            errors = [exc for exc in failed.values() if isinstance(exc, Exception)]
            if errors:  # a send cancelled from outside is tried again, not a failure
                raise errors[0]

    def _take_built(self, tick: _Tick, pk: int, watch: OrderWatch, entry: Built | None) -> None:
        """One order rebuilt (None: gone from the database): keep its picture, and send
        its fragment to its watchers if it changed."""
        if tick.over or self.orders.get(pk) is not watch:  # left (and came back) meanwhile
            return
        if entry is None:  # gone from the database: nothing to watch
            watch.snapshot = None
            del self.orders[pk]
            return
        tick.taken.append(pk)
        watch.snapshot, html = entry
        if html and html != watch.html:
            tick.sends[pk] = asyncio.ensure_future(_send_fragment(watch, html))

    def _due_asks(self, now: float) -> list[int]:
        return [
            pk
            for pk, watch in self.orders.items()
            if watch.workflow_id and not watch.asking and now >= watch.ask_at
        ]

    async def _ask(self, order_id: int, watch: OrderWatch, limit: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        follow_up = watch.needs_follow_up and watch.quick_asks > 0
        # A follow-up for a retry's schedule needs describe only; the query (a workflow
        # task on the worker) comes with the first answer, the saga and the periodic round.
        query = (
            watch.temporal is None
            or not follow_up
            or bool(watch.snapshot and watch.snapshot.compensating)
        )
        try:
            async with limit:
                heard = await ask_temporal(
                    watch.workflow_id,
                    worker_up=self.worker == WORKER_UP,
                    query=query,
                    previous=watch.temporal,
                )
            self.temporal_calls += 2 if query and self.worker == WORKER_UP else 1
            if heard != watch.temporal:
                watch.temporal, watch.dirty = heard, True
        except Exception:
            log.exception("Asking Temporal about order %s failed; trying again", order_id)
            if watch.temporal is None:  # render what the database knows meanwhile
                watch.temporal, watch.dirty = TemporalView(reachable=False), True
        finally:
            watch.asking = False
            now = loop.time()
            reachable = watch.temporal is not None and watch.temporal.reachable
            if watch.needs_follow_up and reachable and watch.quick_asks < 8:
                watch.quick_asks += 1
                watch.ask_at = now + FOLLOW_UP_S * 2 ** (watch.quick_asks - 1)
            else:
                # Spread out: orders watched together would otherwise all fall due at once.
                jitter = random.uniform(0.8, 1.2)  # noqa: S311 - timing, not secrets
                watch.ask_at = now + self.refresh_every() * jitter

    # Worker status and board -----------------------------------------------------------
    async def refresh_worker(self) -> str:
        worker = await worker_status()
        self.temporal_calls += 1
        self._worker_checked_at = asyncio.get_running_loop().time()
        if worker != self.worker:
            self.worker = worker
            for watch in self.orders.values():
                watch.dirty = True  # the order pages say whether a worker answers
                if worker == WORKER_UP:
                    # Queries failed or were skipped while it was away: ask again now.
                    watch.ask_at, watch.quick_asks = 0.0, 0
        return self.worker

    async def _publish_status(self) -> None:
        html = await database_sync_to_async(render_status)(await self.refresh_worker())
        if html != self._status_html:
            await _send(self.status_channels, html)
            self._status_html = html

    async def _publish_board(self) -> None:
        ticking = any(board.ticking for board in self.boards.values())
        signature = await database_sync_to_async(_board_signature)()
        period = int(time.time() // BOARD_CLOCK_S)
        if signature == self._board_signature and (period if ticking else 0) == self._board_clock:
            return
        # Only the clock moved: the orders on a step have been there longer. The pages
        # read last are rendered again as of now, without reading (and counting) again.
        pages = {}
        if signature == self._board_signature:
            pages = {query: board.page for query, board in self.boards.items() if board.page}
        lists, switches = await database_sync_to_async(render_boards)(list(self.boards), pages)
        for query, rendered in lists.items():
            board = self.boards.get(query)  # some left while we rendered
            if board is None:
                continue
            board.ticking, board.page = rendered.ticking, rendered.page
            if rendered.html != board.html:
                await _send(board.channels, rendered.html)
                board.html = rendered.html
        if switches is not None and switches != self._switches_html:
            await _send(self.board_channels, switches)
            self._switches_html = switches
        if self.boards.keys() <= lists.keys():
            # Not when a board first watched meanwhile was left out: it is rendered next tick.
            ticking = any(board.ticking for board in self.boards.values())
            self._board_signature, self._board_clock = signature, period if ticking else 0

    def _metrics_due(self, now: float) -> bool:
        if self._worker_checked_at < 0:
            return False  # the strip says whether the worker is up: know it first
        # At once when the worker came or went; every few seconds while any order moves
        # (the board's signature, read anyway); now and then while nothing does.
        if self.worker != self._metrics_worker:
            return True
        if now < self._metrics_at:
            return False
        return self._board_signature != self._metrics_signature or now >= self._metrics_quiet_at

    async def _publish_metrics(self) -> None:
        worker = self.worker
        html = await database_sync_to_async(_metrics_fragment, thread_sensitive=False)(worker)
        if html != self._metrics_html:
            await _send(self.board_channels, html)
            self._metrics_html = html
        self._metrics_worker = worker

    def _start(self, name: str, job: Coroutine) -> None:
        """Run a job beside the loop; a named one at most once at a time."""
        if name and name in self._busy:
            job.close()
            return

        async def run() -> None:
            try:
                await job
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The live hub's %s refresh failed; trying again", name or "ask")
            finally:
                self._busy.discard(name)

        self._busy.add(name)
        task = asyncio.create_task(run())
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def stop(self) -> None:
        tasks = [*self._jobs, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.__init__()


async def _send_fragment(watch: OrderWatch, html: str) -> None:
    await _send(watch.channels, html)
    watch.html = html  # only once sent: a failed send is tried again


async def _send(channels: Iterable[str], html: str) -> None:
    """A fragment to each watching socket's own channel.

    Not a group send: the in-memory layer sweeps every channel and every group membership
    for expired messages on each group send (and each receive), and with hundreds of
    sockets those sweeps cost more than the sends. As with a group send, a socket that
    stopped reading (its channel full) misses the fragment; its next one is whole again.
    """
    layer = get_channel_layer()
    message = {"type": "send.html", "html": html}
    for channel in list(channels):
        with contextlib.suppress(ChannelFull):
            await layer.send(channel, message)


def _metrics_fragment(worker: str) -> str:
    return render_metrics(current_metrics(), worker)


# An order rebuilt: its picture, and the fragment to send ("" for none yet).
Built = tuple[OrderSnapshot, str]


@dataclass
class _Tick:
    """One round of rebuilding the watched orders: what it took and sent."""

    taken: list[int] = field(default_factory=list)
    sends: dict[int, asyncio.Task] = field(default_factory=dict)
    over: bool = False  # nothing handed over from now on is taken

    async def close(self) -> dict[int, BaseException]:
        """Wait for every send; the orders whose send failed, with why."""
        outcomes = await asyncio.gather(*self.sends.values(), return_exceptions=True)
        return {
            pk: outcome
            for pk, outcome in zip(self.sends, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        }


def _read_and_build(
    watches: dict[int, OrderWatch],
    marked: set[int],
    worker: str,
    ready: Callable[[int, Built | None], None],
) -> dict[int, tuple]:
    """The signatures of the watched orders; each order whose signature moved (or that
    was marked: Temporal said something new, the worker came or went) is rebuilt and
    handed to `ready` as soon as it is."""
    signatures = _order_signatures(list(watches))
    moved = {
        pk: watch
        for pk, watch in watches.items()
        if pk in marked or signatures.get(pk) != watch.signature
    }
    if moved:
        _load_and_render(moved, worker, ready)
    return signatures


def _load_and_render(
    watches: dict[int, OrderWatch], worker: str, ready: Callable[[int, Built | None], None]
) -> None:
    """Snapshot and fragment per order, each handed to `ready` once built; None for an
    order that no longer exists. No fragment ("") for an order in flight on Temporal not
    asked yet, so nobody sees a half picture first. An order that fails to render is left
    out and tried again when it changes."""
    worker_up = worker == WORKER_UP
    effects = {pk: watch.effects for pk, watch in watches.items() if watch.effects is not None}
    records = load_orders(watches, effects)  # every order's rows in a handful of queries
    for pk, read in effects.items():
        watches[pk].effects = read
    for pk in watches.keys() - records.keys():
        ready(pk, None)
    for pk, record in records.items():
        watch = watches[pk]
        try:
            snapshot = snapshot_of(record, watch.temporal, worker_up=worker_up)
            asked = watch.temporal is not None or not in_flight_on_temporal(record.order)
            html = render_order(snapshot, worker, watch.ledger_cache) if asked else ""
        except Exception:
            # One order that cannot be shown must not hold back the rest of the batch.
            log.exception("Rendering order %s failed; it is tried again when it changes", pk)
            continue
        ready(pk, (snapshot, html))


def _order_signatures(order_ids: list[int]) -> dict[int, tuple]:
    """Per order, a value that changes whenever anything about it is recorded.

    orders/steps.py touches the order's updated_at last, after the ledger row and the
    step record, so a change seen here is a change that is complete.

    Read on every tick, so in plain SQL: building the ORM query (and turning each
    updated_at into a datetime) cost several times the query itself. The values are only
    compared with the previous ones.
    """
    if not order_ids:
        return {}
    table, pk = connection.ops.quote_name(Order._meta.db_table), Order._meta.pk.column
    marks = ", ".join(["%s"] * len(order_ids))
    sql = f"SELECT {pk}, updated_at, status FROM {table} WHERE {pk} IN ({marks})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, order_ids)
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _board_signature() -> tuple:
    """What moves any board: the newest order and the newest change to one (two index
    lookups, whatever the number of orders), plain-script orders going quiet, and the
    switches. Read four times a second, so in plain SQL, as _order_signatures."""
    table = connection.ops.quote_name(Order._meta.db_table)
    switches = connection.ops.quote_name(ServiceSwitch._meta.db_table)
    # Each MAX in a subquery of its own: SQLite and PostgreSQL then read it off the end
    # of its index; two in one SELECT (an aggregate() of both) would scan every order.
    # A plain-script order turns "lost" by going quiet, which changes no row: count them
    # (few: the status index finds the running ones).
    orders = (
        f"SELECT (SELECT MAX(id) FROM {table}), (SELECT MAX(updated_at) FROM {table}),"  # noqa: S608
        f" (SELECT COUNT(*) FROM {table} WHERE engine = %s AND status = %s AND updated_at < %s)"
    )
    quiet_since = timezone.now() - timedelta(seconds=Order.PLAIN_STALL_S)
    values = [Engine.PLAIN.value, OrderStatus.RUNNING.value]
    values.append(connection.ops.adapt_datetimefield_value(quiet_since))
    with connection.cursor() as cursor:
        cursor.execute(orders, values)
        newest = cursor.fetchone()
        cursor.execute(f"SELECT mode, failures_left, latency_ms FROM {switches} ORDER BY id")  # noqa: S608
        return (*newest, tuple(cursor.fetchall()))


hub = Hub()
