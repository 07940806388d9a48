"""The worker process: polls the task queue and runs OrderWorkflow and its activities."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import django

log = logging.getLogger("worker")

# A live worker takes its sticky tasks within milliseconds; after a crash, other workers
# replay the workflow from its history after this (a replay costs them milliseconds too).
STICKY_QUEUE_TIMEOUT = timedelta(seconds=2)
HEARTBEAT_THROTTLE = timedelta(seconds=0.5)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderdash.settings")
    django.setup()


async def connect_until_ready(address: str, namespace: str) -> object:
    """Wait for Temporal rather than die: the server may still be starting."""
    from temporalio.client import Client

    delay = 0.5
    while True:
        try:
            return await Client.connect(address, namespace=namespace)
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

    client = await connect_until_ready(settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE)
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
