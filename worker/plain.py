"""The seed's original `order_processor.py`: the same order flow without Temporal.

It calls the very same simulated services and obeys the same switches, but does what a
plain script does: retry loops written by hand, state kept in local variables, a new
request id per attempt, and nothing written down that would let a restarted process
carry on. When the process dies mid-order, that order is simply lost.

`python -m worker.plain` runs it under the same supervisor as the worker (which restarts
the process but cannot restart the order); `--once` runs one process.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Django is set up in main(), after this module is imported
    from orders.models import Order
    from orders.simulator.services import CallContext

log = logging.getLogger("plain")

MAX_ATTEMPTS = 3
RETRY_DELAY_S = 1.0
POLL_S = 0.2


class OrderFailed(Exception):
    pass


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s plain %(levelname)s %(message)s")
    from worker.main import setup_django

    setup_django()
    from orders.simulator import services

    services.crash_handler = services.die_now
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("Plain order processor ready: one order at a time, no memory")
    while not stopping:
        order_id = claim_next_order()
        if order_id is None:
            time.sleep(POLL_S)
            continue
        process_order(order_id)


def claim_next_order() -> int | None:
    from django.db import close_old_connections
    from django.utils import timezone

    from orders.contract import OrderStatus
    from orders.models import Engine, Order

    close_old_connections()
    pending = Order.objects.filter(engine=Engine.PLAIN, status=OrderStatus.PENDING)
    candidate = pending.order_by("id").first()
    if candidate is None:
        return None
    claimed = pending.filter(pk=candidate.pk).update(
        status=OrderStatus.RUNNING, updated_at=timezone.now()
    )
    return candidate.pk if claimed else None


def process_order(order_id: int) -> None:
    """The whole flow, try/except by hand, exactly as fragile as the seed describes."""
    from orders.contract import OrderStatus
    from orders.models import Order
    from orders.simulator import services
    from orders.steps import record_outcome

    order = Order.objects.select_related("product").get(pk=order_id)
    log.info("Processing order %s", order_id)
    warnings: list[str] = []
    payment_id = tracking = ""
    reserved = charged = False
    try:
        retry(
            "inventory",
            order,
            lambda ctx: services.reserve_inventory(ctx, order.product.sku, order.quantity),
        )
        reserved = True
        payment_id = retry(
            "payment", order, lambda ctx: services.charge_payment(ctx, order.amount_cents)
        )
        charged = True
        retry(
            "commit",
            order,
            lambda ctx: services.commit_inventory(ctx, _last_key(order, "inventory")),
        )
        tracking = retry(
            "shipping", order, lambda ctx: services.schedule_shipping(ctx, order.address)
        )
        retry(
            "email",
            order,
            lambda ctx: services.send_message(ctx, "email", order.email, "Confirmed"),
        )
        try:
            retry(
                "sms", order, lambda ctx: services.send_message(ctx, "sms", order.phone, "Shipped")
            )
        except OrderFailed as exc:
            warnings.append(f"SMS not sent: {exc}")
        status = OrderStatus.COMPLETED_WITH_WARNINGS if warnings else OrderStatus.COMPLETED
        reason = ""
    except OrderFailed as exc:
        status, reason = OrderStatus.FAILED, str(exc)
        # Best-effort cleanup, once: if this fails too, the money or the stock stays stuck.
        try:
            if charged:
                services.refund_payment(_ctx(order, "refund", 1), _last_key(order, "payment"))
            if reserved:
                services.release_inventory(_ctx(order, "release", 1), _last_key(order, "inventory"))
        except Exception as cleanup_error:
            reason += f"; cleanup failed: {cleanup_error}"
    record_outcome(
        order.pk,
        status,
        payment_id=payment_id,
        tracking_number=tracking,
        warnings=warnings,
        error=reason,
    )


def retry(step: str, order: Order, call: Callable[[CallContext], str]) -> str:
    """The hand-written retry loop: fixed attempts, fixed pause, a new request each time."""
    from orders.contract import StepState
    from orders.simulator import services

    last_error = ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _mark(order, step, attempt, StepState.RUNNING)
        try:
            result = call(_ctx(order, step, attempt))
        except services.BusinessRejection as exc:
            _mark(order, step, attempt, StepState.FAILED, error=str(exc))
            raise OrderFailed(str(exc)) from exc
        except Exception as exc:
            last_error = str(exc) or type(exc).__name__
            final = attempt == MAX_ATTEMPTS
            state = StepState.FAILED if final else StepState.RETRYING
            _mark(order, step, attempt, state, error=last_error)
            if not final:
                _pause(order, RETRY_DELAY_S * attempt)
            continue
        _mark(order, step, attempt, StepState.COMPLETED, result=result)
        return result
    raise OrderFailed(f"{step}: gave up after {MAX_ATTEMPTS} attempts: {last_error}")


def _ctx(order: Order, step: str, attempt: int) -> CallContext:
    from orders.simulator import services

    # No idempotency: every attempt is a brand-new request to the service.
    return services.CallContext(
        order_id=order.pk,
        idempotency_key=f"plain-{order.pk}:{step}:{attempt}",
        attempt=attempt,
        # A slow call is not a dead process: keep the order visibly alive while it waits.
        heartbeat=lambda: _touch(order),
    )


def _touch(order: Order) -> None:
    from orders.steps import touch_order

    touch_order(order.pk)


def _last_key(order: Order, step: str) -> str:
    """Find which request actually did the reservation or charge (the txn_id variable)."""
    from orders.simulator.models import Charge, Reservation

    model = Reservation if step == "inventory" else Charge
    effect = model.objects.filter(order_id=order.pk).order_by("-id").first()
    return effect.key if effect else ""


def _mark(
    order: Order, step: str, attempt: int, state: str, *, result: str = "", error: str = ""
) -> None:
    from orders.steps import record_step

    record_step(order.pk, step, state, attempt=attempt, error=error or None, result=result or None)


def _pause(order: Order, seconds: float) -> None:
    # Sleeping in small steps keeps the order visibly alive while it waits.
    from orders.steps import touch_order

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.5, deadline - time.monotonic()))
        touch_order(order.pk)


if __name__ == "__main__":
    if "--once" in sys.argv[1:]:
        main()
    else:
        from worker.supervisor import supervise

        sys.exit(supervise("worker.plain", "plain"))
