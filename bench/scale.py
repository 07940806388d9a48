"""Scale, `make bench-scale` (BENCH_HISTORY=N orders, default 100000; BENCH_RUNS, 7):

1. seeds N orders of history (`seed_demo --history N`) into a throwaway SQLite file;
2. times the admin (order list, one order's page, every filter of the order list and
   the ledger's), `manage.py audit` (and counts its queries) and the dashboard's pages
   with Django's test client, logged in as a superuser: median and max of BENCH_RUNS;
3. starts daphne on that database with one board websocket open for 20 s and reads the
   web process's CPU time from /proc (the idle cost of a live board);

and prints each figure beside its target. Exits 1 when any misses its target.
`BENCH_DB=path` reuses a database seeded before (steps 2 and 3 only).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from orderdash.stack import LocalStack, throwaway_env  # noqa: E402

HISTORY = int(os.getenv("BENCH_HISTORY", "100000"))
RUNS = int(os.getenv("BENCH_RUNS", "7"))
IDLE_S = 20.0
# Targets, in seconds (CPU: share of one core).
SEED_TARGET = 60.0
ADMIN_TARGET = 0.300
AUDIT_TARGET = 20.0
AUDIT_QUERIES_TARGET = 20
BOARD_TARGET = 0.100
IDLE_CPU_TARGET = 0.02


@dataclass
class Figure:
    name: str
    value: float
    target: float
    unit: str = "ms"
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.target

    def line(self) -> str:
        scale = {"ms": 1000, "s": 1, "%": 100, "queries": 1}[self.unit]
        shown = f"{self.value * scale:,.0f} {self.unit}"
        if self.unit == "s":
            shown = f"{self.value:.1f} s"
        if self.unit == "%":
            shown = f"{self.value * 100:.2f} %"
        target = f"{self.target * scale:,.{1 if self.unit == '%' else 0}f} {self.unit}"
        verdict = "ok" if self.met else "MISSED"
        return f"  {self.name:<44} {shown:>12}  (target {target}) {verdict} {self.detail}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(fetch: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median and max of `runs` timings after one warm-up, and the median CPU time this
    process spent (on a shared machine, the wall time also holds the waits for a core)."""
    fetch()
    times, cpu = [], []
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        fetch()
        times.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return statistics.median(times), max(times), statistics.median(cpu)


