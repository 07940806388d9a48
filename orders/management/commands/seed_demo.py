"""Seed the catalogue, the five switches (healthy) and a demo admin; safe to run again."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders.contract import SERVICES
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
    help = "Create the demo products, the service switches and a demo admin user."

    def handle(self, *args: object, **options: object) -> None:
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
