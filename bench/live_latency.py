"""Live-progress benchmark. Method and results: docs/benchmarks.md (`make bench`)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import async_playwright
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from orderdash import stack as launcher  # noqa: E402

RESULTS, MARKS = ROOT / "docs" / "benchmarks.md", ("<!-- results -->", "<!-- /results -->")
LATENCY_P95_S, SCALE_P95_S, RSS_MB, FANOUT_NOISE = 0.150, 1.0, 300, 3  # the targets
LATENCY_ORDERS, LATENCY_BATCH = 25, 5
FANOUT_RUNS, FANOUT_WINDOW = (1, 200, 1, 200), (5.5, 13.5)  # s after the workflow started
SCALE_ORDERS, SCALE_PER_ORDER, SCALE_IDLE_S = 100, 5, 3.0
LEDGER_FIELDS = ("order", "service", "operation", "attempt", "created_at")
STEP_OF = {"reserve": "inventory", "charge": "payment", "commit": "commit", "ship": "shipping"}
DONE = {"completed", "failed", "compensated", "skipped"}
STEP_TAG = re.compile(r'data-step="([^"]+)" data-state="([^"]+)" data-attempt="(\d+)"')
OBSERVER_JS = """(() => { const b = (window.__bench = {opened: 0, seen: [], last: {}});
  document.addEventListener("htmx:wsOpen", () => { b.opened = b.opened || Date.now(); });
  new MutationObserver(() => document.querySelectorAll("[id^=order-] [data-state]").forEach(
    (el) => { const d = el.dataset, key = d.state + "/" + d.attempt;
      if (b.last[d.step] !== key) { b.last[d.step] = key;
        b.seen.push([Date.now() / 1000, d.step, d.state, +d.attempt]); } })
  ).observe(document, {subtree: true, childList: true, attributes: true}); })();"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Stack:
    """Processes on loopback, each logging to <workdir>/<name>.log."""

    def __init__(self, workdir: Path, env: dict[str, str], url: str) -> None:
        self.workdir, self.env, self.url, self.procs = workdir, env, url, {}

    def spawn(self, name: str, args: list[str]) -> None:
        out = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=out)

    def start_worker(self) -> None:
        self.spawn("worker", [sys.executable, "-m", "worker"])  # under its supervisor

    def stop(self, *names: str) -> None:
        for proc in [self.procs.pop(name) for name in names if name in self.procs]:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_stack(workdir: Path) -> Stack:
    """Temporal dev server, a migrated and seeded SQLite file, daphne, supervised worker."""
    temporal, web = launcher.free_port(), launcher.free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "orderdash.settings",
        "ORDERDASH_VAR_DIR": str(workdir),
        "STATIC_ROOT": str(workdir / "static"),
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "TEMPORAL_TASK_QUEUE": f"bench-{secrets.token_hex(8)}",
        "DEBUG": "false",
        "DEMO_MODE": "true",  # measured as a demo runs: no login in front of the sockets
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LOG_LEVEL": "WARNING",
    }
    stack = Stack(workdir, env, f"http://127.0.0.1:{web}")
    try:
        stack.spawn("temporal", launcher.dev_server_command(temporal))
        # DEBUG is off, as in production: static files are served only once collected.
        setup = (("collectstatic", "--no-input", "-v0"), ("migrate", "--no-input", "-v0"))
        for args in (*setup, ("seed_demo",)):
            if (done := launcher.run_manage(env, *args)).returncode:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr}")
        launcher.wait_for_port(temporal)
        daphne = [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(web)]
        stack.spawn("daphne", [*daphne, "orderdash.asgi:application"])
        stack.start_worker()
        launcher.wait_for_port(web)
    except BaseException:
        stack.stop(*stack.procs)
        raise
    return stack


def pct(values: list[float], q: int) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)]


def stats(part: dict) -> str:
    p50, p95, top = (f"{pct(part['values'], q) * 1000:.0f} ms" for q in (50, 95, 100))
    return f"p95 {p95} (p50 {p50}, max {top}, n = {len(part['values'])}, unseen {part['missed']})"


