"""The simulated inventory, payment, shipping, email and SMS services.

Each call reads its service's switch (so a flip reaches orders already in flight), applies
its effect idempotently by key, and writes one ledger row for the attempt whatever the
outcome. Effects are rows of their own (reservations, charges, shipments, messages): a
second call with the same key finds the first one's row and changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.db import IntegrityError, models, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from orderdash.db import write_transaction
from orders.contract import BUSINESS_ERRORS, Service
from orders.simulator.models import (
    Charge,
    Message,
    Mode,
    Outcome,
    Product,
    Reservation,
    ServiceCall,
    ServiceSwitch,
    Shipment,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=models.Model)


class ServiceUnavailable(Exception):
    """A transient failure: retrying later may work."""

    error_type = "ServiceUnavailable"


class BusinessRejection(Exception):
    """A final answer from the service (out of stock, card declined …): never retried."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.error_type = BUSINESS_ERRORS[service]


class SimulatedCrash(Exception):
    """Raised instead of dying when no real worker process is there to kill (tests)."""

    error_type = "WorkerCrashed"


CRASH_MESSAGE = "Process crashed right after the effect (crash switch)"

REJECTION_MESSAGES = {
    "inventory": "Out of stock",
    "payment": "Card declined",
    "shipping": "Address invalid",
    "email": "Mailbox rejected the address",
    "sms": "Phone number invalid",
}


def _raise_simulated_crash() -> None:
    raise SimulatedCrash(CRASH_MESSAGE)


def die_now() -> None:
    """What a power cut looks like to the process: no cleanup, no goodbye."""
    log.error("Crash switch: the worker process dies now")
    os._exit(70)


# The real worker process swaps in `die_now`; in-process test workers keep the exception.
crash_handler: Callable[[], None] = _raise_simulated_crash


@dataclass
class CallContext:
    """Who is calling: the order, the key, and which attempt this is."""

    order_id: int
    idempotency_key: str
    attempt: int = 1
    started_at: datetime | None = None
    timeout_s: float = 0
    heartbeat: Callable[[], None] = lambda: None
    worker: str = ""  # who runs this attempt, for the ledger
    # The caller's own record of the service's answer, (outcome, reference or error),
    # written in the transaction of the attempt's ledger row: the two land together.
    answered: Callable[[str, str], None] = lambda outcome, text: None


@dataclass
class Behaviour:
    mode: str
    failures_left: int = 0
    latency_ms: int = 0


def consume_switch(service: str) -> Behaviour:
    """Read the switch for one call; flaky counts down as it fails.

    The returned mode is what *this* call does: a flaky switch with no failures left
    behaves as healthy, and the last planned failure flips the switch back to healthy.
    One read for every mode; a flaky one also takes its failure with one conditional
    update, so two calls at once never take the same failure.
    """
    switch = ServiceSwitch.objects.filter(service=service).first()
    if switch is None:
        return Behaviour(Mode.HEALTHY)
    behaviour = Behaviour(switch.mode, switch.failures_left, switch.latency_ms)
    if switch.mode != Mode.FLAKY:
        return behaviour
    taken = ServiceSwitch.objects.filter(
        service=service, mode=Mode.FLAKY, failures_left__gt=0
    ).update(
        failures_left=F("failures_left") - 1,
        mode=Case(When(failures_left=1, then=Value(Mode.HEALTHY)), default=F("mode")),
        updated_at=timezone.now(),
    )
    if not taken:  # the last planned failure went to another call
        return Behaviour(Mode.HEALTHY)
    behaviour.failures_left = max(switch.failures_left - 1, 0)
    return behaviour


