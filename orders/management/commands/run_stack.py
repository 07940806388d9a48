"""Start the whole local stack: Temporal dev server (unless external), worker and daphne.

Ctrl-C stops all of it; workflows persist in var/temporal.db, so the next run picks up
every order that was still in flight.
"""

from __future__ import annotations

import signal
import time
from argparse import ArgumentParser

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orderdash.stack import LocalStack, port_in_use
from orders.management.arguments import whole_number
from orders.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERNAME


class Command(BaseCommand):
    help = "Run the Temporal dev server (unless TEMPORAL_ADDRESS is set), the worker and daphne."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=whole_number(1, 65_535), default=settings.PORT)

    def handle(self, *args: object, **options: object) -> None:
        host, port = options["host"], options["port"]
        try:
            taken = port_in_use(host, port)
        except OSError as exc:  # a host name that does not resolve, an address not ours
            raise CommandError(f"--host {host!r}: {exc.strerror or exc}") from None
        if taken:
            raise CommandError(f"Port {port} on {host} is taken; stop what runs there or set PORT.")
        # No log_dir: every child writes to this terminal, as the banner promises.
        stack = LocalStack(host=host, web_port=port)
        try:
            if settings.TEMPORAL_EMBEDDED:
                self._start_temporal(stack)
            stack.start_worker()
            # The seed's fragile script, for the side-by-side comparison.
            stack.start_plain()
            try:
                stack.start_web()
            except RuntimeError as exc:
                raise CommandError("daphne did not start; see its output above.") from exc
            self._banner(host, port)
            self._watch(stack)
        finally:
            # The orderly shutdown below is never cut short by a second Ctrl-C.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            stack.stop()

    def _start_temporal(self, stack: LocalStack) -> None:
        host, _, port = settings.TEMPORAL_ADDRESS.rpartition(":")
        if port_in_use(host, int(port)):
            self.stdout.write(f"Temporal already answers on {settings.TEMPORAL_ADDRESS}; using it.")
            return
        try:
            stack.start_temporal(
                settings.TEMPORAL_ADDRESS,
                db_file=settings.VAR_DIR / "temporal.db",
                ui_port=settings.TEMPORAL_UI_PORT,
                namespace=settings.TEMPORAL_NAMESPACE,
            )
        except RuntimeError as exc:
            raise CommandError(
                "The Temporal dev server did not start; see its output above."
            ) from exc

    def _banner(self, host: str, port: int) -> None:
        base = f"http://{host}:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "orderdash is running — Ctrl-C stops everything.",
                    f"  Dashboard:    {base}/",
                    f"  Admin:        {base}/admin/",
                    self._login_line(),
                    f"  Temporal UI:  {settings.TEMPORAL_UI_URL}/",
                    "",
                ]
            )
        )

    def _login_line(self) -> str:
        user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
        if user and user.check_password(DEMO_PASSWORD):
            return f"  Demo login:   {DEMO_USERNAME} / {DEMO_PASSWORD}"
        return "  Login:        your own superuser (python manage.py createsuperuser)"

    def _watch(self, stack: LocalStack) -> None:
        stop_requested = []
        # Ctrl-C (often delivered twice: by the terminal and again by make) only asks for
        # a stop; the children, in sessions of their own, never see it.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop_requested.append(True))
        while not stop_requested:
            if exited := stack.exited():
                name, code = exited
                raise CommandError(f"{name} stopped (exit {code}); stopping all.")
            time.sleep(0.5)
        self.stdout.write("\nStopping…")
