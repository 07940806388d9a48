"""The worker process: polls the task queue and runs OrderWorkflow and its activities."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

import django

if TYPE_CHECKING:
    from temporalio.runtime import Runtime
    from temporalio.worker import WorkflowRunner

log = logging.getLogger("worker")

# A live worker takes its sticky tasks within milliseconds; after a crash, other workers
# replay the workflow from its history after this (a replay costs them milliseconds too).
STICKY_QUEUE_TIMEOUT = timedelta(seconds=2)
HEARTBEAT_THROTTLE = timedelta(seconds=0.5)


def workflow_runner() -> WorkflowRunner:
    """The workflow sandbox, with the workflow module itself passed through.

    By default the sandbox imports the workflow's module afresh for every new workflow
    run: with no bytecode on disk (PYTHONDONTWRITEBYTECODE, as in the image) that is a
    compile of worker/workflows.py per order, a sixth of the worker's CPU. The module
    keeps no state between runs (every order's state lives on its workflow instance).
    The price: a module passed through uses the real modules it imported, so the
    sandbox no longer refuses a non-deterministic call (the clock, randomness, I/O) in
    it. The workflow tests on the time-skipping server run the default sandbox, which
    does (tests/conftest.py `skipping_worker`, and tests/test_replay.py).
    """
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    restrictions = SandboxRestrictions.default.with_passthrough_modules("worker.workflows")
    return SandboxedWorkflowRunner(restrictions=restrictions)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderdash.settings")
    django.setup()


def sdk_metrics_runtime(host: str, port: int) -> Runtime | None:
    """The SDK runtime that serves its own metrics (temporal_*) at http://host:port/metrics,
    or None when no port is set.

    Made the process's default runtime, before any client exists, so every client here
    (the worker's and the starter's) reports through it; the Prometheus server it starts
    lives as long as the process. A port it cannot listen on is logged, and the worker
    runs without metrics.
    """
    if not port:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    try:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                # Seconds and a _total suffix on counters: Prometheus's naming conventions.
                metrics=PrometheusConfig(
                    bind_address=f"{host}:{port}",
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                )
            )
        )
    except ValueError as exc:  # the port is taken, or the host is not an address
        # Orders matter more than their metrics: work on, and say why there are none.
        log.error("Temporal SDK metrics are off: %s:%d: %s", host, port, exc)
        return None
    Runtime.set_default(runtime)
    log.info("Temporal SDK metrics on http://%s:%d/metrics", host, port)
    return runtime


async def connect_until_ready(
    address: str, namespace: str, runtime: Runtime | None = None
) -> object:
    """Wait for Temporal rather than die: the server may still be starting."""
    from temporalio.client import Client

    delay = 0.5
    while True:
        try:
            return await Client.connect(address, namespace=namespace, runtime=runtime)
        except RuntimeError as exc:
            log.warning(
                "Temporal at %s not reachable yet (%s); retrying in %.0fs", address, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


async def run_worker() -> None:
    from django.conf import settings
    from temporalio.worker import Worker

    from orders.starter import run_starter
    from worker.activities import ALL_ACTIVITIES, worker_identity
    from worker.workflows import OrderWorkflow

    runtime = sdk_metrics_runtime(settings.WORKER_METRICS_HOST, settings.WORKER_METRICS_PORT)
    client = await connect_until_ready(
        settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE, runtime
    )
    # Sync activities each hold a thread while they run (a slow service holds it for
    # seconds); more threads than the database can write for only queue on its lock.
    threads = settings.WORKER_ACTIVITY_THREADS
    with ThreadPoolExecutor(max_workers=threads) as executor:
        worker = Worker(
            client,  # type: ignore[arg-type]
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            # The name the attempt ledger records: the same string Temporal shows.
            identity=worker_identity(),
            workflows=[OrderWorkflow],
            workflow_runner=workflow_runner(),
            activities=ALL_ACTIVITIES,
            activity_executor=executor,
            max_concurrent_activities=threads,
            # A killed worker takes the workflows it had cached with it: their next task
            # waits this long on its sticky queue before any worker may take it (default 10 s).
            sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
            # Heartbeats reach Temporal this often (else 0.8 × the 2 s heartbeat timeout,
            # leaving a busy machine 0.4 s before a live attempt is taken for a dead one).
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            # On stop, activities in hand get this long to finish before being cancelled.
            graceful_shutdown_timeout=timedelta(seconds=20),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info(
            "Worker polling task queue %r on %s (pid %d)",
            settings.TEMPORAL_TASK_QUEUE,
            settings.TEMPORAL_ADDRESS,
            os.getpid(),
        )
        async with worker:
            # Queued orders start from here, so they start whenever the stack runs.
            starter = asyncio.create_task(run_starter(stop))
            await stop.wait()
            await starter
            log.info("Worker stopping: finishing the activities in hand")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    setup_django()
    from orders.simulator import services

    # Here a crash switch really kills the process: that is the point of the demo.
    services.crash_handler = services.die_now
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
