"""Keeps one process running: when it dies, say so, pause, start another.

A dead Temporal worker loses nothing: Temporal notices the missing heartbeat and hands
the interrupted step to the next worker that polls. A dead plain-script runner loses
whatever order it was in the middle of; restarting it does not bring that back.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("supervisor")


def supervise(module: str, name: str) -> int:
    """Run `python -m <module> --once` again and again until asked to stop."""
    from worker.main import setup_django

    setup_django()
    from django.conf import settings

    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {name}-supervisor %(levelname)s %(message)s"
    )
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        child = subprocess.Popen([sys.executable, "-m", module, "--once"])
        code = child.wait()
        if stopping:
            break
        log.error(
            "%s process %d died (exit %d); starting a new one in %.1fs",
            name,
            child.pid,
            code,
            settings.WORKER_RESTART_PAUSE,
        )
        time.sleep(settings.WORKER_RESTART_PAUSE)
    if child and child.poll() is None:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
