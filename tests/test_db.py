"""Writes on SQLite: a process's writers take turns, and an attempt's ledger row lands in
one transaction with the step's record of its answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction

from orderdash.db import write_transaction
from orders.contract import step_key
from orders.simulator import services
from orders.simulator.models import Mode, Outcome, Product, ServiceCall
from tests.conftest import set_switch


def write_in_a_thread(begin: Callable[[], AbstractContextManager], started: threading.Event):
    """A writer in a thread of its own that does not wait at SQLite's lock (busy timeout
    0): it either gets its turn, or fails at once with "database is locked"."""
    outcome: dict[str, object] = {}

    def write() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 0")
            started.set()
            with begin():
                Product.objects.filter(sku="KB-01").update(reserved=0)
            outcome["written"] = True
        except OperationalError as exc:
            outcome["error"] = str(exc)
        finally:
            connection.close()

    return threading.Thread(target=write, name="second writer"), outcome


@pytest.mark.parametrize(
    ("begin", "expected"),
    [
        # Waits for the first writer's turn to end, then writes.
        (write_transaction, {"written": True}),
        # The premise: a plain transaction meets SQLite's lock, and its busy handler.
        (transaction.atomic, {"error": "database is locked"}),
    ],
    ids=["write_transaction", "plain atomic"],
)
def test_a_second_writer_of_the_process_waits_its_turn_not_at_sqlites_lock(
    catalogue, begin, expected
):
    started = threading.Event()
    second, outcome = write_in_a_thread(begin, started)
    with write_transaction():
        Product.objects.filter(sku="KB-01").update(reserved=1)  # the write lock is ours
        second.start()
        started.wait(10)
        second.join(0.3)  # a writer failing at SQLite's lock fails within this
    second.join(10)
    assert outcome == expected


def call(mode: str, order, answered: Callable[[str, str], None]) -> str | Exception:
    set_switch("payment", mode)
    ctx = services.CallContext(
        order_id=order.pk,
        idempotency_key=step_key(order.workflow_id, "payment"),
        answered=answered,
    )
    try:
        return services.charge_payment(ctx, 4200)
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("mode", "outcome", "text"),
    [
        (Mode.HEALTHY, Outcome.OK, "PAY-"),
        (Mode.REJECT, Outcome.REJECTED, "Card declined"),
        (Mode.DOWN, Outcome.ERROR, "Payment Service Unavailable"),
        # In tests the crash is an exception, and its row is completed as an error.
        (Mode.CRASH, Outcome.ERROR, services.CRASH_MESSAGE),
    ],
)
def test_the_answer_is_recorded_in_the_transaction_of_the_ledger_row(
    running_order, mode, outcome, text
):
    heard = []

    def answered(outcome: str, text: str) -> None:
        row = ServiceCall.objects.get(order_id=running_order.pk, service="payment")
        heard.append((outcome, text, row.outcome, connection.in_atomic_block))

    call(mode, running_order, answered)

    assert len(heard) == 1
    (said, told, row_outcome, in_transaction) = heard[0]
    assert (said, row_outcome, in_transaction) == (outcome, outcome, True)
    assert told.startswith(text)


def test_a_failed_record_of_the_answer_takes_its_ledger_row_with_it(running_order):
    def answered(outcome: str, text: str) -> None:
        raise OperationalError("the step's record could not be written")

    result = call(Mode.HEALTHY, running_order, answered)

    assert isinstance(result, OperationalError)
    # The charge went through (as a service's would); the attempt wrote no half record,
    # and its retry finds the charge and replays it.
    assert not ServiceCall.objects.filter(order_id=running_order.pk).exists()


SETTINGS_OF_A_PROCESS = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps([db["CONN_MAX_AGE"], db.get("OPTIONS", {}).get("pool")]))
"""


POOL = {"min_size": 2, "timeout": 10.0}


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        # SQLite: each thread keeps its own connection, no pool.
        ({"DATABASE_URL": "sqlite:///unused.sqlite3"}, [600, None]),
        # PostgreSQL: a pool for every activity thread, plus the starter and the records.
        ({"DATABASE_URL": "postgres://app@db:5432/orders"}, [0, POOL | {"max_size": 20}]),
        (
            {"DATABASE_URL": "postgres://app@db/orders", "WORKER_ACTIVITY_THREADS": "32"},
            [0, POOL | {"max_size": 36}],
        ),
        (
            {"DATABASE_URL": "postgres://app@db/orders", "DB_POOL_MAX_SIZE": "50"}
            | {"DB_POOL_TIMEOUT": "3"},
            [0, POOL | {"max_size": 50, "timeout": 3.0}],
        ),
        # Just enough: every activity thread, the order starter and the order's records.
        (
            {"DATABASE_URL": "postgres://app@db/orders", "DB_POOL_MAX_SIZE": "18"},
            [0, POOL | {"max_size": 18}],
        ),
        # Too small a pool stops the process at start, saying why.
        (
            {"DATABASE_URL": "postgres://app@db/orders", "DB_POOL_MAX_SIZE": "12"},
            "DB_POOL_MAX_SIZE (12) must be at least WORKER_ACTIVITY_THREADS + 2 (18)",
        ),
        (
            {"DATABASE_URL": "postgres://app@db/orders", "DB_POOL_MAX_SIZE": "many"},
            "DB_POOL_MAX_SIZE must be a whole number, not 'many'",
        ),
    ],
)
def test_postgresql_connections_are_pooled_and_sqlite_ones_kept(environment, expected):
    """Settings as a process started with this environment reads them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DB_"))}
    env.pop("WORKER_ACTIVITY_THREADS", None)
    done = subprocess.run(
        [sys.executable, "-c", SETTINGS_OF_A_PROCESS],
        cwd=settings.BASE_DIR,
        env=env | {"DJANGO_SETTINGS_MODULE": "orderdash.settings"} | environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if isinstance(expected, str):
        assert done.returncode != 0 and expected in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == expected
