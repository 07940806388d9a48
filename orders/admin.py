"""The ops view: every order, every step, every attempt, with a way into Temporal."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from orders.audit import audit_order, does_not_add_up
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
    # Past this many, the verdict stays a filter in SQL rather than a list of numbers
    # (SQLite takes at most 32766 parameters in a statement).
    LISTED = 10_000

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("broken", "effects don't add up"), ("ok", "effects add up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() not in ("broken", "ok"):
            return queryset
        # The audit's verdict over every order in one query; the list page then counts
        # and pages by order number instead of judging every order twice.
        broken = Order.objects.filter(does_not_add_up()).order_by().values_list("pk", flat=True)
        listed = list(broken[: self.LISTED + 1])
        rows = listed if len(listed) <= self.LISTED else broken
        if self.value() == "broken":
            return queryset.filter(pk__in=rows)
        return queryset.exclude(pk__in=rows)


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
    # A date filter, not date_hierarchy: its drill-down reads the date of every order
    # (seconds at 100k orders); these are ranges on the created_at index.
    list_filter = ["status", "engine", EffectsFilter, "product", "created_at"]
    search_fields = ["=id", "customer_name", "email", "workflow_id"]
    list_select_related = ["product"]
    # The total of all orders beside a filtered count is one more scan; the count of
    # what is shown is enough.
    show_full_result_count = False
    # Not a drop-down of every order (megabytes at 100k orders).
    raw_id_fields = ["compare_with"]
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
        # A subquery per listed row, not a join grouped over every order: the database
        # counts the attempts of the hundred orders on the page only.
        attempts = (
            ServiceCall.objects.filter(order=OuterRef("pk"))
            .order_by()
            .values("order")
            .annotate(n=Count("pk"))
            .values("n")
        )
        total = Coalesce(Subquery(attempts, output_field=IntegerField()), 0)
        return super().get_queryset(request).annotate(attempt_total=total)

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
