"""Placing an order: one database row per order and per step, then one workflow."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from temporalio.service import RPCError

from orders.contract import STEPS, OrderInput, OrderStatus
from orders.models import Engine, Order, OrderStep
from orders.simulator.models import Product
from orders.temporal import (
    TemporalUnavailable,
    WorkflowIdTaken,
    cancel_order_workflow,
    order_workflow_id,
    start_order_workflow,
)

log = logging.getLogger(__name__)


def create_order(cleaned: dict) -> Order:
    """Save the order and its steps in one transaction. A Temporal order is saved queued
    before anything asks Temporal: whatever dies after this, the starter finds it."""
    product: Product = cleaned["product"]
    engine = cleaned.get("engine") or Engine.TEMPORAL
    with transaction.atomic():
        order = Order.objects.create(
            customer_name=cleaned["customer_name"],
            email=cleaned["email"],
            phone=cleaned.get("phone", ""),
            address=cleaned["address"],
            product=product,
            quantity=cleaned["quantity"],
            amount_cents=product.price_cents * cleaned["quantity"],
            engine=engine,
            status=OrderStatus.QUEUED if engine == Engine.TEMPORAL else OrderStatus.PENDING,
        )
        OrderStep.objects.bulk_create(
            OrderStep(order=order, name=name, position=i) for i, name in enumerate(STEPS)
        )
    return order


def order_input(order: Order) -> OrderInput:
    return OrderInput(
        needs_approval=order.amount_cents >= settings.APPROVAL_THRESHOLD_CENTS,
        approval_timeout_s=settings.APPROVAL_TIMEOUT_SECONDS,
        order_id=order.pk,
        sku=order.product.sku,
        quantity=order.quantity,
        amount_cents=order.amount_cents,
        customer_name=order.customer_name,
        email=order.email,
        phone=order.phone,
        address=order.address,
    )


async def start_workflow(order: Order, *, wait: float | None = None) -> Order:
    """Start a queued order's workflow, waiting at most `wait` seconds for Temporal.

    The order is already saved as queued, so nothing is lost when Temporal is away or
    slow: the order stays queued, says why, and the starter (orders/starter.py) starts it
    when Temporal answers. A start that went through meanwhile is adopted then.
    """
    workflow_id = order_workflow_id(order.pk)
    wait = settings.TEMPORAL_START_WAIT if wait is None else wait
    # The product may need loading: the input is built where the ORM may run.
    started_with = await sync_to_async(order_input)(order)
    start = start_order_workflow(started_with, workflow_id, order.created_at.isoformat())
    try:
        await asyncio.wait_for(start, wait)
    except (TemporalUnavailable, TimeoutError) as exc:
        reason = str(exc) or f"Temporal did not answer within {wait:g}s"
        log.warning("Order %s queued: %s", order.pk, reason)
        order.start_error = f"Queued: {reason}"
        await Order.objects.filter(pk=order.pk).aupdate(
            start_error=order.start_error, updated_at=timezone.now()
        )
        return order
    except RPCError as exc:  # an answer Temporal gave but not the one expected
        log.warning("Order %s queued: %s", order.pk, exc)
        return order
    except WorkflowIdTaken as exc:
        order.status, order.failure_reason = OrderStatus.STOPPED, str(exc)
        await Order.objects.filter(pk=order.pk).aupdate(
            status=order.status, failure_reason=order.failure_reason, updated_at=timezone.now()
        )
        return order
    order.workflow_id, order.start_error = workflow_id, ""
    await Order.objects.filter(pk=order.pk).aupdate(
        workflow_id=workflow_id,
        start_error="",
        updated_at=timezone.now(),
        # Only a queued order turns pending: its first attempt may have run already.
        status=Case(
            When(status=OrderStatus.QUEUED, then=Value(OrderStatus.PENDING)),
            default=F("status"),
        ),
    )
    await order.arefresh_from_db(fields=["status", "cancel_requested_by"])
    if order.status == OrderStatus.CANCELLED:
        # Cancelled while it was queued, and started meanwhile (by this start, or by one
        # whose answer was lost): the workflow is told too, and undoes what it did.
        await cancel_order_workflow(workflow_id, reason=f"cancelled by {order.cancel_requested_by}")
    return order


def place_order(cleaned: dict) -> Order:
    """Create the order and start it (sync callers: views, commands).

    A plain-script order only needs its row: the plain runner picks up pending ones.
    """
    order = create_order(cleaned)
    if order.engine == Engine.PLAIN:
        return order
    return async_to_sync(start_workflow)(order)


def place_comparison(cleaned: dict) -> Order:
    """The same order in both engines at once; returns the Temporal one, linked to its twin."""
    with transaction.atomic():
        plain = create_order(cleaned | {"engine": Engine.PLAIN})
        temporal = create_order(cleaned | {"engine": Engine.TEMPORAL})
        temporal.compare_with = plain
        temporal.save(update_fields=["compare_with"])
    return async_to_sync(start_workflow)(temporal)
