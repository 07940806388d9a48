"""Activities in the worker's threads: what cancelling one leaves in the database."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from django.db import connection, transaction
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from orders.contract import StepRequest, step_key
from orders.simulator.models import Reservation
from worker.activities import ALL_ACTIVITIES, reserve_inventory


def wait_until_in(thread: threading.Thread, function: str, timeout: float = 10) -> None:
    """Until `thread` runs `function` (anywhere in its stack)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == function:
                return
            frame = frame.f_back
        time.sleep(0.01)
    raise AssertionError(f"{thread.name} did not reach {function} within {timeout}s")


@pytest.mark.parametrize("defined", ALL_ACTIVITIES, ids=lambda fn: fn.__name__)
def test_temporal_cancels_no_activity_by_raising_into_its_thread(defined):
    assert activity._Definition.must_from_callable(defined).no_thread_cancel_exception


def test_an_attempt_cancelled_while_it_waits_for_the_write_lock_leaves_no_transaction_open(
    running_order,
):
    env = ActivityEnvironment()
    request = StepRequest(
        order_id=running_order.pk,
        idempotency_key=step_key(running_order.workflow_id, "inventory"),
        sku="KB-01",
        quantity=1,
    )
    seen: dict[str, object] = {}

    def attempt() -> None:
        try:
            seen["result"] = env.run(reserve_inventory, request)
        except BaseException as exc:
            seen["error"] = exc
        finally:
            raw = connection.connection  # this thread's own
            seen["left_open"] = raw is not None and raw.in_transaction
            connection.close()  # a transaction left open would hold the lock past the test

    worker_thread = threading.Thread(target=attempt, name="activity")
    with transaction.atomic():  # BEGIN IMMEDIATE: this thread now holds the write lock
        worker_thread.start()
        wait_until_in(worker_thread, "_start_transaction_under_autocommit")
        env.cancel()  # as a worker shutting down, or Temporal giving up on the attempt
        time.sleep(0.2)
    worker_thread.join(30)

    assert not worker_thread.is_alive()
    assert seen["left_open"] is False
    assert "error" not in seen, seen.get("error")
    # Nothing interrupted it: it did what it had started, and said so.
    assert Reservation.objects.filter(key=request.idempotency_key).count() == 1
    assert seen["result"].reference.startswith("RES-")
