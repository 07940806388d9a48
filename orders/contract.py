"""What the dashboard and the worker agree on: names, statuses, inputs, outputs, retry table.

The lowest layer: the workflow sandbox imports it (passed through), and so do the web
app and the worker. It imports nothing of this project. Statuses and step states are
`TextChoices`, which are plain strings to Temporal's data converter and the templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import TextChoices
from temporalio.common import RetryPolicy

WORKFLOW_NAME = "OrderWorkflow"
PROGRESS_QUERY = "progress"
DECIDE_UPDATE = "decide"  # an operator approves or rejects an order waiting for approval


def workflow_id_for(order_id: int, prefix: str = "") -> str:
    """`order-<n>`; a prefix keeps orders of different databases apart on one server."""
    return f"{prefix}order-{order_id}"


class OrderStatus(TextChoices):
    # Accepted and saved; Temporal has not been reached yet. The starter starts it.
    QUEUED = "queued", "queued"
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    # Its amount needs an operator's approval; its stock is reserved meanwhile.
    AWAITING_APPROVAL = "awaiting_approval", "awaiting approval"
    COMPLETED = "completed", "completed"
    COMPLETED_WITH_WARNINGS = "completed_with_warnings", "completed with warnings"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"  # by an operator; what was done is undone
    REJECTED = (
        "rejected",
        "rejected",
    )  # approval refused, or no decision before the deadline; undone
    # Temporal closed or lost the workflow (terminated, timed out, gone) before it finished
    # the order: nothing will move it any more.
    STOPPED = "stopped", "stopped in Temporal"

    @classmethod
    def final(cls) -> tuple[OrderStatus, ...]:
        """Statuses nothing changes any more."""
        return (
            cls.COMPLETED,
            cls.COMPLETED_WITH_WARNINGS,
            cls.FAILED,
            cls.CANCELLED,
            cls.REJECTED,
            cls.STOPPED,
        )


class StepState(TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    PAUSED = "paused"  # an operator paused its retries
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    COMPENSATED = "compensated"


class Step(TextChoices):
    """The order's steps, in the order the dashboard shows them."""

    INVENTORY = "inventory", "Reserve inventory"
    PAYMENT = "payment", "Charge payment"
    COMMIT = "commit", "Commit inventory"
    SHIPPING = "shipping", "Schedule shipping"
    EMAIL = "email", "Email confirmation"
    SMS = "sms", "SMS update"


class Service(TextChoices):
    INVENTORY = "inventory", "Inventory"
    PAYMENT = "payment", "Payment"
    SHIPPING = "shipping", "Shipping"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


STEPS = tuple(Step.values)
SERVICES = tuple(Service.values)
# The activity behind each step, and back: describe() names pending activities by type.
STEP_ACTIVITIES = {
    Step.INVENTORY: "reserve_inventory",
    Step.PAYMENT: "charge_payment",
    Step.COMMIT: "commit_inventory",
    Step.SHIPPING: "schedule_shipping",
    Step.EMAIL: "send_email",
    Step.SMS: "send_sms",
}
ACTIVITY_STEPS = {activity: str(step) for step, activity in STEP_ACTIVITIES.items()}
# The service call behind each step: its rows in the attempt ledger (service, operation).
STEP_CALLS = {
    Step.INVENTORY: (Service.INVENTORY, "reserve"),
    Step.PAYMENT: (Service.PAYMENT, "charge"),
    Step.COMMIT: (Service.INVENTORY, "commit"),
    Step.SHIPPING: (Service.SHIPPING, "ship"),
    Step.EMAIL: (Service.EMAIL, "send"),
    Step.SMS: (Service.SMS, "send"),
}


def step_key(workflow_id: str, step: str) -> str:
    """The idempotency key of a step's service call: the same on every retry and after
    every crash, since it is derived from the workflow id alone."""
    suffix = {Step.INVENTORY: "reserve", Step.PAYMENT: "charge", Step.SHIPPING: "ship"}
    return f"{workflow_id}:{suffix.get(step, step)}"


# The service each step calls: an order "stuck on payment" is one whose current step calls it.
STEP_SERVICES = {step: service for step, (service, _) in STEP_CALLS.items()}


