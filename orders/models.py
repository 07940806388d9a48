"""Orders and their steps: what the dashboard and the admin show about each order.

The simulated services' state (catalogue, switches, effects, ledger) lives in the
simulator app below this one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from orders.contract import OrderStatus, Step, StepState, format_cents
from orders.simulator.models import Product


class Engine(models.TextChoices):
    TEMPORAL = "temporal", "Temporal workflow"
    PLAIN = "plain", "plain script"


class Order(models.Model):
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
        max_length=32, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True
    )
    engine = models.CharField(
        max_length=16, choices=Engine.choices, default=Engine.TEMPORAL, db_index=True
    )
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
    # Set by the first operator who asks: a second one at the same moment is told, and
    # the workflow is asked to cancel once.
    cancel_requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The live board's "has anything changed" check reads the newest updated_at:
            # from the index that is one lookup, not a scan of every order.
            models.Index(fields=["updated_at"], name="order_updated_at"),
            # Plain-script orders gone quiet while running (the lost ones), counted with
            # every board check; its first two columns serve the counts by status and
            # engine that Prometheus scrapes.
            models.Index(fields=["status", "engine", "updated_at"], name="order_status_engine"),
            # Temporal orders without a workflow (the starter's and the audit's question):
            # a handful, found without reading every Temporal order.
            models.Index(fields=["engine", "workflow_id"], name="order_engine_workflow"),
            # The metrics (orders/metrics.py): orders finished in the last minutes by
            # status, read from an index alone.
            models.Index(fields=["finished_at", "status"], name="order_finished_status"),
            # Filtered board pages: newest first within an engine or a status.
            models.Index(fields=["engine", "-id"], name="order_engine_newest"),
            models.Index(fields=["status", "-id"], name="order_status_newest"),
        ]
        permissions = [
            ("operate_orders", "Can place orders, flip switches and act on orders"),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.customer_name})"

    @property
    def amount(self) -> str:
        return format_cents(self.amount_cents)

    @property
    def is_final(self) -> bool:
        return self.status in OrderStatus.final()

    @property
    def is_lost(self) -> bool:
        """A plain-script order whose process died: nothing will ever move it again."""
        if self.engine != Engine.PLAIN or self.is_final or self.status == OrderStatus.PENDING:
            return False
        return (timezone.now() - self.updated_at).total_seconds() > self.PLAIN_STALL_S


class OrderStep(models.Model):
    """One step of one order, as its attempts last recorded it (see orders/steps.py)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=16, choices=Step.choices)
    position = models.PositiveSmallIntegerField()
    state = models.CharField(max_length=16, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    result = models.CharField(max_length=100, blank=True)
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)  # the latest attempt's start
    # The first attempt's start: how long an order has been on this step, retries included.
    entered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker that started the last attempt: if that attempt dies with it, the next
    # attempt records it as lost with this worker (see orders.steps.record_lost_attempts).
    worker = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "name"], name="one_step_per_name"),
        ]
        indexes = [
            # The board's "retrying now" and "stuck on <service>" filters start from the
            # few steps in flight, not from every order ever placed.
            models.Index(fields=["state", "name"], name="step_state_name"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}/{self.name}: {self.state}"

    @property
    def label(self) -> str:
        return Step(self.name).label

    @property
    def current_attempt(self) -> int:
        """The attempt running or coming next, as the page shows it (and Temporal counts).

        The record keeps the last attempt made: a retrying step has seen attempt n fail,
        so the attempt the page announces is n + 1.
        """
        return self.attempts + 1 if self.state == StepState.RETRYING else self.attempts


class Action(models.TextChoices):
    """What an operator can do; the values are the page's data-action hooks."""

    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY_NOW = "retry-now"
    SWITCH = "switch"  # a service's failure switch flipped


class OperatorAction(models.Model):
    """Who did what, when and why: every action on an order and every switch flipped.

    Temporal keeps no record of a pause or a resume; this does, refused attempts too.
    """

    action = models.CharField(max_length=16, choices=Action.choices, db_index=True)
    actor = models.CharField(max_length=150, help_text="The user, or who ran the command.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.CASCADE, related_name="actions"
    )
    step = models.CharField(max_length=16, blank=True, choices=Step.choices)
    service = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    accepted = models.BooleanField(help_text="False: refused, and nothing changed.")
    message = models.TextField(help_text="What the operator was told.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        target = f"order #{self.order_id}" if self.order_id else self.service
        verdict = "" if self.accepted else " (refused)"
        return f"{self.actor}: {self.action} {target}{verdict}"


def one_running(name: str) -> models.UniqueConstraint:
    """At most one row in the state "running", kept by the database: two starts at the
    same moment (two web processes) both pass the runner's own check, and only one of
    their rows goes in (orders/load.py `create_run`, orders/chaos.py `open_run`)."""
    return models.UniqueConstraint(fields=["state"], condition=models.Q(state="running"), name=name)


class LoadRun(models.Model):
    """One run of the load generator (`load` command or the page): what it was asked,
    how far it got, and the orders it placed. The runner polls `stop_requested`, so a
    run is stopped from any process."""

    class State(models.TextChoices):
        RUNNING = "running"
        FINISHED = "finished"  # placed all it was asked to
        STOPPED = "stopped"  # stopped by someone, or out of stock
        INTERRUPTED = "interrupted"  # its process died mid-run

    # A running run that has said nothing for this long died with its process.
    SILENT_S = 30

    total = models.PositiveIntegerField(help_text="Orders asked for.")
    rate = models.FloatField(help_text="Orders per second asked for.")
    engine = models.CharField(max_length=16)
    mix = models.CharField(max_length=32, blank=True)
    placed = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    note = models.TextField(blank=True, help_text="Why it stopped early, when it did.")
    actor = models.CharField(max_length=150)
    stop_requested = models.BooleanField(default=False)
    orders = models.ManyToManyField(Order, related_name="load_runs", blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [one_running("one_load_run_running")]

    def __str__(self) -> str:
        return f"load run #{self.pk}: {self.placed}/{self.total} at {self.rate:g}/s, {self.state}"

    @property
    def shown_state(self) -> str:
        silent = (timezone.now() - self.updated_at).total_seconds() > self.SILENT_S
        if self.state == self.State.RUNNING and silent:
            return self.State.INTERRUPTED
        return self.state

    @property
    def percent(self) -> int:
        return int(100 * self.placed / self.total) if self.total else 0


class ChaosRun(models.Model):
    """One chaos run: orders placed on both engines while switches flip at random.

    The row outlives the request or the terminal that started it; the process running it
    beats `heartbeat_at`, and its scoreboard is computed from the orders it placed.
    """

    class State(models.TextChoices):
        RUNNING = "running", "placing orders, breaking services"
        SETTLING = "settling", "every switch healthy, waiting for the orders to settle"
        FINISHED = "finished", "finished"
        INTERRUPTED = "interrupted", "interrupted: the process running it went away"

    started_by = models.CharField(max_length=150)
    orders_per_engine = models.PositiveIntegerField()
    minutes = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    temporal_restarts = models.PositiveIntegerField(
        default=0, help_text="Planned restarts of an embedded Temporal dev server."
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    stop_requested_by = models.CharField(max_length=150, blank=True)
    switch_flips = models.PositiveIntegerField(default=0)
    temporal_restarts_done = models.PositiveIntegerField(default=0)
    note = models.TextField(blank=True, help_text="How it ended, in words.")
    orders = models.ManyToManyField(Order, blank=True, related_name="chaos_runs")
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [one_running("one_chaos_run_running")]

    def __str__(self) -> str:
        return f"Chaos run #{self.pk} ({self.state})"

    @property
    def actor(self) -> str:
        """Who the switch record names for this run's flips."""
        return f"chaos run #{self.pk}"

    @property
    def active(self) -> bool:
        return self.state in (self.State.RUNNING, self.State.SETTLING)
