"""The load generator: N orders at R per second, from the `load` command or the page.

A run is a row (LoadRun): the runner places orders through orders/placement.py as the
form does, at the rate asked, and checks the row between orders, so anyone may stop it
from any process. From the page it runs in a thread of the web process, outside the
request; the page polls the row for its progress.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from django.db import IntegrityError, close_old_connections, connections, transaction
from django.utils import timezone

from orders.contract import OrderStatus
from orders.models import Engine, LoadRun, Order
from orders.placement import place_order
from orders.scenarios import demo_order_data

# How often a waiting runner looks at its row (stop asked?) and says it is alive.
CHECK_EVERY_S = 0.25
ALIVE_EVERY_S = 5.0


class LoadRunning(Exception):
    """Another run is going on; one at a time."""


def engine_sequence(engine: str, mix: str) -> Iterator[str]:
    """The engine of each order in turn: one engine, or both interleaved by the mix."""
    if engine != "both":
        return itertools.repeat(engine)
    temporal, plain = (int(part) for part in mix.split(":"))
    # Spread evenly (3:1 → T T P T …) rather than in blocks, so both run side by side.
    slots = [(i / temporal, 0, Engine.TEMPORAL) for i in range(temporal)]
    slots += [(i / plain, 1, Engine.PLAIN) for i in range(plain)]
    return itertools.cycle([engine for *_, engine in sorted(slots)])


def create_run(cleaned: dict, *, actor: str) -> LoadRun:
    """A new run row from a valid LoadForm; refused while another run is running."""
    running = current_run()
    if running is not None and running.shown_state == LoadRun.State.RUNNING:
        raise LoadRunning(f"Load run #{running.pk} is still running: stop it first.")
    if running is not None:  # its process died: say so, and take its place
        _finish(running, LoadRun.State.INTERRUPTED, "its process stopped mid-run")
    try:
        with transaction.atomic():
            return LoadRun.objects.create(
                total=cleaned["orders"],
                rate=cleaned["rate"],
                engine=cleaned["engine"],
                mix=cleaned.get("mix", ""),
                actor=actor,
            )
    except IntegrityError:  # another start got in between the check and this insert
        running = current_run()
        number = f" #{running.pk}" if running else ""
        raise LoadRunning(f"Load run{number} is still running: stop it first.") from None


def current_run() -> LoadRun | None:
    return LoadRun.objects.filter(state=LoadRun.State.RUNNING).first()


def latest_run() -> LoadRun | None:
    return LoadRun.objects.first()


def request_stop(run: LoadRun) -> bool:
    """Ask a running run to stop; False when it was not running."""
    if run.shown_state == LoadRun.State.INTERRUPTED:  # nobody is left to ask
        _finish(run, LoadRun.State.INTERRUPTED, "its process stopped mid-run")
        return False
    return bool(
        LoadRun.objects.filter(pk=run.pk, state=LoadRun.State.RUNNING).update(
            stop_requested=True, updated_at=timezone.now()
        )
    )


def run_load(run: LoadRun, on_progress: Callable[[LoadRun], None] = lambda run: None) -> LoadRun:
    """Place the run's orders at its rate until all are placed or it is asked to stop."""
    engines = engine_sequence(run.engine, run.mix)
    began = time.monotonic()
    alive_at = began
    while run.placed < run.total:
        due = began + run.placed / run.rate
        while (left := due - time.monotonic()) > 0:
            time.sleep(min(left, CHECK_EVERY_S))
            if _stop_requested(run):
                return _finish(run, LoadRun.State.STOPPED, "stopped on request")
            if time.monotonic() - alive_at > ALIVE_EVERY_S:
                alive_at = time.monotonic()
                LoadRun.objects.filter(pk=run.pk).update(updated_at=timezone.now())
        if _stop_requested(run):
            return _finish(run, LoadRun.State.STOPPED, "stopped on request")
        data = demo_order_data(next(engines))
        if data is None:
            return _finish(run, LoadRun.State.STOPPED, "no product has stock left")
        order = place_order(data)
        run.orders.add(order)
        run.placed += 1
        alive_at = time.monotonic()
        LoadRun.objects.filter(pk=run.pk).update(placed=run.placed, updated_at=timezone.now())
        on_progress(run)
    return _finish(run, LoadRun.State.FINISHED, "")


def _stop_requested(run: LoadRun) -> bool:
    return LoadRun.objects.filter(pk=run.pk, stop_requested=True).exists()


def _finish(run: LoadRun, state: str, note: str) -> LoadRun:
    run.state, run.note, run.finished_at = state, note, timezone.now()
    run.save(update_fields=["state", "note", "finished_at", "updated_at"])
    return run


def start_in_background(run: LoadRun) -> threading.Thread:
    """Run it in a thread of this process, past the end of the request that asked."""
    thread = threading.Thread(target=_run_in_thread, args=(run.pk,), name=f"load-{run.pk}")
    thread.daemon = True  # a stopping web server does not wait for it: the run shows interrupted
    thread.start()
    return thread


def _run_in_thread(run_id: int) -> None:
    close_old_connections()
    try:
        run = LoadRun.objects.get(pk=run_id)
        try:
            run_load(run)
        except Exception as exc:
            _finish(run, LoadRun.State.STOPPED, f"failed: {exc}")
            raise
    finally:
        connections.close_all()


def outcomes(run: LoadRun) -> dict[str, int]:
    """How the run's orders stand, per status, most common first."""
    counts = Counter(Order.objects.filter(load_runs=run).values_list("status", flat=True))
    return dict(counts.most_common())


def still_open(run: LoadRun) -> int:
    return Order.objects.filter(load_runs=run).exclude(status__in=OrderStatus.final()).count()