def call_service(
    service: str,
    operation: str,
    ctx: CallContext,
    effect: Callable[[], tuple[str, bool]],
    *,
    already_done: Callable[[], bool] = lambda: False,
    compensation: bool = False,
) -> str:
    """Run one attempt against a simulated service and write its ledger row.

    `effect` applies the change and returns (reference, created); created=False means
    the key had been seen before and nothing new happened. For an undo, `already_done`
    says there is nothing to undo: then the service is not even called, so undoing a
    step that never took effect cannot hang on a service that is down.
    """
    started = time.monotonic()
    if compensation and already_done():
        nothing = "nothing to undo"
        _record(service, operation, ctx, Outcome.REPLAYED, nothing, started, reference=nothing)
        return nothing
    try:
        behaviour = consume_switch(service)
        # A key the service already honoured gets its original answer, not a new verdict.
        if behaviour.mode == Mode.REJECT and (compensation or already_done()):
            behaviour.mode = Mode.HEALTHY
        _fail_as_switched(service, behaviour)
        reference, created = effect()
        if behaviour.mode == Mode.SLOW:
            try:
                _take_time(behaviour.latency_ms, ctx)
            except BaseException as exc:
                # Temporal gave up on this attempt while the answer was on its way.
                raise ServiceUnavailable(
                    f"No answer within the {ctx.timeout_s:g}s timeout; the {operation} had"
                    f" already happened ({reference})"
                ) from exc
        if behaviour.mode == Mode.CRASH and not _crashed_before(service, ctx):
            # The effect is committed: dying now is the "charged, then crashed" case.
            # Not `answered`: the attempt dies here, unanswered, as far as its caller knows.
            _record(service, operation, ctx, Outcome.ERROR, CRASH_MESSAGE, started, answer=False)
            crash_handler()
    except BusinessRejection as exc:
        _record(service, operation, ctx, Outcome.REJECTED, str(exc), started)
        raise
    except Exception as exc:
        _record(service, operation, ctx, Outcome.ERROR, str(exc) or type(exc).__name__, started)
        raise
    outcome = Outcome.OK if created else Outcome.REPLAYED
    note = "" if created else f"already done for key {ctx.idempotency_key}: nothing changed"
    elapsed_s = time.monotonic() - started
    if ctx.timeout_s and elapsed_s > ctx.timeout_s:
        note = (note + "; " if note else "") + (
            f"answered after {elapsed_s:.1f}s, past the {ctx.timeout_s:g}s timeout"
        )
    _record(service, operation, ctx, outcome, note, started, reference=reference)
    return reference


def _crashed_before(service: str, ctx: CallContext) -> bool:
    # Each order brings its process down once at this service; its retry then goes through.
    return ServiceCall.objects.filter(
        order_id=ctx.order_id, service=service, error=CRASH_MESSAGE
    ).exists()


def _fail_as_switched(service: str, behaviour: Behaviour) -> None:
    if behaviour.mode == Mode.DOWN:
        raise ServiceUnavailable(f"{Service(service).label} Service Unavailable")
    if behaviour.mode == Mode.FLAKY:
        left = behaviour.failures_left
        raise ServiceUnavailable(
            f"{Service(service).label} Service Unavailable (flaky: {left} more"
            f" failure{'' if left == 1 else 's'} planned)"
        )
    # Undoing is never refused for business reasons: a refund is not "declined".
    if behaviour.mode == Mode.REJECT:
        raise BusinessRejection(service, REJECTION_MESSAGES[service])


def _take_time(latency_ms: int, ctx: CallContext) -> None:
    deadline = time.monotonic() + latency_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.25))
        ctx.heartbeat()


