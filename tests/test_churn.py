"""Websocket churn against a real daphne: many sockets opening and dropping at once leave
it answering new ones at once, with nothing alarming in its log."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from websockets.asyncio.client import connect

from orderdash.stack import LocalStack, throwaway_env

CLIENTS = 500
# A board as full as it gets (it shows 25 orders): rendering it for each joining socket,
# one at a time in Channels' sync thread, is what once kept new sockets waiting.
FILL_THE_BOARD = """
from orders.placement import create_order
from orders.simulator.models import Product
product = Product.objects.order_by("sku").first()
for n in range(30):
    create_order({"product": product, "quantity": 1, "customer_name": f"Customer {n}",
                  "email": f"c{n}@example.com", "address": f"{n} Churn Street"})
"""


@pytest.fixture(scope="module")
def web(temporal_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("churn")
    env = throwaway_env(workdir, "churn") | {"TEMPORAL_ADDRESS": temporal_server}
    with LocalStack(env=env, log_dir=workdir) as stack:
        stack.manage("migrate", "--no-input", "-v0")
        stack.manage("seed_demo")
        stack.manage("shell", "-c", FILL_THE_BOARD)
        stack.start_web()
        yield stack, workdir


async def open_and_drop(url: str) -> None:
    with contextlib.suppress(OSError, asyncio.TimeoutError, Exception):
        async with connect(url, open_timeout=10, origin="http://127.0.0.1"):
            pass  # gone again at once, as a tab closed while it loads


async def first_message_after(url: str) -> float:
    started = time.monotonic()
    async with connect(url, open_timeout=10, origin="http://127.0.0.1") as socket:
        await asyncio.wait_for(socket.recv(), timeout=10)
    return time.monotonic() - started


def test_500_sockets_dropping_at_once_leave_daphne_answering_and_quiet(web):
    stack, workdir = web
    url = stack.url.replace("http", "ws") + "/ws/orders/"

    async def churn() -> float:
        await asyncio.gather(*(open_and_drop(url) for _ in range(CLIENTS)))
        return await first_message_after(url)

    waited = asyncio.run(churn())
    # Before, a new socket waited about 5 s behind the dropped ones; now about 0.5–1 s, most
    # of it Channels' session lookups, which run one at a time in its sync thread.
    assert waited < 2.0, f"a new socket waited {waited:.1f}s for its first message"
    time.sleep(12)  # daphne reports an application still running 10 s after its close
    log = (workdir / "daphne.log").read_text(errors="replace")
    assert "took too long to shut down" not in log
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
