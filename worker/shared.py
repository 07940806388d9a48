"""What the web side and the worker agree on: names, inputs, outputs and the retry table.

This module must stay free of Django and of workflow internals: the workflow sandbox
imports it, and so does the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.common import RetryPolicy

WORKFLOW_NAME = "OrderWorkflow"
PROGRESS_QUERY = "progress"


def workflow_id_for(order_id: int) -> str:
    return f"order-{order_id}"


# The order's steps, in the order the dashboard shows them.
STEPS = ("inventory", "payment", "commit", "shipping", "email", "sms")
STEP_LABELS = {
    "inventory": "Reserve inventory",
    "payment": "Charge payment",
    "commit": "Commit inventory",
    "shipping": "Schedule shipping",
    "email": "Email confirmation",
    "sms": "SMS update",
}
SERVICES = ("inventory", "payment", "shipping", "email", "sms")
# The activity behind each step, and back: describe() names pending activities by type.
STEP_ACTIVITIES = {
    "inventory": "reserve_inventory",
    "payment": "charge_payment",
    "commit": "commit_inventory",
    "shipping": "schedule_shipping",
    "email": "send_email",
    "sms": "send_sms",
}
ACTIVITY_STEPS = {activity: step for step, activity in STEP_ACTIVITIES.items()}

# Order statuses.
PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
COMPLETED_WITH_WARNINGS = "completed_with_warnings"
FAILED = "failed"
CANCELLED = "cancelled"
ORDER_STATUSES = (PENDING, RUNNING, COMPLETED, COMPLETED_WITH_WARNINGS, FAILED, CANCELLED)
FINAL_STATUSES = (COMPLETED, COMPLETED_WITH_WARNINGS, FAILED, CANCELLED)

# Step states.
STEP_PENDING = "pending"
STEP_RUNNING = "running"
STEP_RETRYING = "retrying"
STEP_COMPLETED = "completed"
STEP_FAILED = "failed"
STEP_SKIPPED = "skipped"
STEP_COMPENSATED = "compensated"
STEP_STATES = (
    STEP_PENDING,
    STEP_RUNNING,
    STEP_RETRYING,
    STEP_COMPLETED,
    STEP_FAILED,
    STEP_SKIPPED,
    STEP_COMPENSATED,
)

# Error types the services raise for business outcomes: retrying cannot change them.
BUSINESS_ERRORS = {
    "inventory": "OutOfStock",
    "payment": "CardDeclined",
    "shipping": "AddressInvalid",
    "email": "MailboxRejected",
    "sms": "NumberInvalid",
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
    "inventory": _policy(6, "OutOfStock"),
    "payment": _policy(6, "CardDeclined"),
    "commit": _policy(6),
    "shipping": _policy(5, "AddressInvalid"),
    "email": _policy(5, "MailboxRejected"),
    # SMS is a courtesy: give up sooner, and the order completes with a warning.
    "sms": _policy(3, "NumberInvalid"),
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
    state: str = STEP_PENDING
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