def _record(
    service: str,
    operation: str,
    ctx: CallContext,
    outcome: str,
    error: str,
    started: float,
    *,
    reference: str = "",
    answer: bool = True,
) -> None:
    """The attempt's ledger row and, in the same transaction, the caller's record of the
    answer (`ctx.answered`: the reference when it went through, else the error)."""
    row = {
        "idempotency_key": ctx.idempotency_key,
        "outcome": outcome,
        "error": error,
        "duration_ms": int((time.monotonic() - started) * 1000),
        "started_at": ctx.started_at,
        "worker": ctx.worker,
    }
    attempt = {
        "order_id": ctx.order_id,
        "service": service,
        "operation": operation,
        "attempt": ctx.attempt,
    }
    with write_transaction():
        try:
            # One statement in the usual case: an attempt writes its row once. In a
            # savepoint, so that the transaction goes on when the row was there already.
            with transaction.atomic():
                ServiceCall.objects.create(**attempt, **row)
        except IntegrityError:
            # The same attempt again: a crash row being completed, or an attempt that
            # timed out and answered after all.
            # The outcome it was first written with stays behind for the counters (the
            # right-hand side reads the row as it was before this update).
            first = Case(When(first_outcome="", then=F("outcome")), default=F("first_outcome"))
            ServiceCall.objects.filter(**attempt).update(**row, first_outcome=first)
        if answer:
            ok = outcome in (Outcome.OK, Outcome.REPLAYED)
            ctx.answered(outcome, reference if ok else error)


def _create_once(model: type[M], key: str, **fields: object) -> tuple[M, bool]:
    """The effect's row for this key: found (nothing new happened) or created now.

    Two statements in one write transaction. The key is unique, so of two attempts racing
    with the same key (on PostgreSQL, where writers run side by side) one creates and the
    other finds it.
    """
    with write_transaction():
        existing = model.objects.filter(key=key).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():  # a savepoint: the transaction outlives a clash
                return model.objects.create(key=key, **fields), True
        except IntegrityError:
            return model.objects.get(key=key), False


