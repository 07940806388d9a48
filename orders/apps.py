from django.apps import AppConfig
from django.core.signals import request_finished


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orderdash.db import close_request_connections

        request_finished.connect(close_request_connections, dispatch_uid="close-request-db")
