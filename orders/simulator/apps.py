from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """The simulated inventory, payment, shipping, email and SMS services."""

    name = "orders.simulator"
    label = "simulator"
    verbose_name = "Simulated services"
    default_auto_field = "django.db.models.BigAutoField"
