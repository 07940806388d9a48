"""Placing an order: one database row per order and per step, then one workflow."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django.db import transaction

from orders.contract import STEPS, OrderInput
from orders.models import Engine, Order, OrderStep
from orders.simulator.models import Product
from orders.temporal import TemporalUnavailable, order_workflow_id, start_order_workflow

log = logging.getLogger(__name__)


def create_order(cleaned: dict) -> Order:
    product: Product = cleaned["product"]
    with transaction.atomic():
        order = Order.objects.create(
            customer_name=cleaned["customer_name"],
            email=cleaned["email"],
            phone=cleaned.get("phone", ""),
            address=cleaned["address"],
            product=product,
            quantity=cleaned["quantity"],
            amount_cents=product.price_cents * cleaned["quantity"],
            engine=cleaned.get("engine") or Engine.TEMPORAL,
        )
        OrderStep.objects.bulk_create(
            OrderStep(order=order, name=name, position=i) for i, name in enumerate(STEPS)
        )
    return order


def order_input(order: Order) -> OrderInput:
    return OrderInput(
        order_id=order.pk,
        sku=order.product.sku,
        quantity=order.quantity,
        amount_cents=order.amount_cents,
        customer_name=order.customer_name,
        email=order.email,
        phone=order.phone,
        address=order.address,
    )


async def start_workflow(order: Order) -> Order:
    """Start the order's workflow; if Temporal is away, say why on the order instead."""
    workflow_id = order_workflow_id(order.pk)
    try:
        await start_order_workflow(order_input(order), workflow_id)
    except TemporalUnavailable as exc:
        log.warning("Order %s not started: %s", order.pk, exc)
        order.start_error = f"Not started: {exc}"
        await order.asave(update_fields=["start_error", "updated_at"])
        return order
    order.workflow_id = workflow_id
    order.start_error = ""
    await order.asave(update_fields=["workflow_id", "start_error", "updated_at"])
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
