"""`load`: N orders at R per second, with a progress bar, then how they ended."""

from __future__ import annotations

import getpass
import time
from argparse import ArgumentParser, RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand, CommandError

from orders.forms import MAX_LOAD_ORDERS, MAX_LOAD_RATE, LoadForm
from orders.load import LoadRunning, create_run, outcomes, request_stop, run_load, still_open
from orders.models import LoadRun

BAR_WIDTH = 30
EPILOG = f"""
Orders get a made-up customer and the cheapest product in stock, one unit each.
--orders: 1 to {MAX_LOAD_ORDERS:,}. --rate: more than 0, at most {MAX_LOAD_RATE:g} per second.
--engine both alternates the two engines; --mix T:P sets the share (3:1 = three
Temporal orders for each plain one). Plain orders need the plain runner (make run).

Examples:
  python manage.py load --orders 50 --rate 5
  python manage.py load --orders 200 --rate 10 --engine both --mix 3:1
"""


def progress_bar(done: int, total: int, label: str) -> str:
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"{label:>7} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"


class Command(BaseCommand):
    help = "Place N orders at R per second and report how they ended (per status)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: object) -> ArgumentParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        # Strings: LoadForm checks them, the same checks as the page's form.
        parser.add_argument("--orders", required=True, metavar="N", help="how many orders")
        parser.add_argument("--rate", required=True, metavar="R", help="orders per second")
        parser.add_argument("--engine", default="temporal", help="temporal (default), plain, both")
        parser.add_argument("--mix", default="", metavar="T:P", help="with --engine both")
        parser.add_argument(
            "--timeout",
            type=float,
            default=300,
            help="seconds to wait for the orders to end after the last is placed (300)",
        )
        parser.add_argument(
            "--no-wait", action="store_true", help="report as soon as the last is placed"
        )

    def handle(self, *args: object, **options: object) -> None:
        fields = ("orders", "rate", "engine", "mix")
        form = LoadForm({name: options[name] for name in fields})
        if not form.is_valid():
            raise CommandError(
                " ".join(f"--{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            )
        if not 0 <= options["timeout"] <= 86_400:
            raise CommandError("--timeout: between 0 and 86400 seconds.")
        try:
            run = create_run(form.cleaned_data, actor=f"{getpass.getuser()} (load command)")
        except LoadRunning as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Load run #{run.pk}: {run.total} orders at {run.rate:g}/s, engine {run.engine}"
            + (f" (mix {run.mix})" if run.mix else "")
        )
        self._tty = self.stdout.isatty()
        self._shown = -1
        try:
            run = run_load(run, on_progress=lambda r: self._bar(r.placed, r.total, "placed"))
        except KeyboardInterrupt:
            request_stop(run)
            run.refresh_from_db()
            self.stdout.write("\nInterrupted: no more orders are placed.")
        self._end_line()
        if run.state != LoadRun.State.FINISHED and run.note:
            self.stdout.write(f"Stopped early: {run.note}.")
        if not options["no_wait"]:
            self._wait(run, options["timeout"])
        self._report(run)

    def _bar(self, done: int, total: int, label: str) -> None:
        # A line per 5% without a terminal (logs, CI); one line redrawn with one.
        step = done * 20 // total if total else 20
        if self._tty:
            self.stdout.write("\r" + progress_bar(done, total, label), ending="")
            self.stdout.flush()
        elif step != self._shown:
            self.stdout.write(progress_bar(done, total, label))
        self._shown = step

    def _end_line(self) -> None:
        if self._tty:
            self.stdout.write("")
        self._shown = -1

    def _wait(self, run: LoadRun, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while (left := still_open(run)) and time.monotonic() < deadline:
                self._bar(run.placed - left, run.placed, "ended")
                time.sleep(0.5)
            self._bar(run.placed - left, run.placed, "ended")
        except KeyboardInterrupt:
            self.stdout.write("\nNot waiting any longer.")
        self._end_line()
        if left:
            self.stdout.write(f"{left} order(s) still in flight after {timeout:g}s.")

    def _report(self, run: LoadRun) -> None:
        self.stdout.write(f"Placed {run.placed} of {run.total} orders. How they stand:")
        for status, count in outcomes(run).items():
            self.stdout.write(f"  {status:<24} {count}")
