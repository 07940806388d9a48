"""Seed the catalogue, the five switches (healthy) and a demo admin; safe to run again.

With `--history N`, also N orders of made-up history (orders/history.py), to see how the
admin, the audit and the board behave after months of use.
"""

import time
from argparse import ArgumentParser

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orders.contract import SERVICES
from orders.history import HistoryError, check_size, write_history
from orders.simulator.models import Product, ServiceSwitch

CATALOGUE = [
    ("KB-01", "Mechanical keyboard", 8900, 50),
    ("MS-02", "Wireless mouse", 2900, 100),
    ("MN-27", "27-inch monitor", 27900, 20),
    ("HS-03", "Noise-cancelling headset", 15900, 30),
    ("CB-04", "USB-C cable", 1200, 500),
]
DEMO_USERNAME = "admin"
DEMO_PASSWORD = "orderdash"  # noqa: S105 - printed for the local demo, never used in production


class Command(BaseCommand):
    help = (
        "Create the demo products, the service switches and a demo admin user;"
        " with --history N, also N orders of past history."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--history",
            type=int,
            metavar="N",
            help="also write N orders of history (every status, both engines), in bulk",
        )

    def handle(self, *args: object, **options: object) -> None:
        history = options.get("history")
        if history is not None:
            try:
                check_size(history)
            except HistoryError as exc:
                raise CommandError(str(exc)) from exc
        for sku, name, price_cents, stock in CATALOGUE:
            Product.objects.get_or_create(
                sku=sku, defaults={"name": name, "price_cents": price_cents, "stock": stock}
            )
        for service in SERVICES:
            ServiceSwitch.objects.get_or_create(service=service)
        users = get_user_model().objects
        # Only in demo mode: anywhere else the first user comes from createsuperuser, and
        # a known password would open the dashboard and the admin to anyone.
        if settings.DEMO_MODE and not users.filter(is_superuser=True).exists():
            users.create_superuser(DEMO_USERNAME, "admin@example.com", DEMO_PASSWORD)
            self.stdout.write(f"Demo admin created: {DEMO_USERNAME} / {DEMO_PASSWORD}")
        self.stdout.write(
            f"Catalogue: {', '.join(sku for sku, *_ in CATALOGUE)}; switches: all healthy"
            " unless changed."
        )
        if history is not None:
            self._write_history(history)

    def _write_history(self, total: int) -> None:
        began = time.monotonic()
        try:
            written = write_history(
                total, progress=lambda done: self.stderr.write(f"  {done:,} orders written")
            )
        except HistoryError as exc:
            raise CommandError(str(exc)) from exc
        statuses = ", ".join(f"{status} {n:,}" for status, n in sorted(written.statuses.items()))
        rows = ", ".join(f"{kind} {n:,}" for kind, n in written.counts.items() if n)
        self.stdout.write(
            f"History: {total:,} orders in {time.monotonic() - began:.1f}s ({statuses}); rows:"
            f" {rows}."
        )
