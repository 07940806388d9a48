"""A real stack for the browser: daphne and a supervised worker as separate processes,
a real Temporal dev server, and Debian's Chromium driven by Playwright.

The stack gets its own SQLite file and task queue, so nothing here touches the
database pytest-django manages for the other tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orderdash.loopback import CHROMIUM, CHROMIUM_ARGS, free_port, run_manage, wait_for_port
from tests.conftest import running_dev_server

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    worker: subprocess.Popen | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    def manage(self, *args: str) -> str:
        result = run_manage(self.env, *args, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=self.env)

    def stop_worker(self) -> None:
        assert self.worker is not None
        self.worker.terminate()
        self.worker.wait(timeout=30)
        self.worker = None

    def reset_switches(self) -> None:
        for service in ("inventory", "payment", "shipping", "email", "sms"):
            self.manage("services", "set", service, "healthy")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_dev_server() as address:
        yield from _stack(address)


def _stack(dev_server_address: str) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-e2e-"))
    port = free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "orderdash.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'e2e.sqlite3'}",
        "ORDERDASH_VAR_DIR": str(workdir),
        "TEMPORAL_ADDRESS": dev_server_address,
        "TEMPORAL_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "DEBUG": "true",
    }
    stack = Stack(url=f"http://127.0.0.1:{port}", env=env)
    stack.manage("migrate", "--no-input")
    stack.manage("seed_demo")
    daphne = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "orderdash.asgi:application",
        ],
        cwd=ROOT,
        env=env,
    )
    stack.processes.append(daphne)
    plain = subprocess.Popen([sys.executable, "-m", "worker.plain"], cwd=ROOT, env=env)
    stack.processes.append(plain)
    stack.start_worker()
    try:
        wait_for_port(port)
        yield stack
    finally:
        if stack.worker:
            stack.stop_worker()
        for process in stack.processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect

    # Orders take seconds of retries and backoff; assertions wait for them, never sleep.
    expect.set_options(timeout=30_000)
    # Fail, never skip: a missing browser must turn CI red, not hide the page tests.
    assert CHROMIUM.exists(), "Chromium is missing: apt-get install -y chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack):
    stack.reset_switches()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