def steps_calling(service: str) -> list[str]:
    """The steps whose activity calls `service` (inventory: reserve and commit)."""
    return [str(step) for step, called in STEP_SERVICES.items() if called == service]


# Error types the services raise for business outcomes: retrying cannot change them.
BUSINESS_ERRORS = {
    Service.INVENTORY: "OutOfStock",
    Service.PAYMENT: "CardDeclined",
    Service.SHIPPING: "AddressInvalid",
    Service.EMAIL: "MailboxRejected",
    Service.SMS: "NumberInvalid",
}


@dataclass(frozen=True)
class StepPolicy:
    """Timeouts and retries for one step: the one table the workflow and the page read."""

    start_to_close: timedelta
    heartbeat: timedelta
    initial_interval: timedelta
    backoff: float
    maximum_interval: timedelta
    maximum_attempts: int  # 0 means "until it works"
    non_retryable: tuple[str, ...] = ()

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=self.initial_interval,
            backoff_coefficient=self.backoff,
            maximum_interval=self.maximum_interval,
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(self.non_retryable),
        )

    def describe(self) -> str:
        attempts = "unlimited" if self.maximum_attempts == 0 else str(self.maximum_attempts)
        return (
            f"{attempts} attempts, backoff {self.initial_interval.total_seconds():g}s"
            f" ×{self.backoff:g} up to {self.maximum_interval.total_seconds():g}s,"
            f" {self.start_to_close.total_seconds():g}s per attempt"
        )


def _policy(attempts: int, *non_retryable: str, timeout_s: float = 5) -> StepPolicy:
    return StepPolicy(
        start_to_close=timedelta(seconds=timeout_s),
        # A worker that dies mid-call is noticed after this, not after the full timeout.
        heartbeat=timedelta(seconds=2),
        initial_interval=timedelta(seconds=1),
        backoff=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=attempts,
        non_retryable=non_retryable,
    )


RETRY_TABLE: dict[str, StepPolicy] = {
    Step.INVENTORY: _policy(6, BUSINESS_ERRORS[Service.INVENTORY]),
    Step.PAYMENT: _policy(6, BUSINESS_ERRORS[Service.PAYMENT]),
    Step.COMMIT: _policy(6),
    Step.SHIPPING: _policy(5, BUSINESS_ERRORS[Service.SHIPPING]),
    Step.EMAIL: _policy(5, BUSINESS_ERRORS[Service.EMAIL]),
    # SMS is a courtesy: give up sooner, and the order completes with a warning.
    Step.SMS: _policy(3, BUSINESS_ERRORS[Service.SMS]),
    # Undoing must eventually happen, so compensation retries until the service is back.
    "compensation": _policy(0),
}


@dataclass
class OrderInput:
    order_id: int
    sku: str
    quantity: int
    amount_cents: int
    customer_name: str
    email: str
    phone: str
    address: str
    # Decided when the order is placed, so the workflow never reads the dashboard's settings.
    needs_approval: bool = False
    approval_timeout_s: float = 0


@dataclass
class Decision:
    """An operator's answer to an order waiting for approval (the `decide` update)."""

    approve: bool
    by: str
    reason: str = ""


@dataclass
class StatusRequest:
    """A status the workflow reports on its own (waiting for approval)."""

    order_id: int
    status: str


@dataclass
class StepRequest:
    """What every service activity receives: the order and the key that makes it idempotent."""

    order_id: int
    idempotency_key: str
    sku: str = ""
    quantity: int = 0
    amount_cents: int = 0
    email: str = ""
    phone: str = ""
    address: str = ""


@dataclass
class StepResult:
    """What a service call returned: a reference (payment id, tracking number …)."""

    reference: str
    attempt: int
    detail: str = ""


@dataclass
class StepProgress:
    name: str
    state: str = StepState.PENDING
    attempts: int = 0
    result: str = ""
    error: str = ""


@dataclass
class OrderProgress:
    """The answer to the workflow's `progress` query."""

    order_id: int
    status: str
    steps: list[StepProgress] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class OrderOutcome:
    order_id: int
    status: str
    payment_id: str = ""
    tracking_number: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class FinishRequest:
    order_id: int
    status: str
    payment_id: str = ""
    tracking_number: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    step_states: dict[str, str] = field(default_factory=dict)


def format_cents(cents: int) -> str:
    return f"${cents / 100:,.2f}"
