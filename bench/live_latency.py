"""Live-progress benchmark: how fast, how cheap and how big the websocket hub is.

Run with `make bench` (or `.venv/bin/python bench/live_latency.py`). It starts a real
stack of its own on free loopback ports — a Temporal dev server in memory, a throwaway
SQLite database, daphne and the worker — drives it, kills it, prints the figures and
writes them to docs/benchmarks.md.

1. Update latency: an activity attempt finishes in the worker (its ledger row's
   created_at) → the step's data-state/data-attempt changes in a real Chromium page
   (a MutationObserver records Date.now(); same machine, same clock).
2. Fan-out: Temporal calls per second made by the hub for one in-flight order, watched by
   1 socket and then by 200 (in process, counted by `orders.live.hub.temporal_calls`).
3. Scale: 500 raw websockets across 100 in-flight orders on one daphne process: latency
   from attempt to message, and daphne's resident memory (VmRSS).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from orderdash.stack import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    dev_server_command,
    free_port,
    run_manage,
    wait_for_port,
)

BIN = Path(sys.executable).parent
RESULTS = ROOT / "docs" / "benchmarks.md"
SKU = "CB-04"  # the seeded product with the most stock

# 1. latency in the browser
LATENCY_ORDERS = 25
LATENCY_BATCH = 5  # orders (and pages) in flight at once
LATENCY_TARGET_P95_S = 0.300
# 2. fan-out
FANOUT_SOCKETS = 200
FANOUT_RUNS = (1, FANOUT_SOCKETS, 1, FANOUT_SOCKETS)  # twice each: the noise shows
# Both windows sit at the same point of the order's retry schedule (inventory down:
# attempts at 0, 1, 3, 7, 15 s), counted from the workflow start.
FANOUT_WINDOW_S = (5.5, 13.5)
FANOUT_NOISE_CALLS = 3  # one order refresh (describe + query) and one worker-status check
# 3. scale
SCALE_ORDERS = 100
SCALE_SOCKETS_PER_ORDER = 5
SCALE_CONNECT_CONCURRENCY = 50
SCALE_IDLE_S = 3.0  # CPU is measured this long with every order watched and nothing moving
SCALE_TARGET_P95_S = 1.0
SCALE_TARGET_RSS_MB = 300
# Bounds
ORDER_DEADLINE_S = 90  # an order that is not final by then counts as stuck
WHOLE_RUN_LIMIT_S = 420

STEP_OF_CALL = {
    ("inventory", "reserve"): "inventory",
    ("payment", "charge"): "payment",
    ("inventory", "commit"): "commit",
    ("shipping", "ship"): "shipping",
    ("email", "send"): "email",
    ("sms", "send"): "sms",
}
# A step shown in one of these states at attempt n has finished attempt n. "retrying" at
# attempt n does not count: describe reports the *upcoming* attempt while in backoff.
DONE_STATES = {"completed", "failed", "compensated", "skipped"}

# Installed in every page before its own scripts: records each change of any step's
# (data-state, data-attempt) with Date.now(), whatever swap caused it.
OBSERVER_JS = """
(() => {
  const bench = (window.__bench = {
    opened: null, firstMessage: null, transitions: [], fragments: [], last: {},
  });
  document.addEventListener("htmx:wsOpen", () => { bench.opened = bench.opened || Date.now(); });
  document.addEventListener("htmx:wsAfterMessage", (event) => {
    const now = Date.now();
    bench.firstMessage = bench.firstMessage || now;
    const message = event.detail && event.detail.message;
    if (typeof message === "string" && message.includes("data-step=")) bench.fragments.push(now);
  });
  const scan = () => {
    const now = Date.now();
    for (const el of document.querySelectorAll("[id^=order-] [data-step]")) {
      const key = el.dataset.state + "/" + el.dataset.attempt;
      if (bench.last[el.dataset.step] !== key) {
        bench.last[el.dataset.step] = key;
        bench.transitions.push([now, el.dataset.step, el.dataset.state, +el.dataset.attempt]);
      }
    }
  };
  new MutationObserver(scan).observe(document, {subtree: true, childList: true,
    attributes: true, attributeFilter: ["data-state", "data-attempt"]});
})();
"""

STEP_TAG = re.compile(r"<[^>]*\bdata-step=\"[^\"]*\"[^>]*>")
ATTR = {name: re.compile(rf'\bdata-{name}="([^"]*)"') for name in ("step", "state", "attempt")}


# --- small helpers ---------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def parse_steps(html: str) -> dict[str, tuple[str, int]]:
    """{step: (state, attempt)} for every step element in a fragment."""
    steps = {}
    for tag in STEP_TAG.findall(html):
        step, state, attempt = (pattern.search(tag) for pattern in ATTR.values())
        if step and state and attempt:
            steps[step.group(1)] = (state.group(1), int(attempt.group(1)))
    return steps


@dataclass
class View:
    """One watcher of one order (a browser page or a raw socket) and what it saw."""

    order_id: int
    ready_at: float | None = None  # wall clock, s
    transitions: list[tuple[float, str, str, int]] = field(default_factory=list)
    fragments: list[float] = field(default_factory=list)  # arrival of every order fragment
    last: dict[str, tuple[str, int]] = field(default_factory=dict)

    def saw(self, at: float, steps: dict[str, tuple[str, int]]) -> None:
        self.fragments.append(at)
        for step, shown in steps.items():
            if self.last.get(step) != shown:
                self.last[step] = shown
                self.transitions.append((at, step, *shown))


@dataclass
class Latencies:
    values: list[float] = field(default_factory=list)
    # Time to the first fragment after the attempt ended, whatever it showed.
    first_fragment: list[float] = field(default_factory=list)
    # Attempts whose first fragment after the end still showed them unfinished.
    stale: int = 0
    missed: int = 0  # attempts the view never showed as finished
    skipped: int = 0  # attempts that finished before the view was live

    def stats(self) -> dict:
        return summary(self.values) | {
            "first_fragment": summary(self.first_fragment),
            "stale": self.stale,
            "missed": self.missed,
            "skipped": self.skipped,
        }


def match(views: list[View], ledger: dict[int, list[tuple[str, int, float]]]) -> Latencies:
    """For every view and every attempt of its order: first time the view showed it done."""
    out = Latencies()
    for view in views:
        for step, attempt, finished in ledger.get(view.order_id, []):
            if view.ready_at is None or finished < view.ready_at:
                out.skipped += 1
                continue
            shown = next(
                (
                    at
                    for at, s, state, n in view.transitions
                    if s == step
                    and at >= view.ready_at
                    and (n > attempt or (n == attempt and state in DONE_STATES))
                ),
                None,
            )
            if shown is None:
                out.missed += 1
                continue
            out.values.append(shown - finished)
            first = next((at for at in view.fragments if at >= finished), shown)
            out.first_fragment.append(first - finished)
            # Fragments for one order are at least one poll apart; 20 ms tells them apart
            # from the browser's own delay between a message and its DOM swap.
            if shown - first > 0.02:
                out.stale += 1
    return out


# --- the stack -------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    web_port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        out = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def manage(self, *args: str) -> None:
        result = run_manage(self.env, *args)
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")

    def start_worker(self) -> None:
        self.spawn("worker", [sys.executable, "-m", "worker", "--once"])

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        for name in ("worker", "daphne", "temporal"):
            self.stop(name)

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_stack(workdir: Path) -> Stack:
    temporal_port, web_port = free_port(), free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "orderdash.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "ORDERDASH_VAR_DIR": str(workdir),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TEMPORAL_TASK_QUEUE": f"bench-{uuid.uuid4()}",
        # As in production: no debug query log growing in the web process.
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LOG_LEVEL": "WARNING",
    }
    stack = Stack(workdir=workdir, env=env, web_port=web_port)
    stack.spawn("temporal", dev_server_command(temporal_port))
    stack.manage("migrate", "--no-input", "-v0")
    stack.manage("seed_demo")
    wait_for_port(temporal_port)
    stack.spawn(
        "daphne",
        [
            str(BIN / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(web_port),
            "orderdash.asgi:application",
        ],
    )
    stack.start_worker()
    wait_for_port(web_port)
    return stack


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


# --- things done to the stack from this process ----------------------------------------


async def set_switch(service: str, mode: str, failures: int | None = None) -> None:
    from asgiref.sync import sync_to_async
    from django.core.management import call_command

    extra = ["--failures", str(failures)] if failures else []
    await sync_to_async(call_command)(
        "services", "set", service, mode, *extra, stdout=io.StringIO()
    )


async def set_flaky(service: str, failures: int) -> None:
    from orders.simulator.models import Mode, ServiceSwitch

    await ServiceSwitch.objects.filter(service=service).aupdate(
        mode=Mode.FLAKY, failures=failures, failures_left=failures
    )


async def place_orders(count: int) -> list[int]:
    """Orders placed the way the web form and place_order do: rows, then the workflow."""
    from asgiref.sync import sync_to_async

    from orders.placement import create_order, start_workflow
    from orders.temporal import get_client

    def create() -> list:
        from orders.simulator.models import Product

        product = Product.objects.get(sku=SKU)
        return [
            create_order(
                {
                    "product": product,
                    "quantity": 1,
                    "customer_name": f"Bench {i}",
                    "email": "bench@example.com",
                    "phone": "+44 20 7946 0000",
                    "address": "1 Loopback Lane, Localhost",
                }
            )
            for i in range(count)
        ]

    await get_client()
    orders = await sync_to_async(create)()
    started = await asyncio.gather(*(start_workflow(order) for order in orders))
    failed = [order.start_error for order in started if order.start_error]
    if failed:
        raise RuntimeError(f"{len(failed)} orders did not start: {failed[0]}")
    return [order.pk for order in started]


async def wait_final(order_ids: list[int], timeout: float = ORDER_DEADLINE_S) -> float:
    """Seconds until every order is final; raises when some are still open at the deadline."""
    from orders.contract import OrderStatus
    from orders.models import Order

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        open_orders = (
            await Order.objects.filter(pk__in=order_ids)
            .exclude(status__in=OrderStatus.final())
            .acount()
        )
        if not open_orders:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{open_orders} of {len(order_ids)} orders still open after {timeout:g}s")


async def ledger(order_ids: list[int]) -> dict[int, list[tuple[str, int, float]]]:
    """{order: [(step, attempt, finished at)]} from the attempts' ledger rows."""
    from orders.simulator.models import ServiceCall

    rows: dict[int, list[tuple[str, int, float]]] = {}
    calls = ServiceCall.objects.filter(order_id__in=order_ids).values_list(
        "order_id", "service", "operation", "attempt", "created_at"
    )
    async for order_id, service, operation, attempt, created_at in calls:
        step = STEP_OF_CALL.get((service, operation))
        if step:
            rows.setdefault(order_id, []).append((step, attempt, created_at.timestamp()))
    return rows


