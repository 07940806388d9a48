"""The starter: every accepted order reaches Temporal, and Temporal's word reaches the list.

It runs in every worker process (`python -m worker`), so it runs whenever the stack runs,
whether or not a web process does. Two jobs, each a round every few seconds:

- start every queued order (saved, but Temporal was away or slow when it was placed, or
  the web process died between saving it and starting it), exactly once: the workflow id
  is the order's, and a start that already went through is adopted;
- reconcile the other way: an order whose workflow Temporal terminated, timed out or no
  longer has would otherwise stay "running" for ever; it becomes `stopped`.

Several workers may run it at once: the id policy and conditional updates make that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from orders.contract import OrderStatus
from orders.models import Engine, Order
from orders.placement import start_workflow
from orders.temporal import TemporalUnavailable, describe_order

log = logging.getLogger(__name__)

BATCH = 100
# An order that moved this recently is plainly alive: reconcile only the quiet ones.
QUIET_FOR = timedelta(seconds=10)
AT_ONCE = 16  # Temporal calls in flight at once


def _unstarted(limit: int) -> list[Order]:
    """Temporal orders with no workflow id yet: queued ones, and any whose start went
    through while its answer was lost (its first attempt may have made it running)."""
    unstarted = Order.objects.filter(engine=Engine.TEMPORAL, workflow_id="").exclude(
        status__in=OrderStatus.final()
    )
    return list(unstarted.select_related("product").order_by("id")[:limit])


def _quiet_in_flight(after: int, limit: int) -> list[Order]:
    """In-flight orders quiet for a while, by order number from `after` on: round after
    round the starter walks through all of them, however many there are."""
    in_flight = Order.objects.filter(engine=Engine.TEMPORAL, pk__gt=after).exclude(workflow_id="")
    in_flight = in_flight.exclude(status__in=[*OrderStatus.final(), OrderStatus.QUEUED])
    quiet = in_flight.filter(updated_at__lt=timezone.now() - QUIET_FOR)
    return list(quiet.order_by("pk")[:limit])


def _mark_stopped(order_id: int, reason: str) -> bool:
    now = timezone.now()
    open_order = Order.objects.filter(pk=order_id).exclude(status__in=OrderStatus.final())
    return bool(
        open_order.update(
            status=OrderStatus.STOPPED, failure_reason=reason, finished_at=now, updated_at=now
        )
    )


async def start_queued(limit: int = BATCH) -> int:
    """Start queued orders, oldest first; stop at the first that Temporal does not take."""
    started = 0
    for order in await database_sync_to_async(_unstarted)(limit):
        order = await start_workflow(order, wait=settings.TEMPORAL_RPC_TIMEOUT * 2)
        if order.status == OrderStatus.CANCELLED:
            continue  # an operator cancelled it meanwhile: start_workflow stopped it
        if order.status == OrderStatus.QUEUED:
            break  # Temporal is still away: the next round tries again
        started += 1
        log.info("Started queued order %s as %s", order.pk, order.workflow_id)
    return started


async def reconcile_in_flight(limit: int = BATCH, after: int = 0) -> tuple[int, int]:
    """Mark orders whose workflow Temporal no longer runs as stopped. Returns how many
    were, and the order number to go on from next round (0: start over)."""
    limit_calls = asyncio.Semaphore(AT_ONCE)

    async def check(order: Order) -> bool:
        async with limit_calls:
            state = await describe_order(order.workflow_id)
        if state is not None and state.status == "RUNNING":
            return False
        said = f"reports it as {state.status.lower().replace('_', ' ')}" if state else "has none"
        reason = (
            f"Temporal {said} for workflow {order.workflow_id}: it stopped before finishing"
            " the order, so nothing will move this order any more."
        )
        return await database_sync_to_async(_mark_stopped)(order.pk, reason)

    orders = await database_sync_to_async(_quiet_in_flight)(after, limit)
    resume_after = orders[-1].pk if len(orders) == limit else 0
    try:
        stopped = await asyncio.gather(*(check(order) for order in orders))
    except TemporalUnavailable:
        return 0, after
    return sum(stopped), resume_after


async def run_starter(stop: asyncio.Event) -> None:
    """Both jobs, round after round, until `stop` is set."""
    after = 0
    while not stop.is_set():
        try:
            await start_queued()
            stopped, after = await reconcile_in_flight(after=after)
            if stopped:
                log.warning("%d orders stopped in Temporal before they finished", stopped)
        except Exception:
            log.exception("The starter's round failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.STARTER_EVERY_SECONDS)