def _new_reference(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


# --- inventory -------------------------------------------------------------------------


def reserve_inventory(ctx: CallContext, sku: str, quantity: int) -> str:
    @write_transaction()  # read, then change: one transaction, rows locked
    def effect() -> tuple[str, bool]:
        existing = Reservation.objects.filter(key=ctx.idempotency_key).first()
        if existing:
            return f"RES-{existing.pk}", False
        product = Product.objects.select_for_update().get(sku=sku)
        if product.stock - product.reserved < quantity:
            raise BusinessRejection(
                "inventory", f"Out of stock: {product.stock - product.reserved} {sku} available"
            )
        Product.objects.filter(pk=product.pk).update(reserved=F("reserved") + quantity)
        reservation = Reservation.objects.create(
            key=ctx.idempotency_key, order_id=ctx.order_id, product=product, quantity=quantity
        )
        return f"RES-{reservation.pk}", True

    def done() -> bool:
        return Reservation.objects.filter(key=ctx.idempotency_key).exists()

    return call_service("inventory", "reserve", ctx, effect, already_done=done)


def commit_inventory(ctx: CallContext, reservation_key: str) -> str:
    @write_transaction()  # read, then change: one transaction, rows locked
    def effect() -> tuple[str, bool]:
        reservation = Reservation.objects.select_for_update().get(key=reservation_key)
        if reservation.state != Reservation.State.RESERVED:
            return f"RES-{reservation.pk}", False
        Product.objects.filter(pk=reservation.product_id).update(
            stock=F("stock") - reservation.quantity, reserved=F("reserved") - reservation.quantity
        )
        reservation.state = Reservation.State.COMMITTED
        reservation.save(update_fields=["state", "updated_at"])
        return f"RES-{reservation.pk}", True

    def done() -> bool:
        return (
            Reservation.objects.filter(key=reservation_key)
            .exclude(state=Reservation.State.RESERVED)
            .exists()
        )

    return call_service("inventory", "commit", ctx, effect, already_done=done)


def release_inventory(ctx: CallContext, reservation_key: str) -> str:
    @write_transaction()  # read, then change: one transaction, rows locked
    def effect() -> tuple[str, bool]:
        reservation = Reservation.objects.select_for_update().filter(key=reservation_key).first()
        if reservation is None or reservation.state == Reservation.State.RELEASED:
            return "nothing held", False
        if reservation.state == Reservation.State.RESERVED:
            Product.objects.filter(pk=reservation.product_id).update(
                reserved=F("reserved") - reservation.quantity
            )
        else:  # committed: the units go back on the shelf
            Product.objects.filter(pk=reservation.product_id).update(
                stock=F("stock") + reservation.quantity
            )
        reservation.state = Reservation.State.RELEASED
        reservation.save(update_fields=["state", "updated_at"])
        return f"RES-{reservation.pk} released", True

    def nothing_held() -> bool:
        return (
            not Reservation.objects.filter(key=reservation_key)
            .exclude(state=Reservation.State.RELEASED)
            .exists()
        )

    return call_service(
        "inventory", "release", ctx, effect, compensation=True, already_done=nothing_held
    )


# --- payment ---------------------------------------------------------------------------


def charge_payment(ctx: CallContext, amount_cents: int) -> str:
    def effect() -> tuple[str, bool]:
        charge, created = _create_once(
            Charge,
            ctx.idempotency_key,
            order_id=ctx.order_id,
            amount_cents=amount_cents,
            payment_id=_new_reference("PAY"),
        )
        return charge.payment_id, created

    def done() -> bool:
        return Charge.objects.filter(key=ctx.idempotency_key).exists()

    return call_service("payment", "charge", ctx, effect, already_done=done)


def refund_payment(ctx: CallContext, charge_key: str) -> str:
    @write_transaction()  # read, then change: one transaction, rows locked
    def effect() -> tuple[str, bool]:
        charge = Charge.objects.select_for_update().filter(key=charge_key).first()
        if charge is None or charge.refunded_at is not None:
            return "nothing to refund", False
        charge.refunded_at = timezone.now()
        charge.save(update_fields=["refunded_at"])
        return f"{charge.payment_id} refunded", True

    def nothing_charged() -> bool:
        return not Charge.objects.filter(key=charge_key, refunded_at__isnull=True).exists()

    return call_service(
        "payment", "refund", ctx, effect, compensation=True, already_done=nothing_charged
    )


# --- shipping --------------------------------------------------------------------------


def schedule_shipping(ctx: CallContext, address: str) -> str:
    def effect() -> tuple[str, bool]:
        shipment, created = _create_once(
            Shipment,
            ctx.idempotency_key,
            order_id=ctx.order_id,
            tracking_number=_new_reference("TRK"),
        )
        return shipment.tracking_number, created

    def done() -> bool:
        return Shipment.objects.filter(key=ctx.idempotency_key).exists()

    return call_service("shipping", "ship", ctx, effect, already_done=done)


def cancel_shipping(ctx: CallContext, shipment_key: str) -> str:
    @write_transaction()  # read, then change: one transaction, rows locked
    def effect() -> tuple[str, bool]:
        shipment = Shipment.objects.select_for_update().filter(key=shipment_key).first()
        if shipment is None or shipment.cancelled_at is not None:
            return "nothing to cancel", False
        shipment.cancelled_at = timezone.now()
        shipment.save(update_fields=["cancelled_at"])
        return f"{shipment.tracking_number} cancelled", True

    def nothing_shipped() -> bool:
        return not Shipment.objects.filter(key=shipment_key, cancelled_at__isnull=True).exists()

    return call_service(
        "shipping", "cancel", ctx, effect, compensation=True, already_done=nothing_shipped
    )


# --- notifications ---------------------------------------------------------------------


def send_message(ctx: CallContext, channel: str, recipient: str, body: str) -> str:
    def effect() -> tuple[str, bool]:
        message, created = _create_once(
            Message,
            ctx.idempotency_key,
            order_id=ctx.order_id,
            channel=channel,
            recipient=recipient,
            body=body,
        )
        return f"{channel} to {message.recipient}", created

    def done() -> bool:
        return Message.objects.filter(key=ctx.idempotency_key).exists()

    return call_service(channel, "send", ctx, effect, already_done=done)