async def statuses(order_ids: list[int]) -> dict[str, int]:
    from orders.models import Order

    counts: dict[str, int] = {}
    async for status in Order.objects.filter(pk__in=order_ids).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


async def terminate_workflows(order_ids: list[int]) -> None:
    from orders.contract import workflow_id_for
    from orders.temporal import get_client

    client = await get_client()
    for order_id in order_ids:
        try:
            await client.get_workflow_handle(workflow_id_for(order_id)).terminate("bench done")
        except Exception as exc:  # already finished is fine
            log(f"terminate order {order_id}: {exc}")


# --- 1. latency in a real browser ------------------------------------------------------


async def bench_latency(stack: Stack) -> dict:
    from playwright.async_api import async_playwright

    log(f"1/3 latency: {LATENCY_ORDERS} orders, {LATENCY_BATCH} pages at a time, Chromium")
    views: list[View] = []
    all_ids: list[int] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(OBSERVER_JS)
        try:
            for _ in range(LATENCY_ORDERS // LATENCY_BATCH):
                # Every order fails inventory twice and shipping once, then goes through.
                await set_switch("inventory", "flaky", 2 * LATENCY_BATCH)
                await set_switch("shipping", "flaky", LATENCY_BATCH)
                ids = await place_orders(LATENCY_BATCH)
                all_ids += ids
                pages = await asyncio.gather(*(context.new_page() for _ in ids))
                await asyncio.gather(
                    *(
                        page.goto(f"{stack.url}/orders/{pk}/", wait_until="domcontentloaded")
                        for page, pk in zip(pages, ids, strict=True)
                    )
                )
                await asyncio.gather(
                    *(
                        page.wait_for_function(
                            "window.__bench && window.__bench.firstMessage", timeout=15_000
                        )
                        for page in pages
                    )
                )
                await wait_final(ids)
                await asyncio.sleep(1.0)  # let the last fragments land
                for page, pk in zip(pages, ids, strict=True):
                    seen = await page.evaluate("window.__bench")
                    view = View(order_id=pk, ready_at=seen["opened"] / 1000)
                    view.transitions = [
                        (at / 1000, step, state, attempt)
                        for at, step, state, attempt in seen["transitions"]
                    ]
                    view.fragments = [at / 1000 for at in seen["fragments"]]
                    views.append(view)
                    await page.close()
        finally:
            await context.close()
            await browser.close()
    await set_switch("inventory", "healthy")
    await set_switch("shipping", "healthy")
    rows = await ledger(all_ids)
    stats = match(views, rows).stats()
    log(
        f"    {stats['n']} attempts seen change the page: p50 {ms(stats['p50'])},"
        f" p95 {ms(stats['p95'])}, max {ms(stats['max'])}; first fragment after the"
        f" attempt p50 {ms(stats['first_fragment']['p50'])}; {stats['stale']} first"
        f" fragments still showed the attempt running; {stats['skipped']} ended before the"
        f" page was live, {stats['missed']} never shown"
    )
    return {
        "orders": len(all_ids),
        "attempts": sum(len(r) for r in rows.values()),
        "statuses": await statuses(all_ids),
        "latency": stats,
        "raw": raw(views, rows),
    }


# --- 2. fan-out: Temporal calls do not grow with sockets -------------------------------


async def bench_fanout() -> dict:
    from channels.testing import WebsocketCommunicator

    from orderdash.asgi import application
    from orders.live import hub

    log(f"2/3 fan-out: Temporal calls/s for one in-flight order, 1 vs {FANOUT_SOCKETS} sockets")
    await set_switch("inventory", "down")  # the order keeps retrying inventory
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    loop = asyncio.get_running_loop()
    runs = []
    for sockets in FANOUT_RUNS:
        [order_id] = await place_orders(1)
        t0 = loop.time()
        comms = [
            WebsocketCommunicator(application, f"/ws/orders/{order_id}/", headers=headers)
            for _ in range(sockets)
        ]

        async def open_one(comm: WebsocketCommunicator) -> None:
            connected, _ = await comm.connect(timeout=60)
            assert connected, "socket refused"
            for _ in range(2):  # worker status, then the order's snapshot
                await comm.receive_from(timeout=60)

        before = hub.temporal_calls
        await asyncio.gather(*(open_one(comm) for comm in comms))
        connect_s = loop.time() - t0
        connect_calls = hub.temporal_calls - before
        start, end = (t0 + offset for offset in FANOUT_WINDOW_S)
        late = loop.time() > start
        start = max(start, loop.time())
        await asyncio.sleep(start - loop.time())
        for comm in comms:  # count only what arrives inside the window
            drain(comm.output_queue)
        calls0 = hub.temporal_calls
        await asyncio.sleep(max(0.0, end - loop.time()))
        calls = hub.temporal_calls - calls0
        window = loop.time() - start
        received = [drain(comm.output_queue) for comm in comms]
        messages = [len(got) for got in received]
        # Every socket should end the window on the same fragment as every other.
        same_last = len({got[-1].get("text") for got in received if got}) <= 1
        await asyncio.gather(*(comm.disconnect(timeout=30) for comm in comms))
        await terminate_workflows([order_id])
        run = {
            "sockets": sockets,
            "connect_s": connect_s,
            "connect_calls": connect_calls,
            "window_s": window,
            "window_late": late,
            "calls": calls,
            "calls_per_s": calls / window,
            "messages_min": min(messages),
            "messages_max": max(messages),
            "same_last": same_last,
        }
        runs.append(run)
        log(
            f"    {sockets:>3} socket(s): {run['calls_per_s']:.2f} calls/s over"
            f" {window:.1f}s ({calls} calls); connecting cost {connect_calls} calls in"
            f" {connect_s:.2f}s; fragments per socket in the window"
            f" {min(messages)}–{max(messages)}"
        )
    await hub.stop()
    await set_switch("inventory", "healthy")
    return {"runs": runs}


def drain(queue: asyncio.Queue) -> list[dict]:
    got = []
    while not queue.empty():
        got.append(queue.get_nowait())
    return got


# --- 3. scale: 500 sockets, 100 orders, one daphne -------------------------------------


async def wait_worker(state: str, timeout: float = 30) -> None:
    from orders.temporal import worker_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await worker_status() == state:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the worker did not show as {state} within {timeout:g}s")


async def bench_scale(stack: Stack) -> dict:
    from websockets.asyncio.client import connect

    from orders.contract import OrderStatus

    total = SCALE_ORDERS * SCALE_SOCKETS_PER_ORDER
    log(f"3/3 scale: {total} raw websockets across {SCALE_ORDERS} in-flight orders, one daphne")
    daphne = stack.processes["daphne"].pid
    rss_start, _ = memory_mb(daphne)
    # Hold the worker back while the sockets connect, then let all orders run at once.
    stack.stop("worker")
    await wait_worker("down")
    # More failures than the switch form allows (50): written straight to the switch.
    await set_flaky("inventory", 2 * SCALE_ORDERS)
    await set_flaky("shipping", SCALE_ORDERS)
    ids = await place_orders(SCALE_ORDERS)
    views = [View(order_id=pk) for pk in ids for _ in range(SCALE_SOCKETS_PER_ORDER)]
    limit = asyncio.Semaphore(SCALE_CONNECT_CONCURRENCY)
    sockets: list = []
    errors: list[str] = []

    async def watch(view: View) -> None:
        url = f"ws://127.0.0.1:{stack.web_port}/ws/orders/{view.order_id}/"
        try:
            async with limit:
                ws = await connect(
                    url,
                    origin=stack.url,
                    open_timeout=60,
                    ping_interval=None,
                    compression=None,
                    max_size=2**24,
                )
            sockets.append(ws)
            async for message in ws:
                now = time.time()
                steps = parse_steps(message if isinstance(message, str) else message.decode())
                if steps:
                    view.ready_at = view.ready_at or now
                    view.saw(now, steps)
        except Exception as exc:  # counted and reported
            errors.append(f"{type(exc).__name__}: {exc}")

    t0 = time.monotonic()
    tasks = [asyncio.create_task(watch(view)) for view in views]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(v.ready_at is None for v in views) and not errors:
        await asyncio.sleep(0.2)
    ready = sum(v.ready_at is not None for v in views)
    connect_s = time.monotonic() - t0
    # Idle: every order in flight and watched, nothing happening (no worker).
    idle = CpuMeter({"daphne": daphne})
    await asyncio.sleep(SCALE_IDLE_S)
    idle_cpu = idle.percent()
    rss_idle, _ = memory_mb(daphne)
    log(
        f"    {ready}/{total} sockets live in {connect_s:.1f}s; idle: daphne RSS"
        f" {rss_idle:.0f} MB, CPU {idle_cpu['daphne']:.0f}%"
    )
    samples: list[float] = []
    stop_sampling = asyncio.Event()

    async def sample_rss() -> None:
        while not stop_sampling.is_set():
            samples.append(memory_mb(daphne)[0])
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    run_s = float("nan")
    try:
        if ready < total:
            raise RuntimeError(f"only {ready} of {total} sockets came up: {errors[:3]}")
        in_flight = sum(
            n for status, n in (await statuses(ids)).items() if status not in OrderStatus.final()
        )
        stack.start_worker()
        busy = CpuMeter(
            {
                "daphne": daphne,
                "worker": stack.processes["worker"].pid,
                "Temporal": stack.processes["temporal"].pid,
                "load generator": os.getpid(),
            }
        )
        run_s = await wait_final(ids)
        run_cpu = busy.percent()
        await asyncio.sleep(1.5)  # the last fragments
    finally:
        stop_sampling.set()
        await sampler
        for ws in sockets:
            await ws.close()
        await asyncio.wait(tasks, timeout=30)
    # The kernel updates VmHWM lazily; a sample can be a little above it.
    rss_peak = max(memory_mb(daphne)[1], *samples)
    rows = await ledger(ids)
    stats = match(views, rows).stats()
    first_socket = match_first(views, rows)
    log(
        f"    {stats['n']} (socket, attempt) pairs: p50 {ms(stats['p50'])}, p95"
        f" {ms(stats['p95'])}, max {ms(stats['max'])}; {stats['missed']} never shown;"
        f" daphne RSS max {max(samples):.0f} MB (peak VmHWM {rss_peak:.0f} MB);"
        f" CPU while running: {fmt_cpu(run_cpu)}"
    )
    return {
        "orders": SCALE_ORDERS,
        "sockets": total,
        "in_flight": in_flight,
        "connect_s": connect_s,
        "run_s": run_s,
        "attempts": sum(len(r) for r in rows.values()),
        "statuses": await statuses(ids),
        "errors": len(errors),
        "latency": stats,
        "first_socket": first_socket,
        "rss_start": rss_start,
        "rss_idle": rss_idle,
        "rss_max": max(samples),
        "rss_hwm": rss_peak,
        "idle_cpu": idle_cpu,
        "run_cpu": run_cpu,
        "raw": raw(views, rows),
    }


class CpuMeter:
    """CPU used by some processes since creation, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def percent(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        return {
            name: 100 * (cpu_seconds(pid) - self.cpu0[name]) / elapsed
            for name, pid in self.pids.items()
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fmt_cpu(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}%" for name, value in cpu.items())


def raw(views: list[View], rows: dict[int, list[tuple[str, int, float]]]) -> dict:
    """What BENCH_DUMP=<file> writes: what every view saw, and every attempt."""
    return {
        "views": [
            {
                "order": v.order_id,
                "ready_at": v.ready_at,
                "transitions": v.transitions,
                "fragments": v.fragments,
            }
            for v in views
        ],
        "ledger": {str(order_id): attempts for order_id, attempts in rows.items()},
    }


def match_first(views: list[View], rows: dict[int, list[tuple[str, int, float]]]) -> dict:
    """Latency to the first socket of each order that showed the attempt."""
    by_order: dict[int, list[View]] = {}
    for view in views:
        by_order.setdefault(view.order_id, []).append(view)
    firsts = []
    for order_id, order_views in by_order.items():
        for row in rows.get(order_id, []):
            values = match(order_views, {order_id: [row]}).values
            if values:
                firsts.append(min(values))
    return summary(firsts)


# --- report ----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def revision() -> str:
    """The commit measured, and whether the app's files differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "orders", "worker", "templates", "orderdash"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' with local changes' if dirty else ''}" if head else "unknown"


def write_report(latency: dict, fanout: dict, scale: dict, total_s: float) -> str:
    lat, sca = latency["latency"], scale["latency"]
    one, many = (pooled(fanout["runs"], n) for n in (1, FANOUT_SOCKETS))
    ok = {
        "latency": lat["p95"] <= LATENCY_TARGET_P95_S and not lat["missed"],
        # Equal within one order refresh and one worker-status check (3 calls): that much
        # depends on where the periodic refreshes fall in the window.
        "fanout": many["calls_per_s"]
        <= one["calls_per_s"] + FANOUT_NOISE_CALLS / min(r["window_s"] for r in fanout["runs"]),
        "scale": sca["p95"] < SCALE_TARGET_P95_S and not sca["missed"],
        "rss": scale["rss_hwm"] < SCALE_TARGET_RSS_MB,
    }
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks: live progress",
        "",
        f"Last run: {when}, commit {revision()}, on a machine with {os.cpu_count()} cores"
        f" (Python {platform.python_version()}, {platform.system()}); the"
        f" measurements took {total_s:.0f} s after the stack was up. Everything — Temporal"
        " dev server, worker, daphne, Chromium and the load generator — shares those cores.",
        "",
        "Run it with `make bench` (or `.venv/bin/python bench/live_latency.py`). It starts its"
        " own stack on free loopback ports (Temporal dev server in memory, a throwaway SQLite"
        " database, one daphne with `DEBUG=false`, one worker), kills it at the end and"
        " rewrites this file. It needs Debian's Chromium (`apt-get install -y chromium`) and"
        " takes about two minutes. `BENCH_DUMP=<file>` also writes every transition and"
        " attempt as JSON.",
        "",
        "| what | target | result | |",
        "| --- | --- | --- | --- |",
        f"| 1. attempt finished → page changed, p95 | ≤ {ms(LATENCY_TARGET_P95_S)}"
        f" | {ms(lat['p95'])} (p50 {ms(lat['p50'])}, max {ms(lat['max'])}, n = {lat['n']})"
        f" | {verdict(ok['latency'])} |",
        f"| 2. Temporal calls/s, 1 → {FANOUT_SOCKETS} sockets on one order | equal"
        f" | {one['calls_per_s']:.2f} → {many['calls_per_s']:.2f} (both runs of each pooled)"
        f" | {verdict(ok['fanout'])} |",
        f"| 3. attempt → message, {scale['sockets']} sockets / {scale['orders']} orders,"
        f" p95 | < {ms(SCALE_TARGET_P95_S)} | {ms(sca['p95'])} (p50 {ms(sca['p50'])},"
        f" max {ms(sca['max'])}, n = {sca['n']}) | {verdict(ok['scale'])} |",
        f"| 3. daphne resident memory, peak | < {SCALE_TARGET_RSS_MB} MB"
        f" | {scale['rss_hwm']:.0f} MB | {verdict(ok['rss'])} |",
        "",
        "## 1. Update latency in a real browser",
        "",
        f"{latency['orders']} orders, {LATENCY_BATCH} at a time, each watched by its own"
        " Chromium page on `/orders/<pk>/`. Inventory is flaky (two failures per order) and"
        " shipping flaky (one per order), so every order makes nine attempts. The clock"
        " starts when the attempt's ledger row is written (`orders_servicecall.created_at`,"
        " at the end of the attempt, in the worker) and stops when a MutationObserver in the"
        " page sees that step's `data-state`/`data-attempt` show the attempt as finished"
        " (`Date.now()`; same machine, same clock). Finished means a later attempt number, or"
        " the same number in completed/failed/compensated/skipped (`retrying` at attempt *n*"
        " means *n* is about to start). Attempts that ended before the page's websocket"
        " opened are left out.",
        "",
        f"- attempts in the ledger: {latency['attempts']}; measured: {lat['n']}; ended before"
        f" the page was live: {lat['skipped']}; never shown: {lat['missed']}",
        f"- attempt → page changed: p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])},"
        f" max {ms(lat['max'])}",
        f"- attempt → first order fragment to arrive afterwards, whatever it showed: p50"
        f" {ms(lat['first_fragment']['p50'])}, p95 {ms(lat['first_fragment']['p95'])}",
        f"- that first fragment still showed the attempt unfinished for {lat['stale']} of"
        f" {lat['n']} attempts ({pct(lat['stale'], lat['n'])})",
        f"- orders: {fmt_counts(latency['statuses'])}",
        "",
        "## 2. Fan-out",
        "",
        f"A fresh in-flight order (inventory down, so it keeps retrying) per run, watched by"
        f" 1 socket or by {FANOUT_SOCKETS}, each twice ({', '.join(map(str, FANOUT_RUNS))}),"
        " in process with `channels.testing."
        "WebsocketCommunicator` against `orderdash.asgi.application`. Calls are read from"
        " `orders.live.hub.temporal_calls` (one per describe, one per query, one per"
        " worker-status check) over the same window of the order's retry schedule"
        f" ({FANOUT_WINDOW_S[0]:g}–{FANOUT_WINDOW_S[1]:g} s after the workflow started),"
        " once every socket has its snapshot. “Equal” allows"
        f" {FANOUT_NOISE_CALLS} calls of difference per window (one order refresh and one"
        " worker-status check), which is how much depends on where the periodic refreshes"
        " fall in the window.",
        "",
        "| sockets | Temporal calls/s | calls in window | window | fragments per socket"
        " in window | connecting: time, calls |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in fanout["runs"]:
        late = " (started late)" if run["window_late"] else ""
        lines.append(
            f"| {run['sockets']} | {run['calls_per_s']:.2f} | {run['calls']} |"
            f" {run['window_s']:.1f} s{late} | {run['messages_min']}–{run['messages_max']} |"
            f" {run['connect_s']:.2f} s, {run['connect_calls']} |"
        )
    lines += [
        "",
        (
            "The steady rate of Temporal calls does not grow with sockets"
            if ok["fanout"]
            else "**The steady rate of Temporal calls grew with sockets**"
        )
        + "; every socket"
        + (
            " ended the window on the same fragment"
            if all(run["same_last"] for run in fanout["runs"])
            else " did **not** end the window on the same fragment"
        )
        + " (counts can differ by one where a fragment was on its way at a window edge)."
        " The last column is what connecting cost: a socket on an order already watched"
        " gets the fragment its watchers last got and the worker status checked within the"
        " last second, so connecting costs Temporal nothing beyond the first socket's"
        " describe + query and an occasional worker-status check.",
        "",
        "## 3. 500 sockets, 100 in-flight orders, one daphne",
        "",
        f"{scale['orders']} orders with {SCALE_SOCKETS_PER_ORDER} raw websockets each"
        " (`websockets` client, `Origin` set) on one daphne process. The worker is held"
        " back while the sockets connect, then started, so all"
        f" {scale['in_flight']} orders run their retries at once (inventory fails twice per"
        " order, shipping once): a burst, harsher than steady traffic. Latency runs from the"
        " attempt's ledger row to the first message on that socket showing the attempt as"
        " finished (same rule as above, read from the fragment's data attributes on"
        " arrival). Memory is daphne's `VmRSS` from `/proc/<pid>/status`, sampled every"
        " 0.25 s, and `VmHWM` (the kernel's peak) at the end. CPU is from"
        " `/proc/<pid>/stat`, in % of one core.",
        "",
        f"- sockets live: {scale['sockets']} in {scale['connect_s']:.1f} s; socket errors:"
        f" {scale['errors']}",
        f"- idle for {SCALE_IDLE_S:g} s with every order in flight and watched (no worker):"
        f" daphne CPU {scale['idle_cpu']['daphne']:.0f}%",
        f"- all orders final {scale['run_s']:.1f} s after the worker started:"
        f" {fmt_counts(scale['statuses'])}; attempts in the ledger: {scale['attempts']}",
        f"- CPU while they ran: {fmt_cpu(scale['run_cpu'])}",
        f"- every (socket, attempt): n = {sca['n']}, p50 {ms(sca['p50'])}, p95"
        f" {ms(sca['p95'])}, max {ms(sca['max'])}; never shown: {sca['missed']}",
        f"- first socket per attempt: p50 {ms(scale['first_socket']['p50'])}, p95"
        f" {ms(scale['first_socket']['p95'])}, max {ms(scale['first_socket']['max'])}",
        f"- attempt → first order fragment afterwards: p50"
        f" {ms(sca['first_fragment']['p50'])}, p95 {ms(sca['first_fragment']['p95'])};"
        f" it still showed the attempt unfinished for {pct(sca['stale'], sca['n'])}",
        f"- daphne RSS: {scale['rss_start']:.0f} MB before, {scale['rss_idle']:.0f} MB with"
        f" {scale['sockets']} idle sockets, {scale['rss_max']:.0f} MB at most while the orders"
        f" ran (sampled), peak {scale['rss_hwm']:.0f} MB (VmHWM)",
        "",
        "## Reading the figures",
        "",
        *notes(latency, scale, ok),
        "",
    ]
    text = "\n".join(lines)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    return text


def pooled(runs: list[dict], sockets: int) -> dict:
    """All runs with this many sockets as one: total calls over total time."""
    mine = [run for run in runs if run["sockets"] == sockets]
    calls, window = sum(r["calls"] for r in mine), sum(r["window_s"] for r in mine)
    return {"calls": calls, "window_s": window, "calls_per_s": calls / window}


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))


