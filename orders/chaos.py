"""The chaos run: orders on both engines while services break at random, then the score.

A run places the same order in the Temporal workflow and in the plain script, again and
again, while it flips the services' switches (down, flaky, slow, crash) through the same
code as the page, recorded under the run's name. A crash switch kills whichever worker
process runs that call, from anywhere. Given a way to stop and start the Temporal server
(the local stack's dev server), it restarts that too. Then it sets every switch healthy,
waits (bounded) for every order to settle and scores them.

The scoreboard is computed from the database, with the audit's verdict on each order
(orders/audit.py is the one definition of what is wrong with an order), so the terminal,
the dashboard's panel and a test all read the same numbers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from orders.actions import record_switch
from orders.audit import OrderEffects, Trouble, audit_order, stock_out_of_balance
from orders.contract import SERVICES, OrderStatus
from orders.forms import MAX_CHAOS_MINUTES, MAX_CHAOS_ORDERS, SwitchForm, apply_switch
from orders.models import ChaosRun, Engine, Order
from orders.placement import create_order, start_workflow
from orders.simulator.models import Mode, Product, ServiceCall, ServiceSwitch
from orders.simulator.services import CRASH_MESSAGE

log = logging.getLogger(__name__)

# Bounds for what a person may ask for, from the terminal or the page.
MAX_ORDERS = MAX_CHAOS_ORDERS
MAX_MINUTES = MAX_CHAOS_MINUTES
MAX_TEMPORAL_RESTARTS = 20
MAX_SETTLE_MINUTES = 120
DEFAULT_SETTLE_MINUTES = 10

# A run whose process has not beaten for this long has gone away with it.
STALE_AFTER = timedelta(seconds=30)
HEARTBEAT_EVERY_S = 1.0
TICK_S = 0.2
# Seconds between two switch flips, and how long Temporal stays away when restarted.
FLIP_EVERY_S = (2.0, 6.0)
TEMPORAL_DOWN_S = 6.0
# Healthy comes up as often as the others together, so services recover as often as
# they break, and each breakage meets orders in flight.
MODE_WEIGHTS = {Mode.HEALTHY: 4, Mode.DOWN: 1, Mode.FLAKY: 2, Mode.SLOW: 2, Mode.CRASH: 2}
SLOW_LATENCIES_MS = (800, 2500, 6000)  # the last one is past the 5 s timeout


class ChaosRefused(Exception):
    """The run cannot start; the message says why. Nothing was changed."""


class TemporalControl(Protocol):
    """A Temporal server this process may stop and start (the local stack's dev server)."""

    def stop(self) -> None: ...

    def start(self) -> None: ...


# --- the scoreboard ------------------------------------------------------------------------


# (attribute, label) in the order the scoreboard prints them.
SCORE_ROWS = (
    ("placed", "placed"),
    ("completed", "completed"),
    ("completed_with_warnings", "completed with warnings"),
    ("failed", "failed and compensated"),
    ("queued", "queued"),
    ("in_flight", "still in flight"),
    ("lost", "lost"),
    ("charged_twice", "charged twice"),
    ("charge_stranded", "charged without shipment or refund"),
    ("stock", "stock out of balance"),
    ("incomplete", "completed without an effect"),
)
# What must be zero in the Temporal lane once everything has settled.
BROKEN_PROMISES = (
    "queued",
    "in_flight",
    "lost",
    "charged_twice",
    "charge_stranded",
    "stock",
    "incomplete",
)


@dataclass
class EngineScore:
    placed: int = 0
    completed: int = 0
    completed_with_warnings: int = 0
    failed: int = 0
    queued: int = 0
    in_flight: int = 0
    lost: int = 0
    charged_twice: int = 0
    charge_stranded: int = 0
    stock: int = 0
    incomplete: int = 0
    # Order numbers with any problem, for the reader who wants to look.
    broken_orders: list[int] = field(default_factory=list)

    def count(self, order: Order, troubles: set[Trouble]) -> None:
        self.placed += 1
        status = order.status
        if status == OrderStatus.COMPLETED:
            self.completed += 1
        elif status == OrderStatus.COMPLETED_WITH_WARNINGS:
            self.completed_with_warnings += 1
        elif status in (OrderStatus.FAILED, OrderStatus.CANCELLED, OrderStatus.REJECTED):
            self.failed += 1  # compensated, unless a trouble below says otherwise
        elif status == OrderStatus.QUEUED or (
            status == OrderStatus.PENDING and order.engine == Engine.PLAIN
        ):
            self.queued += 1  # waiting to start: for Temporal, or for the plain runner
        elif status != OrderStatus.STOPPED and not order.is_lost:
            self.in_flight += 1
        # Temporal stopping a workflow before the order ended is a loss, said as such.
        self.lost += Trouble.LOST in troubles or status == OrderStatus.STOPPED
        self.charged_twice += Trouble.CHARGED_TWICE in troubles
        self.charge_stranded += Trouble.CHARGE_STRANDED in troubles
        self.stock += Trouble.STOCK in troubles
        self.incomplete += Trouble.INCOMPLETE in troubles
        if troubles or status == OrderStatus.STOPPED:
            self.broken_orders.append(order.pk)

    @property
    def promises_kept(self) -> bool:
        return not any(getattr(self, name) for name in BROKEN_PROMISES)


@dataclass
class Scoreboard:
    engines: dict[str, EngineScore]
    stock_problems: list[str]
    worker_crashes: int = 0
    plain_crashes: int = 0

    @property
    def temporal_ok(self) -> bool:
        """Nothing lost, doubled or stranded in the Temporal lane, and stock that adds up."""
        return self.engines[Engine.TEMPORAL].promises_kept and not self.stock_problems

    def rows(self) -> list[tuple[str, str, int, int]]:
        """(attribute, label, temporal, plain) per line of the scoreboard."""
        temporal, plain = self.engines[Engine.TEMPORAL], self.engines[Engine.PLAIN]
        return [
            (name, label, getattr(temporal, name), getattr(plain, name))
            for name, label in SCORE_ROWS
        ]

    def lines(self) -> list[str]:
        width = max(len(label) for _, label in SCORE_ROWS)
        lines = [f"{'':<{width}}  {'temporal':>8}  {'plain':>8}"]
        for _, label, temporal, plain in self.rows():
            lines.append(f"{label:<{width}}  {temporal:>8}  {plain:>8}")
        lines.append(
            f"worker processes killed by the crash switch: {self.worker_crashes} Temporal worker,"
            f" {self.plain_crashes} plain runner"
        )
        lines += [f"stock out of balance: {problem}" for problem in self.stock_problems]
        for engine, score in self.engines.items():
            if score.broken_orders:
                shown = ", ".join(f"#{pk}" for pk in score.broken_orders[:20])
                more = " …" if len(score.broken_orders) > 20 else ""
                lines.append(f"{engine} orders with a problem: {shown}{more}")
        return lines


def score(orders: Iterable[Order]) -> Scoreboard:
    """The scoreboard of these orders, per engine, from what the database holds now."""
    orders = list(orders)
    ids = [order.pk for order in orders]
    effects = OrderEffects.of_orders(ids)
    ledgers: dict[int, list[ServiceCall]] = {pk: [] for pk in ids}
    for call in ServiceCall.objects.filter(order_id__in=ids).order_by("id"):
        ledgers[call.order_id].append(call)
    engines = {Engine.TEMPORAL: EngineScore(), Engine.PLAIN: EngineScore()}
    crashes = {Engine.TEMPORAL: 0, Engine.PLAIN: 0}
    for order in orders:
        audit = audit_order(order, ledger=ledgers[order.pk], effects=effects[order.pk])
        engines[order.engine].count(order, audit.troubles)
        crashes[order.engine] += sum(call.error == CRASH_MESSAGE for call in ledgers[order.pk])
    return Scoreboard(
        engines,
        stock_out_of_balance(),
        worker_crashes=crashes[Engine.TEMPORAL],
        plain_crashes=crashes[Engine.PLAIN],
    )


def score_run(run: ChaosRun) -> Scoreboard:
    return score(run.orders.select_related("product").order_by("id"))


def panel_context(run: ChaosRun | None = None) -> dict[str, object]:
    """What the dashboard's chaos panel shows: the newest run and its scoreboard now."""
    run = run or current_run()
    board = score_run(run) if run is not None else None
    return {"chaos_run": run, "scoreboard": board}


# --- starting, watching and stopping runs -------------------------------------------------


def current_run() -> ChaosRun | None:
    """The newest run; one whose process went away is marked so (and its switches healed)."""
    run = ChaosRun.objects.first()
    if run is None or not run.active or run.heartbeat_at > timezone.now() - STALE_AFTER:
        return run
    gone = ChaosRun.objects.filter(pk=run.pk, state=run.state, heartbeat_at=run.heartbeat_at)
    if gone.update(
        state=ChaosRun.State.INTERRUPTED,
        finished_at=timezone.now(),
        note="The process running it went away; every switch was set healthy.",
    ):
        restore_switches(run.actor)
    run.refresh_from_db()
    return run


def open_run(
    *,
    orders: int,
    minutes: int,
    actor: str,
    seed: int | None = None,
    temporal_restarts: int = 0,
) -> ChaosRun:
    """Record a new run, or refuse when one is under way or nothing can be ordered."""
    if not _orderable_products().exists():
        raise ChaosRefused(
            "No product in the catalogue is priced under the approval threshold:"
            " seed the catalogue first (python manage.py seed_demo)."
        )
    running = current_run()
    if running is not None and running.active:
        raise _under_way(running)
    try:
        with transaction.atomic():
            return ChaosRun.objects.create(
                started_by=actor,
                orders_per_engine=orders,
                minutes=minutes,
                seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
                temporal_restarts=temporal_restarts,
            )
    except IntegrityError:
        # Two people pressed start at once: both passed the check above, and the
        # database let one row in (one running run, a constraint on ChaosRun).
        raise _under_way(current_run()) from None


def _under_way(run: ChaosRun | None) -> ChaosRefused:
    if run is None:
        return ChaosRefused("Another chaos run started just now; wait for its scoreboard.")
    return ChaosRefused(
        f"Chaos run #{run.pk} is under way (started by {run.started_by});"
        " stop it or wait for its scoreboard."
    )


def request_stop(run: ChaosRun, actor: str) -> bool:
    """Ask a run to stop and heal every switch at once; False when it was not running."""
    asked = ChaosRun.objects.filter(pk=run.pk, state=ChaosRun.State.RUNNING).update(
        stop_requested_by=actor
    )
    if asked:
        restore_switches(run.actor)
    run.refresh_from_db()
    return bool(asked)


def start_in_background(run: ChaosRun) -> threading.Thread:
    """Run it in a thread of this process: the run outlives the request that started it."""

    def run_it() -> None:
        try:
            ChaosDriver(run).run()
        except Exception:
            log.exception("Chaos run #%s failed", run.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=run_it, name=f"chaos-run-{run.pk}", daemon=True)
    thread.start()
    return thread


def restore_switches(actor: str) -> None:
    """Every service healthy again, each flip recorded under the run's name (a switch
    healthy already is left alone: the record keeps changes, not non-events)."""
    broken = ServiceSwitch.objects.exclude(mode=Mode.HEALTHY).values_list("service", flat=True)
    for service in list(broken):
        _set_switch(service, Mode.HEALTHY, actor)


def _set_switch(service: str, mode: str, actor: str, **numbers: int) -> None:
    # The page's own path: the switch form's validation, apply_switch, the switch record.
    form = SwitchForm({"service": service, "mode": mode, **numbers})
    if not form.is_valid():
        raise ValueError(f"chaos picked an invalid switch setting: {form.errors.as_text()}")
    switch = apply_switch(form.cleaned_data)
    record_switch(service, switch.summary, actor=actor)


def _orderable_products() -> QuerySet[Product]:
    # Orders over the threshold wait for a person's approval: chaos never places those.
    return Product.objects.filter(price_cents__lt=settings.APPROVAL_THRESHOLD_CENTS)


# --- the run itself -------------------------------------------------------------------------


class ChaosDriver:
    """Runs one recorded run to its end in this thread: break things, heal, settle, score."""

    def __init__(
        self,
        run: ChaosRun,
        *,
        temporal: TemporalControl | None = None,
        say: Callable[[str], None] = log.info,
        settle_seconds: float = DEFAULT_SETTLE_MINUTES * 60,
    ) -> None:
        self.run_row = run
        self.temporal = temporal
        self.say = say
        self.settle_seconds = settle_seconds
        # Not for secrets: a seeded generator, so a run can be played again.
        self.rng = random.Random(run.seed)  # noqa: S311
        self.started = time.monotonic()
        self._last_beat = 0.0
        self._stop_by = ""
        self._restarts: list[threading.Thread] = []
        # One event loop for every start: the Temporal client is kept per loop, and a
        # new loop per order (async_to_sync in a thread of its own) would connect anew.
        self._loop = asyncio.new_event_loop()

    def run(self) -> Scoreboard:
        run = self.run_row
        self.say(
            f"Chaos run #{run.pk}: {run.orders_per_engine} orders on each engine over"
            f" {run.minutes} min, seed {run.seed}"
            + (f", {run.temporal_restarts} Temporal restart(s)" if run.temporal_restarts else "")
        )
        try:
            self._break_things()
        except BaseException:
            self._end(ChaosRun.State.INTERRUPTED, "It failed before the end (see the log).")
            raise
        finally:
            for restart in self._restarts:
                restart.join()
            restore_switches(run.actor)
            self._loop.close()
        self._set(state=ChaosRun.State.SETTLING)
        self.say(f"[{self._clock()}] every switch healthy; waiting for the orders to settle")
        settled = self._settle()
        note = f"Stopped by {self._stop_by}. " if self._stop_by else ""
        note += (
            "Every order settled."
            if settled
            else (f"Some orders had not settled after {self.settle_seconds / 60:g} min.")
        )
        self._end(ChaosRun.State.FINISHED, note)
        self.say(note)
        return score_run(run)

    # --- breaking things ---

    def _break_things(self) -> None:
        run = self.run_row
        duration = run.minutes * 60
        interval = duration / run.orders_per_engine
        next_order = self.started
        next_flip = self.started + self.rng.uniform(*FLIP_EVERY_S)
        restarts = [
            self.started + duration * (i + 1) / (run.temporal_restarts + 1)
            for i in range(run.temporal_restarts if self.temporal else 0)
        ]
        placed = 0
        while True:
            now = time.monotonic()
            if self._stop_requested():
                self.say(f"[{self._clock()}] stopped by {self._stop_by}")
                return
            if placed >= run.orders_per_engine and now >= self.started + duration:
                return
            if placed < run.orders_per_engine and now >= next_order:
                self._place_pair(placed)
                placed += 1
                next_order += interval
            if now >= next_flip:
                self._flip()
                next_flip = now + self.rng.uniform(*FLIP_EVERY_S)
            if restarts and now >= restarts[0]:
                restarts.pop(0)
                self._restart_temporal()
            time.sleep(TICK_S)

    def _place_pair(self, number: int) -> None:
        product = _orderable_products().order_by(F("reserved") - F("stock"), "sku").first()
        fields = {
            "product": product,
            "quantity": 1,
            "customer_name": f"Chaos {self.run_row.pk}.{number + 1}",
            "email": "chaos@example.com",
            "phone": "+1 555 0100",
            "address": f"{number + 1} Entropy Street",
        }
        plain = create_order(fields | {"engine": Engine.PLAIN})
        temporal = create_order(fields | {"engine": Engine.TEMPORAL})
        self.run_row.orders.add(plain, temporal)
        try:
            self._loop.run_until_complete(start_workflow(temporal))
        except Exception:  # saved queued before Temporal was asked: the starter has it
            log.exception("Chaos run #%s: starting order %s failed", self.run_row.pk, temporal.pk)

    def _flip(self) -> None:
        if self._stop_requested(fresh=True):
            return  # a stop just healed every switch: break nothing after it
        service = self.rng.choice(SERVICES)
        mode = self.rng.choices(list(MODE_WEIGHTS), weights=list(MODE_WEIGHTS.values()))[0]
        numbers = {}
        if mode == Mode.FLAKY:
            numbers["failures"] = self.rng.randint(1, 4)
        if mode == Mode.SLOW:
            numbers["latency_ms"] = self.rng.choice(SLOW_LATENCIES_MS)
        _set_switch(service, mode, self.run_row.actor, **numbers)
        ChaosRun.objects.filter(pk=self.run_row.pk).update(switch_flips=F("switch_flips") + 1)
        detail = "".join(f" {value}" for value in numbers.values())
        self.say(f"[{self._clock()}] {service} → {mode}{detail}")

    def _restart_temporal(self) -> None:
        """Stop Temporal, leave it away a few seconds (orders keep coming: they queue),
        start it again; in a thread, so placing goes on meanwhile."""
        temporal = self.temporal
        assert temporal is not None

        def restart() -> None:
            self.say(f"[{self._clock()}] Temporal server stopped")
            temporal.stop()
            time.sleep(TEMPORAL_DOWN_S)
            try:
                temporal.start()
            except Exception:
                log.exception("Chaos run #%s: Temporal did not start again", self.run_row.pk)
                return
            ChaosRun.objects.filter(pk=self.run_row.pk).update(
                temporal_restarts_done=F("temporal_restarts_done") + 1
            )
            self.say(f"[{self._clock()}] Temporal server started again")
            connection.close()

        thread = threading.Thread(target=restart, name="chaos-temporal-restart")
        self._restarts.append(thread)
        thread.start()

    # --- settling and bookkeeping ---

    def _settle(self) -> bool:
        deadline = time.monotonic() + self.settle_seconds
        last_said = 0.0
        while True:
            waiting = self._unsettled()
            if not waiting:
                return True
            if time.monotonic() >= deadline:
                return False
            if time.monotonic() - last_said > 10:
                self.say(f"[{self._clock()}] {waiting} order(s) still in flight")
                last_said = time.monotonic()
            self._beat(force=True)
            time.sleep(1)

    def _unsettled(self) -> int:
        open_orders = self.run_row.orders.exclude(status__in=OrderStatus.final())
        return sum(not order.is_lost for order in open_orders)

    def _stop_requested(self, *, fresh: bool = False) -> bool:
        if not self._beat() and not fresh:
            return bool(self._stop_by)
        stop_by = ChaosRun.objects.filter(pk=self.run_row.pk).values_list(
            "stop_requested_by", flat=True
        )
        self._stop_by = stop_by.first() or ""
        return bool(self._stop_by)

    def _beat(self, force: bool = False) -> bool:
        """Tell watchers this run is alive (once a second); True when it beat."""
        if not force and time.monotonic() - self._last_beat < HEARTBEAT_EVERY_S:
            return False
        self._last_beat = time.monotonic()
        close_old_connections()
        ChaosRun.objects.filter(pk=self.run_row.pk).update(heartbeat_at=timezone.now())
        return True

    def _set(self, **fields: object) -> None:
        ChaosRun.objects.filter(pk=self.run_row.pk).update(heartbeat_at=timezone.now(), **fields)

    def _end(self, state: str, note: str) -> None:
        self._set(state=state, note=note, finished_at=timezone.now())

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"
