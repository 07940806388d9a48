"""A chaos run from the terminal: orders on both engines while services break, then the score.

Exits 1 when the Temporal lane lost, doubled or stranded anything.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from orderdash.stack import LocalStack
from orders import chaos
from orders.actions import terminal_user
from orders.contract import OrderStatus
from orders.forms import ASCII_WHOLE_NUMBER
from orders.models import Engine, Order
from orders.temporal import WORKER_UP, worker_status


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ASCII digits from low to high."""

    def parse(text: str) -> int:
        if not ASCII_WHOLE_NUMBER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


class StackTemporal:
    """The own stack's dev server, which the run may stop and start (same file, same port)."""

    def __init__(self, stack: LocalStack, address: str, db_file: Path) -> None:
        self.stack, self.address, self.db_file = stack, address, db_file

    def stop(self) -> None:
        self.stack.stop_temporal()

    def start(self) -> None:
        self.stack.start_temporal(self.address, db_file=self.db_file)


class Command(BaseCommand):
    help = (
        "Place orders on both engines while flipping switches at random and killing workers,"
        " then print a scoreboard; exit 1 when the Temporal lane lost, doubled or stranded"
        " anything."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--orders",
            type=bounded_int(1, chaos.MAX_ORDERS),
            required=True,
            help="orders placed on each engine (the same order in both)",
        )
        parser.add_argument(
            "--minutes",
            type=bounded_int(1, chaos.MAX_MINUTES),
            required=True,
            help="how long to place orders and break things",
        )
        parser.add_argument(
            "--seed",
            type=bounded_int(0, 2**31 - 1),
            help="the same seed flips the same switches in the same order",
        )
        parser.add_argument(
            "--settle-minutes",
            type=bounded_int(1, chaos.MAX_SETTLE_MINUTES),
            default=chaos.DEFAULT_SETTLE_MINUTES,
            help="how long to wait for the orders to settle afterwards",
        )
        parser.add_argument(
            "--own-stack",
            action="store_true",
            help="start a Temporal dev server, a worker and the plain runner of its own, on"
            " this database (one no other stack uses)",
        )
        parser.add_argument(
            "--temporal-restarts",
            type=bounded_int(0, chaos.MAX_TEMPORAL_RESTARTS),
            default=0,
            help="with --own-stack: stop and restart its Temporal dev server this many times",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["temporal_restarts"] and not options["own_stack"]:
            raise CommandError(
                "--temporal-restarts needs --own-stack: only a Temporal server this command"
                " started may be stopped by it."
            )
        if options["own_stack"]:
            _refuse_foreign_orders_in_flight()
        try:
            run = chaos.open_run(
                orders=options["orders"],
                minutes=options["minutes"],
                seed=options["seed"],
                temporal_restarts=options["temporal_restarts"],
                actor=terminal_user(),
            )
        except chaos.ChaosRefused as refused:
            raise CommandError(str(refused)) from refused
        settle = options["settle_minutes"] * 60
        if options["own_stack"]:
            with self._own_stack(run.pk) as temporal:
                board = chaos.ChaosDriver(
                    run, temporal=temporal, say=self.stdout.write, settle_seconds=settle
                ).run()
        else:
            if async_worker_status() != WORKER_UP:
                run.delete()
                raise CommandError(
                    f"No worker polls task queue {settings.TEMPORAL_TASK_QUEUE!r} on"
                    f" {settings.TEMPORAL_ADDRESS}: start the stack (make run) or pass"
                    " --own-stack."
                )
            board = chaos.ChaosDriver(run, say=self.stdout.write, settle_seconds=settle).run()
        self.stdout.write(f"\nScoreboard of chaos run #{run.pk} (seed {run.seed}):")
        for line in board.lines():
            self.stdout.write(f"  {line}")
        if not board.temporal_ok:
            self.stderr.write("The Temporal lane lost, doubled or stranded something.")
            raise SystemExit(1)
        self.stdout.write("Temporal lane: nothing lost, doubled or stranded.")

    @contextmanager
    def _own_stack(self, run_id: int) -> Iterator[StackTemporal]:
        # A fresh name each time: run numbers repeat across databases, and an old
        # Temporal file there would hold workflows under this database's order ids.
        task_queue = f"chaos-{run_id}-{uuid.uuid4().hex[:8]}"
        log_dir = settings.VAR_DIR / task_queue
        log_dir.mkdir(parents=True)
        env = {
            "DATABASE_URL": database_url(),
            "TEMPORAL_TASK_QUEUE": task_queue,
            "TEMPORAL_WORKFLOW_ID_PREFIX": settings.TEMPORAL_WORKFLOW_ID_PREFIX,
            # Back within a second of a crash, and queued orders started as soon.
            "WORKER_RESTART_PAUSE": "1",
            "STARTER_EVERY_SECONDS": "1",
        }
        self.stdout.write(f"Own stack: logs in {log_dir}")
        with LocalStack(env, log_dir=log_dir) as stack:
            db_file = log_dir / "temporal.db"
            address = stack.start_temporal(db_file=db_file)
            settings.TEMPORAL_ADDRESS, settings.TEMPORAL_TASK_QUEUE = address, task_queue
            stack.start_worker()
            stack.start_plain()
            yield StackTemporal(stack, address, db_file)


def async_worker_status() -> str:
    return async_to_sync(worker_status)()


def _refuse_foreign_orders_in_flight() -> None:
    """Orders in flight on another Temporal server would look vanished to the own stack's
    starter, which would mark them stopped: refuse rather than do that."""
    in_flight = (
        Order.objects.filter(engine=Engine.TEMPORAL)
        .exclude(workflow_id="")
        .exclude(status__in=[*OrderStatus.final(), OrderStatus.QUEUED])
        .count()
    )
    if in_flight:
        raise CommandError(
            f"This database has {in_flight} Temporal order(s) in flight on another server;"
            " --own-stack needs a database of its own (make chaos uses one)."
        )


def database_url() -> str:
    """This process's database as a URL, for the own stack's processes to share it."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}{port}/{db['NAME']}"
