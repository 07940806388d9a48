"""Act on an order from a terminal: the same actions as the order page's buttons."""

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError

from orders.actions import ACTIONS, act, terminal_user
from orders.contract import Step
from orders.management.arguments import MAX_ORDER_NUMBER, whole_number_or_none
from orders.models import Order


class Command(BaseCommand):
    help = (
        "Act on an order: order ACTION ORDER_ID [--reason TEXT] [--step STEP]."
        f" Actions: {', '.join(ACTIONS)}."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", help=f"one of: {', '.join(ACTIONS)}")
        parser.add_argument("order_id", help="the order number, e.g. 42")
        parser.add_argument("--reason", default="", help="why (kept in the order's record)")
        parser.add_argument(
            "--step",
            default="",
            help=f"pause, resume, retry-now: which step ({', '.join(Step.values)});"
            " default: the one that can be",
        )

    def handle(self, *args: object, **options: object) -> None:
        action, order_id = options["action"], options["order_id"]
        if action not in ACTIONS:
            raise CommandError(f"Unknown action {action!r}; one of: {', '.join(ACTIONS)}.")
        number = whole_number_or_none(str(order_id), 1, MAX_ORDER_NUMBER)
        if number is None or not str(order_id).isdigit():
            raise CommandError(f"ORDER_ID must be an order number like 42, not {order_id!r}.")
        order = Order.objects.filter(pk=number).first()
        if order is None:
            raise CommandError(f"There is no order #{order_id}.")
        if len(options["reason"]) > 500:
            raise CommandError("--reason: at most 500 characters.")
        result = act(
            order, action, actor=terminal_user(), reason=options["reason"], step=options["step"]
        )
        if not result.accepted:
            raise CommandError(result.message)
        self.stdout.write(result.message)
