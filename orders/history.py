"""A realistic order history, written in bulk: what the admin, the audit and the board
look like after months of use.

Every order follows one story the real flows produce (orders/placement.py, the workflow,
the plain script, the services): its steps, every attempt in the ledger (successes,
failures, rejections, attempts lost to a crash and replayed), the effects that remained
(reservations, charges, refunds, shipments, messages) and what operators did. The rows
add up the way `manage.py audit` checks, so the audit passes on a fresh history.

Rows go in with multi-row INSERTs over the connection (no model instances, no signals):
a hundred thousand orders are about two million rows. Explicit primary keys follow the
highest ones already there; PostgreSQL's sequences are moved past them at the end.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from orders.contract import SERVICES, STEPS, OrderStatus, Service, Step, StepState
from orders.models import Action, Engine, OperatorAction, Order, OrderStep
from orders.simulator.models import (
    Charge,
    Message,
    Operation,
    Outcome,
    Product,
    Reservation,
    ServiceCall,
    Shipment,
)
from orders.simulator.services import CRASH_MESSAGE, REJECTION_MESSAGES
from orders.temporal import order_workflow_id

# More than this is not a demo any more, and would take minutes to write.
MAX_HISTORY = 1_000_000
# Orders still moving are the newest ones, at most this many (the rest have ended):
# queued ones must stay younger than QUEUED_LIMIT_SECONDS, or the audit flags them.
MAX_IN_FLIGHT = 400
IN_FLIGHT_SPACING = timedelta(milliseconds=500)
IN_FLIGHT_RUNWAY = timedelta(minutes=1)
HISTORY_SPAN = timedelta(days=90)
CHUNK = 5_000  # orders written per round: bounds memory whatever the size

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton")
STREETS = ("Compiler Way", "Kernel Road", "Lambda Lane", "Queue Street", "Cache Court")
OPERATORS = ("alice", "bob", "carol")
# The worker identity the made-up ledger names ("<pid>@<host>", as a real worker's).
HISTORY_WORKER = "4242@history"
LOST = f"No answer: lost with {HISTORY_WORKER}; noticed by the heartbeat timeout (2 s)"


class HistoryError(ValueError):
    """A history that cannot be written as asked (bad size, no catalogue)."""


@dataclass
class Written:
    """How many rows of each kind a history added."""

    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


def check_size(orders: int) -> None:
    if orders < 1 or orders > MAX_HISTORY:
        raise HistoryError(
            f"The history size must be between 1 and {MAX_HISTORY:,} orders; got {orders:,}."
        )


# --- the rows, as tables of tuples ------------------------------------------------------


class _Table:
    """Rows for one model, in a fixed column order, inserted many per statement."""

    def __init__(self, model: type[models.Model], names: Sequence[str]) -> None:
        self.model = model
        self.fields = [model._meta.get_field(name) for name in names]
        self.rows: list[tuple] = []
        start = model.objects.aggregate(top=Max("pk"))["top"] or 0
        self.ids = itertools.count(start + 1)
        # Timestamps and JSON need the backend's own form; everything else goes as is.
        datetime_form = _datetime_form()
        self.adapters: list[tuple[int, Callable[[object], object]]] = [
            (i + 1, datetime_form)  # + 1: the id comes first
            if isinstance(f, models.DateTimeField)
            else (i + 1, lambda v, f=f: f.get_db_prep_save(v, connection))
            for i, f in enumerate(self.fields)
            if isinstance(f, models.DateTimeField | models.JSONField)
        ]

    def add(self, *values: object) -> int:
        pk = next(self.ids)
        self.rows.append((pk, *values))
        return pk

    def flush(self) -> int:
        if not self.rows:
            return 0
        columns = ["id", *(f.column for f in self.fields)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
        prepared = []
        for row in self.rows:
            values = list(row)
            for i, adapt in self.adapters:
                if values[i] is not None:
                    values[i] = adapt(values[i])
            prepared.append(values)
        # Stay under the backend's limit on parameters per statement (SQLite: 32766).
        per_statement = max(1, min(500, 30_000 // len(columns)))
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        with connection.cursor() as wrapper:
            # The driver's cursor (still taking %s on every backend): with DEBUG on,
            # Django's own would rebuild each statement's text for its query log.
            cursor = wrapper.cursor
            if connection.vendor == "postgresql":
                # COPY: PostgreSQL plans a 10,000-parameter INSERT slower than it
                # writes the rows.
                with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                    for row in prepared:
                        copy.write_row(row)
                prepared = []
            for start in range(0, len(prepared), per_statement):
                batch = prepared[start : start + per_statement]
                # Names come from the models' metadata, values go as parameters.
                values = ", ".join([placeholder] * len(batch))
                sql = f"INSERT INTO {table} ({quoted}) VALUES {values}"  # noqa: S608
                cursor.execute(sql, [v for row in batch for v in row])
        written = len(self.rows)
        self.rows = []
        return written


def _datetime_form() -> Callable[[datetime], object]:
    """The backend's form of the history's times (naive, in UTC), made cheaply: there
    are millions of them."""
    if connection.vendor == "sqlite" and connection.timezone == UTC:
        return str  # what Django's adapter stores: naive text in the connection's zone
    return lambda value: connection.ops.adapt_datetimefield_value(value.replace(tzinfo=UTC))


class _Tables:
    def __init__(self) -> None:
        self.orders = _Table(
            Order,
            [
                "customer_name",
                "email",
                "phone",
                "address",
                "product",
                "quantity",
                "amount_cents",
                "status",
                "engine",
                "workflow_id",
                "start_error",
                "payment_id",
                "tracking_number",
                "warnings",
                "failure_reason",
                "cancel_requested_by",
                "created_at",
                "updated_at",
                "finished_at",
            ],
        )
        self.steps = _Table(
            OrderStep,
            [
                "order",
                "name",
                "position",
                "state",
                "attempts",
                "result",
                "last_error",
                "started_at",
                "finished_at",
                "entered_at",
                "worker",
            ],
        )
        self.calls = _Table(
            ServiceCall,
            [
                "service",
                "operation",
                "order",
                "idempotency_key",
                "attempt",
                "outcome",
                "error",
                "duration_ms",
                "started_at",
                "created_at",
                "worker",
            ],
        )
        self.reservations = _Table(
            Reservation,
            ["key", "order", "product", "quantity", "state", "created_at", "updated_at"],
        )
        self.charges = _Table(
            Charge, ["key", "order", "payment_id", "amount_cents", "refunded_at", "created_at"]
        )
        self.shipments = _Table(
            Shipment, ["key", "order", "tracking_number", "cancelled_at", "created_at"]
        )
        self.messages = _Table(
            Message, ["key", "order", "channel", "recipient", "body", "created_at"]
        )
        self.actions = _Table(
            OperatorAction,
            [
                "action",
                "actor",
                "user",
                "order",
                "step",
                "service",
                "reason",
                "accepted",
                "message",
                "created_at",
            ],
        )

    def all(self) -> list[_Table]:
        return [
            self.orders,
            self.steps,
            self.calls,
            self.reservations,
            self.charges,
            self.shipments,
            self.messages,
            self.actions,
        ]


# --- one order's story ------------------------------------------------------------------


@dataclass
class _StepRecord:
    state: str = StepState.PENDING
    attempts: int = 0
    result: str = ""
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


SERVICE_OF_STEP = {
    Step.INVENTORY: "inventory",
    Step.PAYMENT: "payment",
    Step.COMMIT: "inventory",
    Step.SHIPPING: "shipping",
    Step.EMAIL: "email",
    Step.SMS: "sms",
}
OPERATION_OF_STEP = {
    Step.INVENTORY: Operation.RESERVE,
    Step.PAYMENT: Operation.CHARGE,
    Step.COMMIT: Operation.COMMIT,
    Step.SHIPPING: Operation.SHIP,
    Step.EMAIL: Operation.SEND,
    Step.SMS: Operation.SEND,
}
# What the services answer when switched down (orders/simulator/services.py).
UNAVAILABLE = {service: f"{Service(service).label} Service Unavailable" for service in SERVICES}


class _Order:
    """Writes one order's rows as its story unfolds, attempt by attempt."""

    def __init__(
        self, tables: _Tables, rng: random.Random, product: Product, when: datetime
    ) -> None:
        self.tables = tables
        self.rng = rng
        self.product = product
        self.clock = when
        self.created_at = when
        self.quantity = rng.choice((1, 1, 1, 2, 3))
        self.pk = next(tables.orders.ids)
        self.engine = Engine.TEMPORAL
        self.steps = {name: _StepRecord() for name in STEPS}
        self.reservation: tuple[int, str] | None = None  # (id, key): the one that took effect
        self.charge_key = ""
        self.shipment_key = ""
        self.payment_id = ""
        self.tracking = ""
        self.warnings: list[str] = []
        self.failure_reason = ""
        self.cancel_requested_by = ""
        self.start_error = ""
        self.held_units = 0  # stock this order still holds reserved
        # Effect rows are written when the order is done: refunds and releases change them.
        self._reservations: list[list] = []
        self._charges: list[list] = []
        self._shipments: list[list] = []

    # time passes between attempts
    def tick(self, seconds: float) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    @property
    def wid(self) -> str:
        return order_workflow_id(self.pk)

    def key(self, step: str, attempt: int) -> str:
        if self.engine == Engine.PLAIN:
            return f"plain-{self.pk}:{step}:{attempt}"
        operation = {"inventory": "reserve", "payment": "charge", "shipping": "ship"}
        return f"{self.wid}:{operation.get(step, step)}"

    def call(
        self, service: str, operation: str, key: str, attempt: int, outcome: str, error: str = ""
    ) -> None:
        started = self.tick(self.rng.uniform(0.01, 0.2))
        duration = self.rng.randint(3, 60)
        self.tables.calls.add(
            service,
            operation,
            self.pk,
            key,
            attempt,
            outcome,
            error,
            duration,
            started,
            self.tick(duration / 1000),
            HISTORY_WORKER,
        )

    # --- steps ---

    def attempt_step(
        self,
        step: str,
        *,
        failures: int = 0,
        then: str = "ok",
        crash: bool = False,
        lost: bool = False,
    ) -> bool:
        """`failures` unavailable attempts, then `then`: ok, rejected, or gave_up (the
        last failure was the final attempt); `lost`: the first attempt died with its
        worker before answering. True when the step took effect."""
        service, operation = SERVICE_OF_STEP[step], OPERATION_OF_STEP[step]
        record = self.steps[step]
        record.started_at = self.clock
        attempt = 0
        if lost:
            attempt += 1
            self.call(service, operation, self.key(step, attempt), attempt, Outcome.LOST, LOST)
            self.tick(2 + 2 ** (attempt - 1))  # the heartbeat timeout, then the backoff
        for _ in range(failures):
            attempt += 1
            self.call(
                service, operation, self.key(step, attempt), attempt, "error", UNAVAILABLE[service]
            )
            record.error = UNAVAILABLE[service]
            self.tick(2 ** (attempt - 1))  # the backoff before the next attempt
        if then == "gave_up":
            record.state, record.attempts = StepState.FAILED, attempt
            return False
        attempt += 1
        key = self.key(step, attempt)
        if then == "rejected":
            message = REJECTIONS[step]
            self.call(service, operation, key, attempt, Outcome.REJECTED, message)
            record.state, record.attempts, record.error = StepState.FAILED, attempt, message
            return False
        if crash:  # the effect happened, the process died; the retry finds it done
            self.effect(step, key)
            self.call(service, operation, key, attempt, Outcome.ERROR, CRASH_MESSAGE)
            self.tick(2 ** (attempt - 1) + 2)  # the heartbeat timeout, then the backoff
            attempt += 1
            self.call(
                service,
                operation,
                key,
                attempt,
                Outcome.REPLAYED,
                f"already done for key {key}: nothing changed",
            )
        else:
            self.effect(step, key)
            self.call(service, operation, key, attempt, Outcome.OK)
        record.state, record.attempts, record.error = StepState.COMPLETED, attempt, ""
        record.result = self.reference(step)
        record.finished_at = self.clock
        return True

    def retrying(self, step: str, failures: int) -> None:
        """Still failing, another attempt to come (an order in flight)."""
        self.attempt_step(step, failures=failures, then="gave_up")
        self.steps[step].state = StepState.RETRYING

    def effect(self, step: str, key: str) -> None:
        now = self.clock
        if step == Step.INVENTORY:
            rid = next(self.tables.reservations.ids)
            self.reservation = (rid, key)
            self._reservations.append(
                [rid, key, self.pk, self.product.pk, self.quantity, "reserved", now, now]
            )
            self.held_units = self.quantity
        elif step == Step.PAYMENT:
            cid = next(self.tables.charges.ids)
            self.charge_key, self.payment_id = key, f"PAY-{cid:010X}"
            self._charges.append([cid, key, self.pk, self.payment_id, self.amount, None, now])
        elif step == Step.COMMIT:
            self._reservations[-1][5] = "committed"
            self._reservations[-1][7] = now
            self.held_units = 0
        elif step == Step.SHIPPING:
            sid = next(self.tables.shipments.ids)
            self.shipment_key, self.tracking = key, f"TRK-{sid:010X}"
            self._shipments.append([sid, key, self.pk, self.tracking, None, now])
        else:
            recipient = self.email if step == Step.EMAIL else self.phone
            body = "Confirmed" if step == Step.EMAIL else "Shipped"
            self.tables.messages.add(key, self.pk, step, recipient, body, now)

    def reference(self, step: str) -> str:
        if step in (Step.INVENTORY, Step.COMMIT):
            return f"RES-{self.reservation[0]}" if self.reservation else ""
        if step == Step.PAYMENT:
            return self.payment_id
        if step == Step.SHIPPING:
            return self.tracking
        return f"{step} to {self.email if step == Step.EMAIL else self.phone}"

    # --- the saga ---

    def undo(self) -> None:
        """The workflow's compensation: newest first, every step that was tried."""
        for step, operation, service in (
            (Step.SHIPPING, Operation.CANCEL, "shipping"),
            (Step.PAYMENT, Operation.REFUND, "payment"),
            (Step.INVENTORY, Operation.RELEASE, "inventory"),
        ):
            record = self.steps[step]
            if record.state not in (StepState.COMPLETED, StepState.FAILED):
                continue
            key = f"{self.key(step, 1)}:undo"
            took_effect = record.state == StepState.COMPLETED
            if took_effect:
                self.undo_effect(step)
                self.call(service, operation, key, 1, Outcome.OK)
                record.state = StepState.COMPENSATED
            else:
                self.call(service, operation, key, 1, Outcome.REPLAYED, "nothing to undo")
            if step == Step.INVENTORY and self.steps[Step.COMMIT].state == StepState.COMPLETED:
                self.steps[Step.COMMIT].state = StepState.COMPENSATED
        for record in self.steps.values():
            if record.state in (StepState.PENDING, StepState.RUNNING):
                record.state = StepState.SKIPPED

    def undo_effect(self, step: str) -> None:
        now = self.clock
        if step == Step.SHIPPING:
            self._shipments[-1][4] = now
        elif step == Step.PAYMENT:
            self._charges[-1][5] = now
        elif step == Step.INVENTORY:
            self._reservations[-1][5] = "released"
            self._reservations[-1][7] = now
            self.held_units = 0

    def act(
        self,
        action: str,
        actor: str,
        *,
        accepted: bool,
        message: str,
        reason: str = "",
        step: str = "",
    ) -> None:
        self.tables.actions.add(
            action, actor, None, self.pk, step, "", reason, accepted, message, self.tick(1)
        )

    # --- the order row ---

    def write(self, status: str, *, started: bool = True, finished: bool = True) -> None:
        workflow_id = self.wid if self.engine == Engine.TEMPORAL and started else ""
        finished_at = self.tick(0.05) if finished else None
        self.tables.orders.rows.append(
            (
                self.pk,
                self.customer,
                self.email,
                self.phone,
                self.address,
                self.product.pk,
                self.quantity,
                self.amount,
                status,
                self.engine,
                workflow_id,
                self.start_error,
                self.payment_id,
                self.tracking,
                self.warnings,
                self.failure_reason,
                self.cancel_requested_by,
                self.created_at,
                self.clock,
                finished_at,
            )
        )
        for position, (name, record) in enumerate(self.steps.items()):
            self.tables.steps.add(
                self.pk,
                name,
                position,
                record.state,
                record.attempts,
                record.result,
                record.error,
                record.started_at,
                record.finished_at,
                record.started_at,  # entered the step: a made-up past keeps no earlier start
                HISTORY_WORKER if record.started_at else "",
            )
        self.tables.reservations.rows.extend(tuple(r) for r in self._reservations)
        self.tables.charges.rows.extend(tuple(c) for c in self._charges)
        self.tables.shipments.rows.extend(tuple(s) for s in self._shipments)

    def customer_details(self, n: int) -> None:
        first = FIRST_NAMES[n % len(FIRST_NAMES)]
        last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
        self.customer = f"{first} {last}"
        self.email = f"{first}.{last}.{self.pk}@example.com".lower()
        self.phone = f"+1555{self.pk % 10_000_000:07d}"
        self.address = f"{self.pk % 900 + 1} {STREETS[n % len(STREETS)]}"

    @property
    def amount(self) -> int:
        return self.product.price_cents * self.quantity


