"""Place an order from a terminal, and optionally follow it to the end."""

from __future__ import annotations

import asyncio
import time
from argparse import ArgumentParser, ArgumentTypeError

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from orders.contract import RETRY_TABLE, OrderStatus, Step
from orders.forms import OrderForm
from orders.models import Order, OrderStep
from orders.placement import place_order
from orders.simulator.models import ServiceCall
from orders.temporal import TemporalUnavailable, describe_order

POLL_INTERVAL_S = 0.2
# Exit codes: 0 completed, 2 completed with warnings, 1 anything else.
EXIT_CODES = {OrderStatus.COMPLETED: 0, OrderStatus.COMPLETED_WITH_WARNINGS: 2}


MAX_WAIT_S = 86_400


def _seconds(value: str) -> float:
    """A waiting time: a plain number of seconds, from 1 s to a day."""
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 1 <= seconds <= MAX_WAIT_S:  # also refuses nan and inf
        raise ArgumentTypeError(f"must be from 1 to {MAX_WAIT_S} seconds, not {value}")
    return seconds


class Command(BaseCommand):
    help = "Place an order: place_order --product SKU --quantity N [--customer NAME] [--wait]"

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--product", required=True, help="product SKU, e.g. KB-01")
        parser.add_argument("--quantity", required=True, help="units to order (1–20)")
        parser.add_argument("--customer", default="Ada Lovelace", help="customer name")
        parser.add_argument("--email", default="ada@example.com")
        parser.add_argument("--phone", default="+44 20 7946 0000")
        parser.add_argument("--address", default="12 Analytical Row, London")
        parser.add_argument(
            "--engine",
            default="temporal",
            help="temporal (the durable workflow) or plain (the fragile script)",
        )
        parser.add_argument(
            "--wait", action="store_true", help="follow every step and retry until the order ends"
        )
        parser.add_argument(
            "--timeout",
            type=_seconds,
            default=600,
            help="give up waiting after this many seconds (1 to 86400)",
        )

    def handle(self, *args: object, **options: object) -> None:
        form = OrderForm(
            {
                "product": options["product"],
                "quantity": options["quantity"],
                "customer_name": options["customer"],
                "email": options["email"],
                "phone": options["phone"],
                "address": options["address"],
                "engine": options["engine"],
            }
        )
        if not form.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()
            )
            raise CommandError(f"Order not placed. {problems}")
        order = place_order(form.cleaned_data)
        if order.status == OrderStatus.STOPPED:
            raise CommandError(f"Order #{order.pk} saved but not started: {order.failure_reason}")
        if order.status == OrderStatus.QUEUED:
            reason = order.start_error.removeprefix("Queued: ")
            self.stdout.write(
                f"Order #{order.pk} queued: {reason}. It is saved and starts by itself as soon"
                " as Temporal answers (a running worker starts it)."
            )
        else:
            runner = f"workflow {order.workflow_id}" if order.workflow_id else "the plain script"
            self.stdout.write(
                f"Order #{order.pk} placed: {order.quantity} × {order.product.sku},"
                f" {order.amount}, run by {runner}"
            )
        if not options["wait"]:
            return
        status = asyncio.run(self._follow(order.pk, options["timeout"]))
        code = EXIT_CODES.get(status, 1)
        if code:
            raise SystemExit(code)

    async def _follow(self, order_id: int, timeout: float) -> str:
        seen_calls = 0
        step_states: dict[str, str] = {}
        announced_retries: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            order = await Order.objects.aget(pk=order_id)
            # Temporal first, the ledger second: an attempt's row is written before
            # Temporal hears it failed, so the attempt is printed before its retry.
            retries = []
            if order.workflow_id:
                retries = await self._retries(order.workflow_id, announced_retries)
            calls = await sync_to_async(_calls_after)(order_id, seen_calls)
            for call in calls:
                seen_calls = call.pk
                detail = f" — {call.error}" if call.error else ""
                operation = f"{call.service}.{call.operation}"
                self.stdout.write(f"  {operation} attempt {call.attempt}: {call.outcome}{detail}")
            for step in await sync_to_async(_steps)(order_id):
                if step_states.get(step.name) != step.state:
                    step_states[step.name] = step.state
                    result = f" ({step.result})" if step.result else ""
                    self.stdout.write(f"{Step(step.name).label}: {step.state}{result}")
            for line in retries:
                self.stdout.write(line)
            if order.is_final:
                self._report(order)
                return order.status
            if order.is_lost:
                self.stdout.write(
                    f"Order #{order.pk} lost: its process died and nothing resumes it."
                )
                return "lost"
            await asyncio.sleep(POLL_INTERVAL_S)
        self.stderr.write(f"Gave up waiting after {timeout:g}s; the order goes on in Temporal.")
        return "timeout"

    async def _retries(self, workflow_id: str, announced: set[tuple[str, int]]) -> list[str]:
        """A line for each retry Temporal has scheduled that was not announced yet."""
        try:
            state = await describe_order(workflow_id)
        except TemporalUnavailable as exc:
            self.stderr.write(str(exc))
            return []
        lines = []
        for pending in state.pending if state else []:
            key = (pending.step, pending.attempt)
            if pending.next_attempt_at is None or key in announced:
                continue
            announced.add(key)
            wait_s = max(0.0, (pending.next_attempt_at - timezone.now()).total_seconds())
            lines.append(
                f"  retry: {pending.step} attempt {pending.attempt} of"
                f" {RETRY_TABLE[pending.step].maximum_attempts or '∞'} in {wait_s:.1f}s"
                f" (last error: {pending.last_failure})"
            )
        return lines

    def _report(self, order: Order) -> None:
        line = f"Order #{order.pk} {order.status.replace('_', ' ')}"
        if order.payment_id:
            line += f", payment {order.payment_id}"
        if order.tracking_number:
            line += f", tracking {order.tracking_number}"
        if order.failure_reason:
            line += f": {order.failure_reason}"
        self.stdout.write(line)
        for warning in order.warnings:
            self.stdout.write(f"Warning: {warning}")


def _calls_after(order_id: int, last_pk: int) -> list[ServiceCall]:
    return list(ServiceCall.objects.filter(order_id=order_id, pk__gt=last_pk).order_by("pk"))


def _steps(order_id: int) -> list[OrderStep]:
    return list(OrderStep.objects.filter(order_id=order_id))
