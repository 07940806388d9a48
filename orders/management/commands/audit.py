"""The exactly-once report: per order, attempts versus effects; non-zero when they don't add up."""

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q, QuerySet

from orders.audit import audit_orders, stock_out_of_balance
from orders.management.arguments import MAX_ORDER_NUMBER, whole_number
from orders.models import Action, OperatorAction, Order


class Command(BaseCommand):
    help = "Print attempts versus effects per order and service; exit 1 when any don't add up."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--order",
            type=whole_number(1, MAX_ORDER_NUMBER),
            help="audit only this order number",
        )

    def handle(self, *args: object, **options: object) -> None:
        orders = Order.objects.order_by("id")
        if options["order"] is not None:
            orders = orders.filter(pk=options["order"])
            if not orders.exists():
                raise CommandError(f"There is no order #{options['order']}.")
        broken = 0
        for audit in audit_orders(orders):
            order = audit.order
            verdict = "effects add up" if audit.adds_up else "; ".join(audit.problems)
            self.stdout.write(f"Order #{order.pk} ({order.engine}, {order.status}): {verdict}")
            for service in audit.services:
                self.stdout.write(f"  {service.line}")
            broken += not audit.adds_up
        for problem in stock_out_of_balance():
            self.stdout.write(f"Stock out of balance: {problem}")
            broken += 1
        self.stdout.write(_operators_line(orders))
        if broken:
            self.stderr.write(f"{broken} order(s) or product(s) whose effects don't add up.")
            raise SystemExit(1)


def _operators_line(orders: QuerySet[Order]) -> str:
    """What people did, beside what the services did: actions on these orders (refused
    ones apart) and switches flipped."""
    actions = OperatorAction.objects.filter(order__in=orders)
    counts = actions.aggregate(
        done=Count("id", filter=Q(accepted=True)), refused=Count("id", filter=Q(accepted=False))
    )
    flips = OperatorAction.objects.filter(action=Action.SWITCH).count()
    return (
        f"Operators: {counts['done']} action(s) on these orders, {counts['refused']} refused;"
        f" {flips} switch change(s)."
    )
