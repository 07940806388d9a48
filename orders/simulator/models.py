"""The simulated services' own state: catalogue and stock, switches, effects, call ledger.

Effects are rows of their own (reservations, charges, shipments, messages), one per
idempotency key: that is what proves "charged exactly once" however many attempts the
ledger shows. Orders are referred to by name ("orders.Order"), never imported: the
services sit below the order app.
"""

from __future__ import annotations

from django.db import models

from orders.contract import Service, format_cents


class Product(models.Model):
    """The inventory service's catalogue: price, units on the shelf, units held."""

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


class Mode(models.TextChoices):
    HEALTHY = "healthy"
    DOWN = "down"
    FLAKY = "flaky"
    SLOW = "slow"
    REJECT = "reject"
    CRASH = "crash"


MODE_HELP = {
    Mode.HEALTHY: "every call succeeds",
    Mode.DOWN: "every call fails with “Service Unavailable” (retried)",
    Mode.FLAKY: "the next N calls fail, then it recovers",
    Mode.SLOW: "each call takes T ms (past the timeout it is retried)",
    Mode.REJECT: "a business error that is not retried (out of stock, card declined …)",
    Mode.CRASH: "the process dies during the call, right after the side effect (once per order)",
}


class ServiceSwitch(models.Model):
    """How a simulated service behaves; read on every attempt, so a flip hits running orders."""

    service = models.CharField(max_length=16, unique=True, choices=Service.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.HEALTHY)
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
        if self.mode == Mode.FLAKY:
            return f"flaky ({self.failures_left} of {self.failures} failures left)"
        if self.mode == Mode.SLOW:
            return f"slow ({self.latency_ms} ms)"
        return self.mode


class Outcome(models.TextChoices):
    OK = "ok"
    REPLAYED = "replayed"  # the effect already existed for this key: nothing new happened
    ERROR = "error"
    REJECTED = "rejected"
    # No answer ever came: the attempt died with its worker, and the timeout that noticed
    # it (heartbeat, else start-to-close) let the next attempt start. Recorded by that one.
    LOST = "lost"


class Operation(models.TextChoices):
    """What a call asks of its service: a step's own call, or undoing it."""

    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"
    CHARGE = "charge"
    REFUND = "refund"
    SHIP = "ship"
    CANCEL = "cancel"
    SEND = "send"


class ServiceCall(models.Model):
    """The ledger: one row per attempt at a service call, whatever came of it."""

    service = models.CharField(max_length=16, choices=Service.choices, db_index=True)
    operation = models.CharField(max_length=32, choices=Operation.choices, db_index=True)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="calls")
    idempotency_key = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField()
    # Indexed, as operation: the ledger's list in the admin counts by them.
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    # The outcome this row was first written with, kept once a later write changes it (an
    # attempt recorded lost that answers late): Prometheus counts attempts by it, and a
    # counter must never go down. Empty while the outcome is still the first one.
    first_outcome = models.CharField(
        max_length=16,
        choices=Outcome.choices,
        blank=True,
        default="",
        db_default="",
        editable=False,
    )
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # The worker that ran the attempt (Temporal's worker identity, "<pid>@<host>"): with
    # workers killed on purpose, it shows whose death each lost attempt was.
    worker = models.CharField(max_length=100, blank=True)
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
        indexes = [
            # The metrics (orders/metrics.py): retries of the last minutes by service, and
            # attempts by service and outcome for Prometheus, each read from an index alone.
            models.Index(fields=["created_at", "service", "attempt"], name="call_recent"),
            # With first_outcome: the counter's one statement reads this index alone.
            models.Index(fields=["service", "outcome", "first_outcome"], name="call_outcomes"),
        ]

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} #{self.attempt}: {self.outcome}"


class Reservation(models.Model):
    class State(models.TextChoices):
        RESERVED = "reserved"
        COMMITTED = "committed"
        RELEASED = "released"

    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="reservations")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The audit's filter asks "does this order hold stock?" of every order: the
        # index answers without reading the rows.
        indexes = [models.Index(fields=["order", "state"], name="reservation_order_state")]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_id} for order {self.order_id}: {self.state}"


class Charge(models.Model):
    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="charges")
    payment_id = models.CharField(max_length=64, unique=True)
    amount_cents = models.PositiveIntegerField()
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["order", "refunded_at"], name="charge_order_refunded")]

    def __str__(self) -> str:
        refunded = " (refunded)" if self.refunded_at else ""
        return f"{self.payment_id} {format_cents(self.amount_cents)}{refunded}"


class Shipment(models.Model):
    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="shipments")
    tracking_number = models.CharField(max_length=64, unique=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["order", "cancelled_at"], name="shipment_order_cancelled")]

    def __str__(self) -> str:
        return self.tracking_number


class Message(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email"
        SMS = "sms"

    key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    recipient = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}"