def setup_django(db_path: Path, workdir: Path) -> dict[str, str]:
    env = throwaway_env(workdir, "scale") | {
        "DATABASE_URL": f"sqlite:///{db_path}",
        "DEMO_MODE": "false",  # the board as an operator sees it: logged in
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    }
    os.environ.update(env | {"DJANGO_SETTINGS_MODULE": "orderdash.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    # DEBUG is off, as in production: static files are served only once collected.
    call_command("collectstatic", "--no-input", verbosity=0)
    return env


def seed(history: int) -> Figure:
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)
    began, began_cpu = time.perf_counter(), time.process_time()
    call_command("seed_demo", "--history", str(history), stdout=io.StringIO(), stderr=io.StringIO())
    took, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return Figure(f"seed_demo --history {history}", took, SEED_TARGET, "s", f"(CPU {cpu:.1f} s)")


def audit() -> list[Figure]:
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    began, began_cpu = time.perf_counter(), time.process_time()
    with CaptureQueriesContext(connection) as queries:
        try:
            call_command("audit", stdout=io.StringIO(), stderr=io.StringIO())
            verdict = "every order adds up"
        except SystemExit:
            verdict = "some orders don't add up"
    took, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return [
        Figure("manage.py audit", took, AUDIT_TARGET, "s", f"({verdict}; CPU {cpu:.1f} s)"),
        Figure("manage.py audit: queries", len(queries), AUDIT_QUERIES_TARGET, "queries"),
    ]


def pages() -> list[Figure]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    from orders.contract import OrderStatus
    from orders.models import Order

    setup_test_environment()
    users = get_user_model().objects
    user = users.filter(is_superuser=True).first() or users.create_superuser(
        "bench", "bench@example.com", os.urandom(8).hex()
    )
    client = Client()
    client.force_login(user)
    orders = Order.objects.order_by("pk")
    middle = orders.filter(status=OrderStatus.COMPLETED)[orders.count() // 2 :].first()
    order = middle or orders.last()
    admin = "/admin/orders/order/"
    ledger = "/admin/simulator/servicecall/"
    urls = {
        "admin: order list": (admin, ADMIN_TARGET),
        "admin: one order's page": (f"{admin}{order.pk}/change/", ADMIN_TARGET),
        "admin: orders, status=failed": (f"{admin}?status__exact=failed", ADMIN_TARGET),
        "admin: orders, engine=plain": (f"{admin}?engine__exact=plain", ADMIN_TARGET),
        "admin: orders, effects don't add up": (f"{admin}?effects=broken", ADMIN_TARGET),
        "admin: orders, effects add up": (f"{admin}?effects=ok", ADMIN_TARGET),
        "admin: orders, product": (f"{admin}?product__id__exact={order.product_id}", ADMIN_TARGET),
        "admin: orders, placed this month": (
            f"{admin}?created_at__gte={_month_start()}",
            ADMIN_TARGET,
        ),
        "admin: orders, search a customer": (f"{admin}?q=Lovelace", ADMIN_TARGET),
        "admin: ledger": (ledger, ADMIN_TARGET),
        "admin: ledger, outcome=error": (f"{ledger}?outcome__exact=error", ADMIN_TARGET),
        "admin: ledger, service=payment": (f"{ledger}?service__exact=payment", ADMIN_TARGET),
        "admin: ledger, operation=refund": (f"{ledger}?operation__exact=refund", ADMIN_TARGET),
        "admin: operator actions": ("/admin/orders/operatoraction/", ADMIN_TARGET),
        "admin: operator actions, refused": (
            "/admin/orders/operatoraction/?accepted__exact=0",
            ADMIN_TARGET,
        ),
        "board: /": ("/", BOARD_TARGET),
        "board: /?status=failed": ("/?status=failed", BOARD_TARGET),
        "board: /orders/<n>/": (f"/orders/{order.pk}/", BOARD_TARGET),
        "board: /?state=retrying&service=payment": (
            "/?state=retrying&service=payment",
            BOARD_TARGET,
        ),
        "board: /?engine=plain&q=Hopper": ("/?engine=plain&q=Hopper", BOARD_TARGET),
    }
    figures = []
    for name, (url, target) in urls.items():
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        median, worst, cpu = timed(lambda url=url: client.get(url), RUNS)
        size = len(response.content) / 1024
        detail = f"(max {worst * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms, {size:.0f} KB)"
        figures.append(Figure(name, median, target, detail=detail))
        log(figures[-1].line())
    return figures


def _month_start() -> str:
    """The admin date filter's own "this month" value, quoted for a URL."""
    from urllib.parse import quote

    from django.utils import timezone

    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return quote(str(start))


async def _watch_board(url: str, origin: str, cookie: str, seconds: float) -> int:
    from websockets.asyncio.client import connect

    messages = 0
    async with connect(
        url, origin=origin, additional_headers={"Cookie": cookie}, ping_interval=None
    ) as ws:
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                await asyncio.wait_for(ws.recv(), left)
                messages += 1
            except TimeoutError:
                break
    return messages


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def idle_board(env: dict[str, str], workdir: Path) -> Figure:
    """daphne on the seeded database, one board socket open: CPU over IDLE_S seconds."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.filter(is_superuser=True).first())
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    with LocalStack(env, log_dir=workdir) as stack:
        stack.start_temporal()
        stack.start_web()
        pid = stack.processes["daphne"].pid
        origin = stack.url
        ws_url = f"{origin.replace('http', 'ws')}/ws/orders/"
        # The first seconds load the board and its snapshot: measure the steady state.
        asyncio.run(_watch_board(ws_url, origin, cookie, 3))

        async def watch() -> tuple[int, float, float]:
            task = asyncio.create_task(_watch_board(ws_url, origin, cookie, IDLE_S + 3))
            await asyncio.sleep(3)
            cpu, began = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(IDLE_S)
            used, spent = cpu_seconds(pid) - cpu, time.monotonic() - began
            return await task, used, spent

        messages, used, spent = asyncio.run(watch())
    return Figure(
        "live board idle, web process CPU",
        used / spent,
        IDLE_CPU_TARGET,
        "%",
        f"({used:.2f} s CPU in {spent:.0f} s, {messages} message(s))",
    )


def main() -> int:
    reuse = os.getenv("BENCH_DB")
    (ROOT / "var").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-scale-", dir=ROOT / "var"))
    db_path = Path(reuse) if reuse else workdir / "scale.sqlite3"
    try:
        env = setup_django(db_path, workdir)
        figures = []
        if not reuse:
            log(f"Seeding {HISTORY:,} orders of history into {db_path} …")
            figures.append(seed(HISTORY))
            log(figures[-1].line())
        log(f"Timing each page {RUNS} times (median, max), logged in as a superuser …")
        figures += pages()
        log("Auditing …")
        figures += audit()
        log(f"A live board on daphne for {IDLE_S:.0f} s …")
        figures.append(idle_board(env, workdir))
        from orders.models import Order

        total = Order.objects.count()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nScale at {total:,} orders ({os.cpu_count()} cores, load {_load()}):")
    for figure in figures:
        print(figure.line())
    missed = [f.name for f in figures if not f.met]
    print(f"\n{len(figures) - len(missed)} of {len(figures)} figures within target.")
    return 1 if missed else 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