def knobs() -> str:
    """The hub's tuning constants as this run found them."""
    from orders import live

    values = {
        name: value
        for name, value in vars(live).items()
        if name.isupper() and isinstance(value, int | float) and not isinstance(value, bool)
    }
    return ", ".join(f"`{name} = {value:g}`" for name, value in values.items())


def notes(latency: dict, scale: dict, ok: dict[str, bool]) -> list[str]:
    lat, sca = latency["latency"], scale["latency"]
    out = [
        f"- The hub's knobs in `orders/live.py` at this run: {knobs()}.",
        "- An attempt's end is written to the database a few milliseconds before Temporal"
        " hears of it, so a fragment built in between can still show the attempt running;"
        " the “still showed the attempt unfinished” figures count how often the first"
        " fragment after an attempt did that.",
    ]
    if not ok["latency"]:
        out.append(
            f"- **Latency target missed** (p95 {ms(lat['p95'])} for ≤"
            f" {ms(LATENCY_TARGET_P95_S)}). The first fragment after an attempt took"
            f" {ms(lat['first_fragment']['p50'])} (p50; p95"
            f" {ms(lat['first_fragment']['p95'])}), and {pct(lat['stale'], lat['n'])} of the"
            " attempts needed a later fragment to show as finished."
        )
    if not ok["scale"]:
        out.append(
            f"- **Scale target missed** (p95 {ms(sca['p95'])} for < {ms(SCALE_TARGET_P95_S)})."
            f" With {SCALE_ORDERS} orders watched and nothing moving, daphne already used"
            f" {scale['idle_cpu']['daphne']:.0f}% of a core; while they ran,"
            f" {scale['run_cpu']['daphne']:.0f}%. The first fragment after an attempt took"
            f" {ms(sca['first_fragment']['p50'])} (p50), and {pct(sca['stale'], sca['n'])}"
            " of the attempts needed a later fragment to show as finished."
        )
    if not ok["rss"]:
        out.append(
            "- **Memory target missed**: suspect per-socket buffering of fragments"
            " (`InMemoryChannelLayer` keeps up to 100 per channel)."
        )
    if all(ok.values()):
        out.append("- Every target was met on this run.")
    measured = revision()
    out += [
        "",
        f"### Diagnosis, written by hand for commit {DIAGNOSIS_COMMIT}",
        "",
    ]
    if not measured.startswith(DIAGNOSIS_COMMIT) or "local changes" in measured:
        out += [
            f"*This run measured {measured}: the code has changed since; check this section"
            " against it before acting on it.*",
            "",
        ]
    return out + DIAGNOSIS


