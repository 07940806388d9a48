"""A real stack for the browser: daphne, a supervised worker and the plain runner as
separate processes on the session's Temporal dev server, and Debian's Chromium driven by
Playwright.

The stack gets its own SQLite file, task queue and workflow id prefix, so nothing here
touches the database pytest-django manages for the other tests, nor their workflows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orderdash.stack import LocalStack, chromium, throwaway_env

# One manage.py process for all five switches: each process start costs a second or two.
RESET_SWITCHES = (
    "from django.core.management import call_command\n"
    "from orders.contract import SERVICES\n"
    "for service in SERVICES:\n"
    "    call_command('services', 'set', service, 'healthy')\n"
)


class Stack(LocalStack):
    def reset_switches(self) -> None:
        self.manage("shell", "--no-imports", "-c", RESET_SWITCHES)


@pytest.fixture(scope="session")
def stack(temporal_server, tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    env = throwaway_env(workdir, "e2e") | {
        "TEMPORAL_ADDRESS": temporal_server,
        "TEMPORAL_WORKFLOW_ID_PREFIX": f"e2e{uuid.uuid4().hex[:8]}-",
    }
    # No log_dir: the children write to pytest's captured output, which a failing test
    # reports along with its own.
    with Stack(env=env) as stack:
        stack.manage("migrate", "--no-input", "-v0")
        # The runners boot (a few seconds of imports each) while the catalogue is seeded.
        stack.start_plain()
        stack.start_worker()
        stack.manage("seed_demo")
        stack.start_web()
        yield stack


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect

    # Orders take seconds of retries and backoff; assertions wait for them, never sleep.
    expect.set_options(timeout=30_000)
    # Fail, never skip: a missing browser must turn CI red, not hide the page tests.
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, stack):
    stack.reset_switches()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
