"""Throughput, `make bench-throughput` (BENCH_ORDERS=N, default 300), on one Temporal dev server:

1. bare SDK: N workflows of six no-op activities (bench/bare_workflow.py), all started at once
   on a worker in this process; rate = N / (first start → last result);
2. the stack: daphne and one worker process on a throwaway SQLite; N orders POSTed to
   /orders/new/ as the page does; rate = N / (first POST → every order final in SQLite);
3. the bare SDK again. The dev server slows down as its in-memory history grows (the same
   bare run, repeated five times on one server, went from 20.5 to 16.3 workflows/s), so
   the stack, measured second, is compared with the mean of the bare runs either side.

BENCH_DATABASE=postgres runs the stack on a throwaway PostgreSQL cluster (orderdash/stack.py)
instead of SQLite; WORKER_ACTIVITY_THREADS sets the worker's threads as in production.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from orderdash.stack import (  # noqa: E402
    LocalStack,
    dev_server_command,
    free_port,
    run_manage,
    wait_for_port,
)

BIN = Path(sys.executable).parent
N = int(os.getenv("BENCH_ORDERS", "300"))
WARMUP = 5
HTTP_CLIENTS = 8
ACTIVITY_THREADS = 32  # as worker/main.py
DEADLINE_S = 60 + N  # for each timed run to finish; a healthy one needs a fraction of it
DATABASE = os.getenv("BENCH_DATABASE", "sqlite")
# Seconds from an attempt's start to its ledger row, in each database's dialect.
ROW_SECONDS = {
    "sqlite": "86400 * (julianday(created_at) - julianday(started_at))",
    "postgres": "EXTRACT(EPOCH FROM created_at - started_at)",
}
FINAL = "'completed','completed_with_warnings','failed','cancelled'"
ORDER_FORM = urllib.parse.urlencode(
    {"product": "CB-04", "quantity": 1, "customer_name": "Bench", "email": "bench@example.com"}
    | {"phone": "+44 20 7946 0000", "address": "1 Loopback Lane", "engine": "temporal"}
).encode()
POST_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"}
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
# The one place that knows the product model's import path.
RAISE_STOCK = (
    "from orders.simulator.models import Product;"
    " Product.objects.filter(sku='CB-04').update(stock=100000)"
)
# DEBUG is off, as in production: static files are served only once collected.
SETUP = (
    ("collectstatic", "--no-input", "-v0"),
    ("migrate", "--no-input", "-v0"),
    ("seed_demo",),
    ("shell", "-c", RAISE_STOCK),
)


def wait_until_serving(address: str, timeout: float = 30) -> None:
    """The port opens before the frontend is ready (as tests/conftest.py)."""
    health = [str(BIN / "temporal"), "operator", "cluster", "health", "--address", address]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(health, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"Temporal at {address} not serving after {timeout}s")


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid: int) -> float:
    """A server and its live children (PostgreSQL runs a process per connection)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Stack:
    """Child processes with logs in a temp dir, and the bench SQLite file read directly."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.db_path = workdir, workdir / "bench.sqlite3"
        self.temporal_port, self.web_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.temporal_port}"
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "orderdash.settings",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "ORDERDASH_VAR_DIR": str(workdir),
            "STATIC_ROOT": str(workdir / "static"),
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_TASK_QUEUE": f"bench-{uuid.uuid4()}",
            "DEBUG": "false",
            # Measured as a demo runs: no login in front of the order form.
            "DEMO_MODE": "true",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "LOG_LEVEL": "WARNING",
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.db: sqlite3.Connection | None = None
        self.database_server: int | None = None  # PostgreSQL's pid, when BENCH_DATABASE=postgres

    def spawn(self, name: str, *args: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def cpu(self, since: dict[str, float] | None = None) -> dict[str, float]:
        """CPU seconds of this process ("bench") and of each child, less `since`."""
        pids = {"bench": "self"} | {name: p.pid for name, p in self.processes.items()}
        spent = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if self.database_server is not None:
            spent["postgres"] = server_cpu_seconds(self.database_server)
        return {name: seconds - (since or {}).get(name, 0) for name, seconds in spent.items()}

    def connect(self) -> None:
        """The bench's own connection to the stack's database, autocommitting."""
        if DATABASE == "postgres":
            import psycopg

            self.db = psycopg.connect(self.env["DATABASE_URL"], autocommit=True)
        else:
            self.db = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)

    def sql(self, query: str, *params: object) -> tuple:
        """The first row of a query on the bench database (parameters written as ?)."""
        if DATABASE == "postgres":
            query = query.replace("?", "%s")
        return self.db.execute(query, params).fetchone()

    def close(self, failed: bool) -> None:
        if self.db is not None:
            self.db.close()
        for process in reversed(self.processes.values()):  # worker, daphne, then Temporal
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for name in self.processes if failed else ():
            lines = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
            print(f"--- last lines of {name}.log ---", *lines[-20:], sep="\n", file=sys.stderr)


async def bare_sdk(stack: Stack, n: int) -> tuple[float, dict[str, float]]:
    """Seconds and CPU seconds for n bare workflows on a worker in this process, warmed up."""
    from bare_workflow import STEPS, BareWorkflow, noop
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(stack.address)
    queue = f"bare-{uuid.uuid4()}"

    async def run(count: int) -> None:
        start = client.execute_workflow
        ids = [f"{queue}-{uuid.uuid4()}" for _ in range(count)]
        await asyncio.gather(*(start(BareWorkflow.run, STEPS, id=i, task_queue=queue) for i in ids))

    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        options = {"activity_executor": executor, "max_concurrent_activities": ACTIVITY_THREADS}
        async with Worker(
            client, task_queue=queue, workflows=[BareWorkflow], activities=[noop], **options
        ):
            await run(WARMUP)
            cpu, started = stack.cpu(), time.monotonic()
            await run(n)
            return time.monotonic() - started, stack.cpu(since=cpu)


def request(port: int, path: str, body: bytes | None = None, headers: dict | None = None):
    """GET, or POST with a body, on a connection of its own; raises on a 4xx or 5xx."""
    url = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers or {})
    with HTTP.open(url, timeout=30) as response:
        response.read()
    return response


def place_and_wait(stack: Stack, count: int) -> tuple[int, float]:
    """POST count orders, wait until all are final: (the last id before them, seconds)."""
    cookie = SimpleCookie()  # as the page: the CSRF cookie from GET /, sent back with its token
    for header in request(stack.web_port, "/").headers.get_all("Set-Cookie") or []:
        cookie.load(header)
    token = cookie["csrftoken"].value
    headers = POST_HEADERS | {"Cookie": f"csrftoken={token}", "X-CSRFToken": token}
    post = (stack.web_port, "/orders/new/", ORDER_FORM, headers)
    (before,) = stack.sql("SELECT coalesce(max(id), 0) FROM orders_order")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=HTTP_CLIENTS) as pool:
        list(pool.map(lambda _: request(*post), range(count)))
    while stack.sql(f"SELECT count(*) FROM orders_order WHERE status NOT IN ({FINAL})")[0]:
        if time.monotonic() - started > DEADLINE_S:
            raise RuntimeError(f"orders not all final after {DEADLINE_S}s")
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    placed, bad = stack.sql(
        "SELECT count(*), coalesce(sum(CASE WHEN status IN ('failed','cancelled')"
        " OR start_error != '' THEN 1 ELSE 0 END), 0) FROM orders_order WHERE id > ?",
        before,
    )
    if placed != count or bad:
        raise RuntimeError(f"{placed} of {count} orders placed; {bad:.0f} failed or not started")
    return before, elapsed


def diagnostics(stack: Stack, after: int) -> list[str]:
    """The ledger (simulator_servicecall) of the orders after id `after`: rows, time, retries."""

    def count(condition: str) -> str:
        return f"coalesce(sum(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"

    retry, error = "attempt > 1", "outcome = 'error'"
    replay = "attempt > 1 AND outcome = 'replayed'"
    rows, call_ms, row_s, max_row_s, retried, retries, replayed, errors = stack.sql(
        "SELECT count(*), avg(duration_ms), avg(s), max(s),"
        " count(DISTINCT CASE WHEN attempt > 1 THEN order_id END),"
        f" {count(retry)}, {count(replay)}, {count(error)}"
        f" FROM (SELECT *, {ROW_SECONDS[DATABASE]} AS s FROM simulator_servicecall"
        " WHERE order_id > ?) AS calls",
        after,
    )
    return [
        f"ledger rows per order: {rows / N:.2f}; service call avg {call_ms:.0f} ms;"
        f" attempt start → its ledger row avg {row_s:.2f} s, max {max_row_s:.1f} s",
        f"orders with a step tried more than once: {retried}; retry rows: {retries:.0f},"
        f" {replayed:.0f} of them replayed (effect already done); error rows: {errors:.0f}",
    ]


def per_run(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds / N * 1000:.0f} ms" for name, seconds in cpu.items())


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-throughput-"))
    stack, failed, backing = Stack(workdir), True, None
    try:
        print(f"N={N}; Temporal on {stack.address}; migrating a fresh {DATABASE}", flush=True)
        stack.spawn("temporal", *dev_server_command(stack.temporal_port))
        if DATABASE == "postgres":
            backing = LocalStack(env=stack.env, log_dir=workdir)
            backing.start_postgres()
            stack.env["DATABASE_URL"] = backing.env["DATABASE_URL"]
            stack.database_server = backing.processes["postgres"].pid
        for args in SETUP:
            if (done := run_manage(stack.env, *args)).returncode:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
        stack.connect()
        wait_for_port(stack.temporal_port)
        wait_until_serving(stack.address)
        print("bare SDK: warm-up, then timed", flush=True)
        bare = [asyncio.run(asyncio.wait_for(bare_sdk(stack, N), DEADLINE_S))]

        print("stack: daphne and one worker; warm-up, then timed", flush=True)
        web = ("-b", "127.0.0.1", "-p", str(stack.web_port), "orderdash.asgi:application")
        stack.spawn("daphne", str(BIN / "daphne"), *web)
        stack.spawn("worker", sys.executable, "-m", "worker", "--once")
        wait_for_port(stack.web_port)
        place_and_wait(stack, WARMUP)
        cpu = stack.cpu()
        after, stack_s = place_and_wait(stack, N)
        cpu = stack.cpu(since=cpu)
        print("bare SDK again: warm-up, then timed", flush=True)
        bare.append(asyncio.run(asyncio.wait_for(bare_sdk(stack, N), DEADLINE_S)))

        (before_s, before_cpu), (after_s, _) = bare
        bare_rate, stack_rate = (N / before_s + N / after_s) / 2, N / stack_s
        report = [
            f"bare SDK, 6 no-op activities: {N / before_s:.1f}/s before the stack,"
            f" {N / after_s:.1f}/s after it; mean {bare_rate:.1f}/s",
            f"stack, POST → all final in {DATABASE}: {N} in {stack_s:.1f} s = {stack_rate:.2f}/s",
            f"stack / bare: {stack_rate / bare_rate:.3f}"
            f" (against the first bare run alone: {stack_rate * before_s / N:.3f})",
            f"CPU per bare workflow: {per_run(before_cpu)} (bench = client + worker; first run)",
            f"CPU per order: {per_run(cpu)} (bench = HTTP clients + polling);"
            f" worker busy {cpu['worker'] / stack_s:.0%} of a core",
            *diagnostics(stack, after),
        ]
        print(f"\nThroughput, N={N} ({os.cpu_count()} CPUs)", *report, sep="\n  ")
        failed = False
    finally:
        stack.close(failed)
        if backing is not None:
            backing.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