# Written from this script's figures and a one-off sampling profile of daphne during the
# 500-socket burst (py-spy, not part of this script). Update it with DIAGNOSIS_COMMIT.
DIAGNOSIS_COMMIT = "015d4eb"
DIAGNOSIS = [
    "Where a push's time goes, from a sampling profile of daphne during the 500-socket"
    " burst (py-spy, 200 Hz, 25 s, run by hand), and what was changed because of it:",
    "",
    "- **Channels' own per-message overhead dominated at first.** `AsyncConsumer.dispatch`"
    " closes stale database connections before every handler, one hop to Channels' single"
    " sync thread per message per socket; and the stock `InMemoryChannelLayer` sweeps every"
    " channel and group membership for expired entries on each receive and group send."
    " With 500 sockets those two were most of the event loop's time (group sends alone"
    " took ~370 ms per tick). Now `LiveConsumer.dispatch` forwards fragments without the"
    " hop (they touch no database), and `orderdash.layers.InMemoryChannelLayer` sweeps at"
    " most once a second: group sends take a few ms per tick.",
    "- **Then the batch rebuild.** Each tick reloads every order that moved in one thread"
    " hop (seven queries for the whole batch, grouped by hand: `prefetch_related` built a"
    " queryset per order and relation, which cost more than the queries) and renders it."
    " Rendering is the larger half; the ledger part (exactly-once panel and attempt table)"
    " is rendered again only when the ledger changed.",
    "- **The page no longer waits for Temporal to hear of an attempt.** The activity writes"
    " the attempt's end to the database first, and the hub pushes what the database says"
    " at once: a retrying step announces its next attempt number before describe has the"
    " schedule; describe is asked right after, for the countdown.",
    "- Periodic work (describe and query every `ORDER_REFRESH_S`, more slowly with many"
    " orders) is spread over the ticks instead of falling due for every order at once.",
    "",
    "What is left: on two cores the worker and Temporal take most of the CPU, and the"
    " rebuild thread's wall time is about 2.5 times its CPU time. In the worker, SQLite"
    " writes from 32 activity threads wait for the write lock (p95 about 150 ms in the"
    " burst, a few waits over a second: SQLite's busy handler sleeps between tries), and"
    " that wait is part of every figure here. Merging an attempt's writes into one"
    " transaction made it worse, not better: the lock is then held across the threads'"
    " turns at the GIL, and some attempts outlived their 2 s heartbeat timeout. PostgreSQL"
    " (production) has neither problem. The largest remaining cost inside daphne is"
    " template rendering of the timeline.",
]


