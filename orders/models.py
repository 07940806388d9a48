"""Orders, the product catalogue, the failure switches and the ledger of service calls.

The simulated services keep their state here too (reservations, charges, shipments,
messages), one row per effect, keyed by idempotency key: that is what proves
"charged exactly once" however many attempts the ledger shows.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from worker.shared import (
    FINAL_STATUSES,
    ORDER_STATUSES,
    PENDING,
    SERVICES,
    STEP_LABELS,
    STEP_PENDING,
    STEP_RETRYING,
    STEP_STATES,
    STEPS,
    workflow_id_for,
)


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value.replace("_", " ")) for value in values]


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField(help_text="Units on the shelf.")
    reserved = models.PositiveIntegerField(default=0, help_text="Units held for open orders.")

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} — {self.name}"

    @property
    def available(self) -> int:
        return self.stock - self.reserved

    @property
    def price(self) -> str:
        return format_cents(self.price_cents)


class Order(models.Model):
    TEMPORAL = "temporal"
    PLAIN = "plain"
    ENGINES = ((TEMPORAL, "Temporal workflow"), (PLAIN, "plain script"))
    # A plain-script order with no sign of life for this long has died with its process.
    PLAIN_STALL_S = 5

    customer_name = models.CharField(max_length=100)
    email = models.EmailField()
    phone = models.CharField(max_length=32, blank=True)
    address = models.CharField(max_length=200)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(
        max_length=32, choices=_choices(ORDER_STATUSES), default=PENDING, db_index=True
    )
    engine = models.CharField(max_length=16, choices=ENGINES, default=TEMPORAL, db_index=True)
    compare_with = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="compared_from",
        help_text="The same order placed in the other engine, to compare side by side.",
    )
    workflow_id = models.CharField(max_length=64, blank=True, db_index=True)
    start_error = models.TextField(
        blank=True, help_text="Why the workflow could not be started, if it could not."
    )
    payment_id = models.CharField(max_length=64, blank=True)
    tracking_number = models.CharField(max_length=64, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.customer_name})"

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents)

    @property
    def expected_workflow_id(self) -> str:
        return workflow_id_for(self.pk)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_lost(self) -> bool:
        """A plain-script order whose process died: nothing will ever move it again."""
        if self.engine != self.PLAIN or self.is_final or self.status == PENDING:
            return False
        return (timezone.now() - self.updated_at).total_seconds() > self.PLAIN_STALL_S


class OrderStep(models.Model):
    """One step of one order, as the activities last recorded it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=16, choices=[(s, STEP_LABELS[s]) for s in STEPS])
    position = models.PositiveSmallIntegerField()
    state = models.CharField(max_length=16, choices=_choices(STEP_STATES), default=STEP_PENDING)
    attempts = models.PositiveIntegerField(default=0)
    result = models.CharField(max_length=100, blank=True)
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "name"], name="one_step_per_name"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}/{self.name}: {self.state}"

    @property
    def label(self) -> str:
        return STEP_LABELS[self.name]

    @property
    def current_attempt(self) -> int:
        """The attempt running or coming next, as the page shows it (and Temporal counts).

        The record keeps the last attempt made: a retrying step has seen attempt n fail,
        so the attempt the page announces is n + 1.
        """
        return self.attempts + 1 if self.state == STEP_RETRYING else self.attempts


class ServiceSwitch(models.Model):
    """How a simulated service behaves; read on every attempt, so a flip hits running orders."""

    HEALTHY = "healthy"
    DOWN = "down"
    FLAKY = "flaky"
    SLOW = "slow"
    REJECT = "reject"
    CRASH = "crash"
    MODES = (HEALTHY, DOWN, FLAKY, SLOW, REJECT, CRASH)
    MODE_HELP = {
        HEALTHY: "every call succeeds",
        DOWN: "every call fails with “Service Unavailable” (retried)",
        FLAKY: "the next N calls fail, then it recovers",
        SLOW: "each call takes T ms (past the timeout it is retried)",
        REJECT: "a business error that is not retried (out of stock, card declined …)",
        CRASH: "the process dies during the call, right after the side effect (once per order)",
    }

    service = models.CharField(max_length=16, unique=True, choices=_choices(SERVICES))
    mode = models.CharField(max_length=16, choices=_choices(MODES), default=HEALTHY)
    failures = models.PositiveIntegerField(
        default=2, help_text="Flaky: how many calls fail before it recovers."
    )
    failures_left = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(
        default=3000, help_text="Slow: how long each call takes, in milliseconds."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.service}: {self.summary}"

    @property
    def summary(self) -> str:
        if self.mode == self.FLAKY:
            return f"flaky ({self.failures_left} of {self.failures} failures left)"
        if self.mode == self.SLOW:
            return f"slow ({self.latency_ms} ms)"
        return self.mode


class ServiceCall(models.Model):
    """The ledger: one row per attempt at a service call, whatever came of it."""

    OK = "ok"
    REPLAYED = "replayed"  # the effect already existed for this key: nothing new happened
    ERROR = "error"
    REJECTED = "rejected"
    OUTCOMES = (OK, REPLAYED, ERROR, REJECTED)

    service = models.CharField(max_length=16, choices=_choices(SERVICES), db_index=True)
    operation = models.CharField(max_length=32)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="calls")
    idempotency_key = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=_choices(OUTCOMES))
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # When this attempt started by Temporal's clock: the gaps between attempts are the backoff.
    started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "service", "operation", "attempt"],
                name="one_ledger_row_per_attempt",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} #{self.attempt}: {self.outcome}"


class Reservation(models.Model):
    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"
    STATES = (RESERVED, COMMITTED, RELEASED)

    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="reservations")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=_choices(STATES), default=RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_id} for order {self.order_id}: {self.state}"


class Charge(models.Model):
    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="charges")
    payment_id = models.CharField(max_length=64, unique=True)
    amount_cents = models.PositiveIntegerField()
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        refunded = " (refunded)" if self.refunded_at else ""
        return f"{self.payment_id} {format_cents(self.amount_cents)}{refunded}"


class Shipment(models.Model):
    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    tracking_number = models.CharField(max_length=64, unique=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.tracking_number


class Message(models.Model):
    EMAIL = "email"
    SMS = "sms"

    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=8, choices=[(EMAIL, "email"), (SMS, "sms")])
    recipient = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}"


def format_cents(cents: int) -> str:
    return f"${cents / 100:,.2f}"
