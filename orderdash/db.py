"""Write transactions that take turns within a process on SQLite.

SQLite takes one writer at a time. A writer that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, … up to 100 ms between
looks: with a few threads writing at once, a transaction often slept tens of ms after
the lock had come free (the worker's attempts spent 25-30 ms of their ~100 there, and a
finished attempt reached the page that much later). The threads of one process take
turns on a lock of their own instead, handed over the moment it is released; SQLite's
busy handler is left with the rarer meeting of two processes. On PostgreSQL, which takes
writers side by side and locks rows, nothing is held but the transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, connections, transaction

# Reentrant: a write transaction may call code that opens one of its own (a savepoint).
_sqlite_turn = threading.RLock()


@contextmanager
def write_transaction() -> Iterator[None]:
    """`transaction.atomic()`, taken in turn with this process's other writers on SQLite.

    Keep what runs inside short and free of waits on anything but the database (no
    service latency, no Temporal call): every other writer of the process waits for it.
    """
    # Inside another write transaction, no savepoint: a failure fails the whole (as it
    # would anyway), and PostgreSQL is spared two round trips per nested write.
    nested = connection.in_atomic_block
    if connection.vendor != "sqlite":
        with transaction.atomic(savepoint=not nested):
            yield
        return
    with _sqlite_turn, transaction.atomic(savepoint=not nested):
        yield


def close_request_connections(**kwargs: object) -> None:
    """At the end of a web request (`request_finished`): close the connections it opened.

    Under daphne (ASGI) each request's sync code runs in a thread of its own, so a
    persistent connection kept for the next request outlives its thread until the garbage
    collector finds it: 300 requests from 8 clients left one web process holding 73
    PostgreSQL connections, and several web processes meet "too many clients already".
    Django's own handler keeps a connection younger than CONN_MAX_AGE; on SQLite the
    threads that live long (the live hub's, the worker's) keep theirs. A connection
    inside a transaction (a test's) is left alone. On PostgreSQL every connection is
    pooled (settings.DB_POOL_MAX_SIZE): closing one hands it back to the process's pool.
    """
    for each in connections.all(initialized_only=True):
        if not each.in_atomic_block:
            each.close()