def over(attempt: int, state: str, shown: int) -> bool:
    """A step shown at attempt `shown` in `state` shows that `attempt` has ended."""
    return shown > attempt or (shown == attempt and state in DONE)


def latencies(views: list, attempts: dict) -> dict:
    """Views are (order, live since, [(at, step, state, attempt)]). For every attempt that
    ended while a view was live: time until the view showed it ended, or a miss."""
    values, missed = [], 0
    for order_id, since, seen in views:
        for step, n, ended in attempts.get(order_id, []):
            if ended < since:
                continue
            shown = next((at for at, s, state, m in seen if s == step and over(n, state, m)), None)
            values += [shown - ended] if shown else []
            missed += not shown
    return {"values": values, "missed": missed}


async def set_switch(service: str, mode: str, failures: int = 1) -> None:
    from orders.simulator.models import ServiceSwitch

    switch = ServiceSwitch.objects.filter(service=service)
    await switch.aupdate(mode=mode, failures=failures, failures_left=failures)


async def place(count: int, **flaky: int) -> list[int]:
    """Orders placed as the web form does; `flaky` makes services fail that often in all."""
    from asgiref.sync import sync_to_async

    from orders.placement import create_order, start_workflow
    from orders.simulator.models import Product

    for service, failures in flaky.items():
        await set_switch(service, "flaky", failures)
    product = await Product.objects.aget(sku="CB-04")  # the seeded product with most stock
    form = {"product": product, "quantity": 1, "customer_name": "Bench", "email": "b@example.com"}
    form |= {"phone": "+44 20 7946 0000", "address": "1 Loopback Lane"}
    orders = [await sync_to_async(create_order)(form) for _ in range(count)]
    started = await asyncio.gather(*map(start_workflow, orders))
    if errors := [order.start_error for order in started if order.start_error]:
        raise RuntimeError(f"{len(errors)} orders did not start: {errors[0]}")
    return [order.pk for order in started]


async def finished(ids: list[int], timeout: float = 120) -> dict:
    """Waits until every order is final; then its attempts at steps (not compensations),
    each with when its ledger row was written, and how long the wait took."""
    from orders.contract import OrderStatus
    from orders.models import Order
    from orders.simulator.models import ServiceCall

    t0, attempts = time.monotonic(), {}
    while await Order.objects.filter(pk__in=ids).exclude(status__in=OrderStatus.final()).aexists():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"orders still open after {timeout:g} s")
        await asyncio.sleep(0.2)
    wait_s = time.monotonic() - t0
    calls = ServiceCall.objects.filter(order__in=ids)
    async for pk, service, op, n, at in calls.values_list(*LEDGER_FIELDS):
        if step := STEP_OF.get(op, service if op == "send" else None):
            attempts.setdefault(pk, []).append((step, n, at.timestamp()))
    return {"attempts": attempts, "wait_s": wait_s}


