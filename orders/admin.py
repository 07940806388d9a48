"""The ops view: every order, every step, every attempt, with a way into Temporal."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from orders.audit import audit_order, orders_that_do_not_add_up
from orders.models import LoadRun, OperatorAction, Order, OrderStep
from orders.simulator.models import Charge, Message, Reservation, ServiceCall, Shipment
from orders.temporal import workflow_ui_url


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderStepInline(ReadOnlyInline):
    model = OrderStep
    fields = ["label", "state", "attempts", "result", "last_error", "started_at", "finished_at"]
    readonly_fields = fields


class ServiceCallInline(ReadOnlyInline):
    model = ServiceCall
    verbose_name = "service call attempt"
    verbose_name_plural = "ledger: every service call attempt"
    fields = [
        "service",
        "operation",
        "attempt",
        "outcome",
        "error",
        "duration_ms",
        "started_at",
        "created_at",
        "idempotency_key",
    ]
    readonly_fields = fields


class ChargeInline(ReadOnlyInline):
    model = Charge
    fields = ["payment_id", "amount_cents", "key", "created_at", "refunded_at"]
    readonly_fields = fields


class ReservationInline(ReadOnlyInline):
    model = Reservation
    fields = ["product", "quantity", "state", "key", "created_at"]
    readonly_fields = fields


class ShipmentInline(ReadOnlyInline):
    model = Shipment
    fields = ["tracking_number", "key", "created_at", "cancelled_at"]
    readonly_fields = fields


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["channel", "recipient", "key", "created_at"]
    readonly_fields = fields


class EffectsFilter(admin.SimpleListFilter):
    """Orders whose effects don't add up: double charges, charges without shipment, stuck stock."""

    title = "exactly once"
    parameter_name = "effects"
    # Auditing reads every effect row, so it looks at the most recent orders only.
    RECENT = 2000

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("broken", "effects don't add up"), ("ok", "effects add up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() not in ("broken", "ok"):
            return queryset
        recent = list(queryset.order_by("-id")[: self.RECENT])
        broken = orders_that_do_not_add_up(recent)
        if self.value() == "broken":
            return queryset.filter(pk__in=broken)
        return queryset.filter(pk__in=[o.pk for o in recent]).exclude(pk__in=broken)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "customer_name",
        "product",
        "quantity",
        "amount",
        "status",
        "attempt_count",
        "warning_list",
        "created_at",
    ]
    list_filter = ["status", "engine", EffectsFilter, "product"]
    search_fields = ["=id", "customer_name", "email", "workflow_id"]
    list_select_related = ["product"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "status",
        "engine",
        "exactly_once",
        "temporal_link",
        "workflow_id",
        "start_error",
        "payment_id",
        "tracking_number",
        "warnings",
        "failure_reason",
        "amount_cents",
        "created_at",
        "updated_at",
        "finished_at",
    ]
    inlines = [
        OrderStepInline,
        ServiceCallInline,
        ReservationInline,
        ChargeInline,
        ShipmentInline,
        MessageInline,
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).annotate(attempt_total=Count("calls"))

    @admin.display(description="attempts", ordering="attempt_total")
    def attempt_count(self, order: Order) -> int:
        return order.attempt_total  # type: ignore[attr-defined]

    @admin.display(description="warnings")
    def warning_list(self, order: Order) -> str:
        return "; ".join(order.warnings) if order.warnings else "—"

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, order: Order) -> str:
        return order.amount

    @admin.display(description="exactly once")
    def exactly_once(self, order: Order) -> str:
        audit = audit_order(order)
        verdict = "effects add up" if audit.adds_up else "✖ " + "; ".join(audit.problems)
        return format_html_join(
            "", "<div>{}</div>", [(line,) for line in [verdict, *(s.line for s in audit.services)]]
        )

    @admin.display(description="Temporal")
    def temporal_link(self, order: Order) -> str:
        if not order.workflow_id:
            return "not started"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{} in the Temporal UI</a>',
            workflow_ui_url(order.workflow_id),
            order.workflow_id,
        )


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    """Who did what: read-only, so the record cannot be rewritten afterwards."""

    list_display = ["created_at", "actor", "action", "order", "step", "service", "accepted"]
    list_filter = ["action", "accepted"]
    search_fields = ["actor", "=order__id", "reason", "message"]
    list_select_related = ["order"]
    raw_id_fields = ["order", "user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(LoadRun)
class LoadRunAdmin(admin.ModelAdmin):
    """Load runs, from the page or the `load` command: read-only, the runner writes them."""

    list_display = ["id", "started_at", "actor", "total", "rate", "engine", "placed", "state"]
    list_filter = ["state", "engine"]
    # The orders placed: a raw id list, never a drop-down of every order.
    raw_id_fields = ["orders"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