# --- main ------------------------------------------------------------------------------


async def run(stack: Stack) -> str:
    started = time.monotonic()
    if only := os.getenv("BENCH_ONLY"):
        # One part, for quick comparisons while tuning: printed, nothing written.
        parts = {"latency": bench_latency, "scale": bench_scale}
        if only not in parts:
            raise SystemExit(f"BENCH_ONLY is one of: {', '.join(parts)}")
        await parts[only](stack)
        return ""
    latency = await bench_latency(stack)
    fanout = await bench_fanout()
    scale = await bench_scale(stack)
    if dump := os.getenv("BENCH_DUMP"):
        Path(dump).write_text(
            json.dumps({"latency": latency["raw"], "scale": scale["raw"], "fanout": fanout})
        )
    return write_report(latency, fanout, scale, time.monotonic() - started)


def main() -> int:
    if not CHROMIUM.exists():
        print("Chromium is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-bench-"))
    stack = None
    try:
        log("starting Temporal dev server, daphne and worker on free loopback ports")
        stack = start_stack(workdir)
        setup_django(stack.env)
        report = asyncio.run(asyncio.wait_for(run(stack), timeout=WHOLE_RUN_LIMIT_S))
    except BaseException:
        if stack:
            for name in ("daphne", "worker"):
                print(f"--- last lines of {name} ---\n{stack.tail(name)}", file=sys.stderr)
            stack.close()
            print(f"The stack's logs and database are kept in {workdir}", file=sys.stderr)
        raise
    if stack:
        stack.close()
    shutil.rmtree(workdir, ignore_errors=True)
    if report:
        print()
        print(report)
        print(f"\nWritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