REJECTIONS = {step: REJECTION_MESSAGES[service] for step, service in SERVICE_OF_STEP.items()}


# --- the stories: (name, engine, status, how it goes) -----------------------------------


def _flow(
    o: _Order, *, inventory: int = 0, payment: int = 0, crash: bool = False, sms: str = "ok"
) -> None:
    """Every step to the end; `inventory`/`payment` failures before success; now and then
    a shipping attempt lost with a worker killed under it."""
    o.attempt_step(Step.INVENTORY, failures=inventory)
    o.attempt_step(Step.PAYMENT, failures=payment, crash=crash)
    o.attempt_step(Step.COMMIT)
    o.attempt_step(Step.SHIPPING, lost=o.engine == Engine.TEMPORAL and o.rng.random() < 0.05)
    o.attempt_step(Step.EMAIL)
    limit = 3
    if sms == "ok":
        o.attempt_step(Step.SMS)
    else:
        o.attempt_step(Step.SMS, failures=limit, then="gave_up")
        o.warnings = [f"SMS not sent: {UNAVAILABLE['sms']}"]


def completed(o: _Order) -> None:
    _flow(o, inventory=o.rng.choice((0, 0, 0, 1, 2)), payment=o.rng.choice((0, 0, 0, 0, 1)))
    o.write(OrderStatus.COMPLETED)


