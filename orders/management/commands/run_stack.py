"""Start the whole local stack: Temporal dev server (unless external), worker and daphne.

Ctrl-C stops all of it; workflows persist in var/temporal.db, so the next run picks up
every order that was still in flight.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orderdash.loopback import WORKER_LIVENESS_CONFIG
from orders.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERNAME

BIN = Path(sys.executable).parent


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    # Its own session, so Ctrl-C reaches only this command, which then stops the
    # children in order: web and workers first (finishing what they hold), Temporal last.
    return subprocess.Popen(command, start_new_session=True)


class Command(BaseCommand):
    help = "Run the Temporal dev server (unless TEMPORAL_ADDRESS is set), the worker and daphne."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=os.getenv("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.getenv("PORT", "8000")))

    def handle(self, *args: object, **options: object) -> None:
        host, port = options["host"], options["port"]
        if port_in_use(host, port):
            raise CommandError(f"Port {port} on {host} is taken; stop what runs there or set PORT.")
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            if "TEMPORAL_ADDRESS" not in os.environ:
                children.append(("temporal", self._start_temporal()))
            children.append(("worker", _spawn([sys.executable, "-m", "worker"])))
            # The seed's fragile script, for the side-by-side comparison.
            children.append(("plain", _spawn([sys.executable, "-m", "worker.plain"])))
            children.append(
                (
                    "daphne",
                    _spawn(
                        [
                            str(BIN / "daphne"),
                            "-b",
                            host,
                            "-p",
                            str(port),
                            "orderdash.asgi:application",
                        ]
                    ),
                )
            )
            if not wait_for_port(host, port, 30):
                raise CommandError("daphne did not start; see its output above.")
            self._banner(host, port)
            self._watch(children)
        finally:
            self._stop(children)

    def _start_temporal(self) -> subprocess.Popen[bytes]:
        host, _, port = settings.TEMPORAL_ADDRESS.rpartition(":")
        if port_in_use(host, int(port)):
            self.stdout.write(f"Temporal already answers on {settings.TEMPORAL_ADDRESS}; using it.")
            return _spawn(["sleep", "infinity"])
        ui_port = os.getenv("TEMPORAL_UI_PORT", "8233")
        command = [
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--ip", host,
            "--port", port,
            "--ui-port", ui_port,
            "--db-filename", str(settings.VAR_DIR / "temporal.db"),
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--namespace", settings.TEMPORAL_NAMESPACE,
            "--log-level", "error",
            "--dynamic-config-value", WORKER_LIVENESS_CONFIG,
        ]  # fmt: skip
        process = _spawn(command)
        if not wait_for_port(host, int(port), 60):
            process.terminate()
            raise CommandError("The Temporal dev server did not start; see its output above.")
        return process

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

    def _watch(self, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        stop_requested = []
        # Ctrl-C (often delivered twice: by the terminal and again by make) only asks for
        # a stop; the orderly shutdown below is never cut short.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop_requested.append(True))
        while not stop_requested:
            for name, child in children:
                if child.poll() is not None:
                    raise CommandError(f"{name} stopped (exit {child.returncode}); stopping all.")
            time.sleep(0.5)
        self.stdout.write("\nStopping…")

    def _stop(self, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        # Web and worker first, Temporal last, so nothing loses its server mid-call.
        for _name, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