async def bench_latency(stack: Stack) -> dict:
    views, attempts = [], {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(launcher.CHROMIUM), args=launcher.CHROMIUM_ARGS
        )
        context = await browser.new_context()
        await context.add_init_script(OBSERVER_JS)
        for _ in range(LATENCY_ORDERS // LATENCY_BATCH):
            batch = await place(LATENCY_BATCH, inventory=2 * LATENCY_BATCH, shipping=LATENCY_BATCH)
            pages = [await context.new_page() for _ in batch]
            for page, pk in zip(pages, batch, strict=True):
                await page.goto(f"{stack.url}/orders/{pk}/", wait_until="domcontentloaded")
            attempts |= (await finished(batch))["attempts"]
            await asyncio.sleep(1.0)  # the last fragments
            for page, pk in zip(pages, batch, strict=True):
                seen = await page.evaluate("window.__bench")
                views.append((pk, seen["opened"] / 1000 or float("inf"), seen["seen"]))
                await page.close()
        await browser.close()
    return latencies(views, attempts)


async def bench_fanout() -> dict:
    from channels.testing import WebsocketCommunicator

    from orderdash.asgi import application
    from orders.live import hub
    from orders.temporal import get_client, order_workflow_id

    await set_switch("inventory", "down")  # each order keeps retrying until terminated
    loop, runs = asyncio.get_running_loop(), []
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    for sockets in FANOUT_RUNS:
        [pk] = await place(1)
        t0, url = loop.time(), f"/ws/orders/{pk}/"
        comms = [WebsocketCommunicator(application, url, headers) for _ in range(sockets)]
        await asyncio.gather(*(comm.connect(timeout=60) for comm in comms))
        for _ in range(2):  # the worker status, then the order
            await asyncio.gather(*(comm.receive_from(timeout=60) for comm in comms))
        await asyncio.sleep(max(0.0, t0 + FANOUT_WINDOW[0] - loop.time()))
        calls, start = hub.temporal_calls, loop.time()
        await asyncio.sleep(max(0.0, t0 + FANOUT_WINDOW[1] - loop.time()))
        runs.append((sockets, hub.temporal_calls - calls, loop.time() - start))
        log(f"  {sockets} socket(s): {runs[-1][1]} Temporal calls in {runs[-1][2]:.1f} s")
        await asyncio.gather(*(comm.disconnect() for comm in comms))
        await (await get_client()).get_workflow_handle(order_workflow_id(pk)).terminate()
    await hub.stop()
    await set_switch("inventory", "healthy")
    pooled = {n: [sum(r[i] for r in runs if r[0] == n) for i in (1, 2)] for n in set(FANOUT_RUNS)}
    return {"runs": runs, "per_s": {n: calls / s for n, (calls, s) in pooled.items()}}


def proc_stat(pid: int) -> tuple[float, float]:
    """CPU seconds and resident MB of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def bench_scale(stack: Stack) -> dict:
    from orders.temporal import WORKER_DOWN, worker_status

    daphne = stack.procs["daphne"].pid
    stack.stop("worker")  # held back while the sockets connect: then every order runs at once
    while await worker_status() != WORKER_DOWN:
        await asyncio.sleep(0.5)
    ids = await place(SCALE_ORDERS, inventory=2 * SCALE_ORDERS, shipping=SCALE_ORDERS)
    views = [[pk, None, []] for pk in ids for _ in range(SCALE_PER_ORDER)]
    gate, sockets, errors = asyncio.Semaphore(50), [], []

    async def watch(view: list) -> None:
        try:
            async with gate:
                url = f"{stack.url.replace('http', 'ws')}/ws/orders/{view[0]}/"
                sockets.append(ws := await connect(url, origin=stack.url, ping_interval=None))
            async for message in ws:
                now = time.time()
                for step, state, attempt in STEP_TAG.findall(message):
                    view[1] = view[1] or now
                    view[2].append((now, step, state, int(attempt)))
        except Exception as exc:
            errors.append(repr(exc))

    t0, tasks = time.monotonic(), [asyncio.create_task(watch(view)) for view in views]
    while any(v[1] is None for v in views) and not errors and time.monotonic() - t0 < 90:
        await asyncio.sleep(0.1)
    if errors or any(v[1] is None for v in views):
        raise RuntimeError(f"not every socket got its order: {errors[:3]}")
    out = {"connect_s": time.monotonic() - t0}
    cpu0 = proc_stat(daphne)[0]
    await asyncio.sleep(SCALE_IDLE_S)
    cpu1, out["rss_idle"] = proc_stat(daphne)
    out["idle_cpu"] = 100 * (cpu1 - cpu0) / SCALE_IDLE_S
    stack.start_worker()
    run, out["rss_max"] = asyncio.create_task(finished(ids)), 0
    while not run.done():
        out["rss_max"] = max(out["rss_max"], proc_stat(daphne)[1])
        await asyncio.sleep(0.25)
    out["run_s"] = run.result()["wait_s"]
    out["run_cpu"] = 100 * (proc_stat(daphne)[0] - cpu1) / out["run_s"]
    await asyncio.sleep(1.5)  # the last fragments
    await asyncio.gather(*(ws.close() for ws in sockets))
    await asyncio.wait(tasks, timeout=30)
    peak = re.search(r"VmHWM:\s*(\d+)", Path(f"/proc/{daphne}/status").read_text())
    out["rss_max"] = max(out["rss_max"], int(peak[1]) / 1024)
    return out | latencies(views, run.result()["attempts"])


def met(part: dict, limit: float) -> bool:
    return pct(part["values"], 95) <= limit and not part["missed"]


def report(lat: dict, fan: dict, sca: dict, load: tuple[float, float]) -> str:
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    app = ["status", "--porcelain", "orders", "orderdash", "worker", "templates"]
    changed = subprocess.run([*git, *app], capture_output=True, text=True).stdout.strip()
    one, many = fan["per_s"][1], fan["per_s"][200]
    runs = ", ".join(f"{n}: {calls} in {s:.1f} s" for n, calls, s in fan["runs"])
    window = FANOUT_WINDOW[1] - FANOUT_WINDOW[0]
    rows = [
        ("1. attempt → page changed", "p95 ≤ 150 ms", stats(lat), met(lat, LATENCY_P95_S)),
        ("2. Temporal calls/s, 1 → 200 sockets", f"equal (± {FANOUT_NOISE} calls a window)",
         f"{one:.2f} → {many:.2f} ({runs})", (many - one) * window <= FANOUT_NOISE),
        ("3. attempt → message, 500 sockets", "p95 < 1 s", stats(sca), met(sca, SCALE_P95_S)),
        ("3. daphne memory, peak", f"< {RSS_MB} MB", f"{sca['rss_max']:.0f} MB (500 idle"
         f" sockets: {sca['rss_idle']:.0f} MB)", sca["rss_max"] < RSS_MB),
    ]  # fmt: skip
    return "\n".join(
        [
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit {head.stdout.strip()}"
            f"{' with local changes' if changed else ''}, {os.cpu_count()} cores, load"
            f" average {load[0]:.1f} before and {load[1]:.1f} after.",
            "",
            "| what | target | result | |",
            "| --- | --- | --- | --- |",
            *(f"| {w} | {t} | {r} | {'met' if ok else '**missed**'} |" for w, t, r, ok in rows),
            "",
            f"500 sockets connected in {sca['connect_s']:.1f} s; daphne CPU"
            f" {sca['idle_cpu']:.0f}% idle, {sca['run_cpu']:.0f}% while the orders ran"
            f" ({sca['run_s']:.1f} s).",
        ]
    )


async def run(stack: Stack) -> None:
    parts = {"latency": bench_latency, "fanout": bench_fanout, "scale": bench_scale}
    if (only := os.getenv("BENCH_ONLY", "")) not in ("", *parts):
        raise SystemExit(f"BENCH_ONLY is one of: {', '.join(parts)}")
    load, results = os.getloadavg()[0], {}
    for name, part in parts.items():
        if only in ("", name):
            log(f"{name} …")
            results[name] = await (part() if name == "fanout" else part(stack))
            if "values" in results[name]:
                log(f"  {stats(results[name])}")
    if not only:
        text = report(*results.values(), (load, os.getloadavg()[0]))
        doc = RESULTS.read_text()
        before, after = doc.split(MARKS[0])[0], doc.split(MARKS[1])[1]
        RESULTS.write_text(f"{before}{MARKS[0]}\n{text}\n{MARKS[1]}{after}")
        print(text)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-bench-"))
    try:
        stack = start_stack(workdir)
        try:
            os.environ.update(stack.env)  # this process: the stack's database and Temporal
            import django

            django.setup()
            asyncio.run(asyncio.wait_for(run(stack), timeout=900))
        finally:
            stack.stop(*stack.procs)
    except BaseException:
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