def completed_after_crash(o: _Order) -> None:
    _flow(o, crash=True)
    o.write(OrderStatus.COMPLETED)


def completed_with_warnings(o: _Order) -> None:
    _flow(o, sms="down")
    o.write(OrderStatus.COMPLETED_WITH_WARNINGS)


def approved(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.tick(o.rng.uniform(30, 600))
    o.act(
        Action.APPROVE, o.rng.choice(OPERATORS), accepted=True, message=f"Order #{o.pk} approved."
    )
    o.attempt_step(Step.PAYMENT)
    o.attempt_step(Step.COMMIT)
    o.attempt_step(Step.SHIPPING)
    o.attempt_step(Step.EMAIL)
    o.attempt_step(Step.SMS)
    o.write(OrderStatus.COMPLETED)
    # Someone tried to cancel it afterwards: refused, nothing changed.
    o.act(
        Action.CANCEL,
        o.rng.choice(OPERATORS),
        accepted=False,
        message=f"Order #{o.pk} is already completed.",
    )


def card_declined(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.attempt_step(Step.PAYMENT, then="rejected")
    o.failure_reason = REJECTIONS[Step.PAYMENT]
    o.undo()
    o.write(OrderStatus.FAILED)


def out_of_stock(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY, then="rejected")
    o.failure_reason = REJECTIONS[Step.INVENTORY]
    o.undo()
    o.write(OrderStatus.FAILED)


def shipping_gave_up(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.attempt_step(Step.PAYMENT)
    o.attempt_step(Step.COMMIT)
    o.attempt_step(Step.SHIPPING, failures=5, then="gave_up")
    o.failure_reason = f"{UNAVAILABLE['shipping']} (after 5 attempts)"
    o.undo()
    o.write(OrderStatus.FAILED)


def cancelled(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.attempt_step(Step.PAYMENT, failures=2, then="gave_up")
    actor = o.rng.choice(OPERATORS)
    o.cancel_requested_by = actor
    o.act(
        Action.CANCEL,
        actor,
        accepted=True,
        reason="customer called",
        message=f"Order #{o.pk}: cancel requested; what was done will be undone.",
    )
    o.failure_reason = "Cancelled"
    o.undo()
    o.write(OrderStatus.CANCELLED)


def rejected(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    actor = o.rng.choice(OPERATORS)
    o.act(
        Action.REJECT,
        actor,
        accepted=True,
        reason="suspicious amount",
        message=f"Order #{o.pk} rejected.",
    )
    o.failure_reason = f"Rejected by {actor}: suspicious amount"
    o.undo()
    o.write(OrderStatus.REJECTED)


def stopped(o: _Order) -> None:
    o.failure_reason = "The workflow was terminated in Temporal"
    o.write(OrderStatus.STOPPED)


def plain_completed(o: _Order) -> None:
    _flow(o, inventory=o.rng.choice((0, 0, 1)))
    o.write(OrderStatus.COMPLETED)


def plain_completed_with_warnings(o: _Order) -> None:
    _flow(o, sms="down")
    o.write(OrderStatus.COMPLETED_WITH_WARNINGS)


def plain_failed(o: _Order) -> None:
    """The plain script's clean-up, when it works: refund nothing (not charged), release."""
    o.attempt_step(Step.INVENTORY)
    o.attempt_step(Step.PAYMENT, failures=3, then="gave_up")
    o.failure_reason = f"payment: gave up after 3 attempts: {UNAVAILABLE['payment']}"
    o.undo_effect(Step.INVENTORY)
    o.call("inventory", Operation.RELEASE, f"plain-{o.pk}:release:1", 1, Outcome.OK)
    o.steps[Step.INVENTORY].state = StepState.COMPLETED
    o.write(OrderStatus.FAILED)


# In flight: the newest orders only.


def queued(o: _Order) -> None:
    o.start_error = "Queued: Temporal did not answer within 2s"
    o.write(OrderStatus.QUEUED, started=False, finished=False)


def pending(o: _Order) -> None:
    o.write(OrderStatus.PENDING, finished=False)


def running_retrying_payment(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.retrying(Step.PAYMENT, failures=o.rng.randint(1, 4))
    o.write(OrderStatus.RUNNING, finished=False)


def running_shipping(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.attempt_step(Step.PAYMENT)
    o.attempt_step(Step.COMMIT)
    o.steps[Step.SHIPPING].state = StepState.RUNNING
    o.steps[Step.SHIPPING].started_at = o.clock
    o.write(OrderStatus.RUNNING, finished=False)


def awaiting_approval(o: _Order) -> None:
    o.attempt_step(Step.INVENTORY)
    o.write(OrderStatus.AWAITING_APPROVAL, finished=False)


def plain_pending(o: _Order) -> None:
    o.write(OrderStatus.PENDING, finished=False)


@dataclass(frozen=True)
class Story:
    tell: Callable[[_Order], None]
    engine: str
    weight: int
    big: bool = False  # an amount over the approval threshold


ENDED: tuple[Story, ...] = (
    Story(completed, Engine.TEMPORAL, 600),
    Story(completed_after_crash, Engine.TEMPORAL, 15),
    Story(completed_with_warnings, Engine.TEMPORAL, 40),
    Story(approved, Engine.TEMPORAL, 20, big=True),
    Story(card_declined, Engine.TEMPORAL, 40),
    Story(out_of_stock, Engine.TEMPORAL, 15),
    Story(shipping_gave_up, Engine.TEMPORAL, 10),
    Story(cancelled, Engine.TEMPORAL, 15),
    Story(rejected, Engine.TEMPORAL, 8, big=True),
    Story(stopped, Engine.TEMPORAL, 3),
    Story(plain_completed, Engine.PLAIN, 160),
    Story(plain_completed_with_warnings, Engine.PLAIN, 10),
    Story(plain_failed, Engine.PLAIN, 20),
)
IN_FLIGHT: tuple[Story, ...] = (
    Story(queued, Engine.TEMPORAL, 1),
    Story(pending, Engine.TEMPORAL, 2),
    Story(running_retrying_payment, Engine.TEMPORAL, 3),
    Story(running_shipping, Engine.TEMPORAL, 2),
    Story(awaiting_approval, Engine.TEMPORAL, 1, big=True),
    Story(plain_pending, Engine.PLAIN, 1),
)


def _in_flight_count(total: int) -> int:
    return min(MAX_IN_FLIGHT, max(len(IN_FLIGHT), total // 100), total)


def _stories(total: int, rng: random.Random) -> Iterable[Story]:
    """Every story at least once when there is room, then by weight; in-flight last."""
    in_flight = _in_flight_count(total)
    ended = total - in_flight
    head = list(ENDED[:ended])
    yield from head
    yield from rng.choices(ENDED, weights=[s.weight for s in ENDED], k=ended - len(head))
    head = list(IN_FLIGHT[:in_flight])
    yield from head
    yield from rng.choices(
        IN_FLIGHT, weights=[s.weight for s in IN_FLIGHT], k=in_flight - len(head)
    )


# --- writing it -------------------------------------------------------------------------


def write_history(
    total: int, *, seed: int = 13, progress: Callable[[int], None] = lambda done: None
) -> Written:
    """Add `total` orders of history, oldest first, ending now. Needs the catalogue."""
    check_size(total)
    products = list(Product.objects.order_by("pk"))
    if not products:
        raise HistoryError("There is no catalogue yet: run `manage.py seed_demo` first.")
    cheap = [
        p for p in products if p.price_cents * 3 < settings.APPROVAL_THRESHOLD_CENTS
    ] or products
    dear = max(products, key=lambda p: p.price_cents)
    rng = random.Random(seed)  # noqa: S311 - made-up data, repeatable on purpose
    # Naive UTC throughout: turned into the backend's form in one cheap step.
    now = timezone.now().astimezone(UTC).replace(tzinfo=None)
    in_flight = _in_flight_count(total)
    ended = total - in_flight
    step = HISTORY_SPAN / max(ended, 1)
    # A minute of room: an in-flight order's attempts and backoffs end before now.
    first_in_flight = now - IN_FLIGHT_RUNWAY - IN_FLIGHT_SPACING * in_flight
    tables = _Tables()
    written = Written()
    held: dict[int, int] = {}
    with transaction.atomic():
        for n, story in enumerate(_stories(total, rng)):
            if n < ended:
                when = first_in_flight - HISTORY_SPAN + step * n
            else:
                when = first_in_flight + IN_FLIGHT_SPACING * (n - ended)
            product = dear if story.big else rng.choice(cheap)
            order = _Order(tables, rng, product, when)
            order.engine = story.engine
            order.customer_details(n)
            if story.big:
                order.quantity = _quantity_over_threshold(product)
            story.tell(order)
            held[product.pk] = held.get(product.pk, 0) + order.held_units
            status = order.tables.orders.rows[-1][8]
            written.statuses[status] = written.statuses.get(status, 0) + 1
            if (n + 1) % CHUNK == 0:
                _flush(tables, written)
                progress(n + 1)
        _flush(tables, written)
        _hold_stock(held)
        _switch_flips(tables, now)
        _flush(tables, written)
        _move_sequences_past_new_rows()
    progress(total)
    return written


def _quantity_over_threshold(product: Product) -> int:
    return max(1, -(-settings.APPROVAL_THRESHOLD_CENTS // product.price_cents))


def _flush(tables: _Tables, written: Written) -> None:
    for table in tables.all():
        written.add(table.model._meta.verbose_name_plural, table.flush())


def _hold_stock(held: dict[int, int]) -> None:
    """The catalogue agrees with the reservations still held (and has stock to sell)."""
    for product_id, units in held.items():
        if units:
            Product.objects.filter(pk=product_id).update(reserved=F("reserved") + units)
    for product in Product.objects.all():
        if product.stock < product.reserved + 20:
            Product.objects.filter(pk=product.pk).update(stock=product.reserved + 20)


def _switch_flips(tables: _Tables, now: datetime) -> None:
    """An operator's switch flips over the period: an outage begun, then ended."""
    for days_ago, service, summary in (
        (60, "payment", "down"),
        (60, "payment", "healthy"),
        (20, "sms", "down"),
        (20, "sms", "healthy"),
    ):
        tables.actions.add(
            Action.SWITCH,
            "alice",
            None,
            None,
            "",
            service,
            "",
            True,
            f"{service} set to {summary}",
            now - timedelta(days=days_ago),
        )


def _move_sequences_past_new_rows() -> None:
    """PostgreSQL: the id sequences go past the explicit ids; SQLite needs nothing."""
    tables = [
        Order,
        OrderStep,
        ServiceCall,
        Reservation,
        Charge,
        Shipment,
        Message,
        OperatorAction,
    ]
    statements = connection.ops.sequence_reset_sql(no_style(), tables)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def sum_held(product: Product) -> int:
    """Units of this product that reservations still hold (for checks and tests)."""
    held = Reservation.objects.filter(product=product, state=Reservation.State.RESERVED)
    return held.aggregate(units=Sum("quantity"))["units"] or 0
