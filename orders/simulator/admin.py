"""The simulated services in the admin: catalogue and stock, switches, the call ledger."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from orders.simulator.models import Product, ServiceCall, ServiceSwitch


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "stock", "reserved", "available"]
    search_fields = ["sku", "name"]


@admin.register(ServiceSwitch)
class ServiceSwitchAdmin(admin.ModelAdmin):
    list_display = ["service", "mode", "failures", "failures_left", "latency_ms", "updated_at"]
    # Read-only: a flip goes through the dashboard or `services set`, which record who.
    readonly_fields = ["service", "mode", "failures", "failures_left", "latency_ms"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ServiceCall)
class ServiceCallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "order",
        "service",
        "operation",
        "attempt",
        "outcome",
        "error",
        "duration_ms",
        "worker",
    ]
    list_filter = ["service", "outcome", "operation"]
    search_fields = ["=order__id", "idempotency_key", "error", "worker"]
    list_select_related = ["order"]
    # Hundreds of thousands of attempts: count only what the filters leave, and never
    # offer a drop-down of every order.
    show_full_result_count = False
    raw_id_fields = ["order"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
