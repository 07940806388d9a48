"""One launcher for a local stack on this machine: `make run`, the tests, the screenshots.

A stack is the Temporal dev server, daphne, the supervised worker (`python -m worker`)
and the plain-script runner (`python -m worker.plain`), each started on demand. For the
production topology it also runs a throwaway PostgreSQL cluster and a Redis server, and
any number of web and worker processes, each under a name of its own:

    with LocalStack(env=throwaway_env(workdir, "demo"), log_dir=workdir) as stack:
        stack.start_temporal()          # in memory, on a free port
        stack.manage("migrate", "--no-input")
        stack.start_web()
        stack.start_worker()
        ...                             # stop(): web and workers first, Temporal last

        stack.start_postgres(); stack.start_redis()   # DATABASE_URL, REDIS_URL for children
        stack.start_web("web-2", port=free_port()); stack.start_worker("worker-2")

Each child gets the stack's environment, so a stack can point at its own database, task
queue and workflow id prefix without touching this process's settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEMPORAL = BIN / "temporal"
# daphne, exiting promptly when stopped (orderdash/web.py); then its arguments.
WEB_COMMAND = [sys.executable, "-m", "orderdash.web"]
ASGI_APP = "orderdash.asgi:application"
# Live workers re-poll every 2 s, so a stopped one shows as down within seconds.
WORKER_LIVENESS_CONFIG = 'matching.longPollExpirationInterval="2s"'
# A worker finishes the activities in hand for up to 20 s when stopped (worker/main.py).
STOP_TIMEOUT = 30.0
# What the app processes need while they stop: stopped after them, in this order.
BACKING_SERVICES = ("temporal", "redis", "postgres")
# PostgreSQL's "fast" shutdown: SIGTERM ("smart") would wait for every client to leave.
STOP_SIGNALS = {"postgres": signal.SIGINT}
# PostgreSQL refuses to run as root: as root, the cluster runs as this system user.
POSTGRES_USER = "postgres"
# A superuser `postgres` that logs in without a password: the cluster listens on loopback
# only and lives for one test session.
INITDB_OPTIONS = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"]
REDIS_NOTHING_KEPT = ["--save", "", "--appendonly", "no"]

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root in a container, with nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright (the browser tests, the topology test and the
    screenshots), closed on the way out. A missing browser fails, never skips."""
    from playwright.sync_api import sync_playwright  # a development requirement only

    assert CHROMIUM.exists(), "Chromium is missing: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 30,
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once something accepts connections on host:port, else raise RuntimeError.

    Given the process meant to listen there, fail as soon as it exits instead of waiting
    out the timeout (a taken port or a bad setting ends it within a second).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited ({process.returncode}) before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:g}s")


def wait_until_serving(address: str, timeout: float = 30) -> None:
    """Return once Temporal at host:port answers its health check, else raise RuntimeError.

    The dev server opens its port before its frontend is ready ("Frontend is not healthy
    yet"), so an open port is not enough for a client that wants to start workflows.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = subprocess.run(
            [str(TEMPORAL), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            timeout=10,
        )
        if health.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"Temporal at {address} not serving after {timeout:g}s")


def dev_server_command(
    port: int,
    db_file: Path | None = None,
    *,
    host: str = "127.0.0.1",
    ui_port: int | None = None,
    namespace: str | None = None,
) -> list[str]:
    """The Temporal dev server on host:port, errors only.

    In memory unless db_file is given; headless unless ui_port is given.
    """
    command = [str(TEMPORAL), "server", "start-dev", "--ip", host, "--port", str(port)]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_file is not None:
        # WAL with synchronous=normal: no fsync per commit, and still nothing lost when
        # the server is stopped or killed (only a power cut can lose the last commits).
        command += ["--db-filename", str(db_file)]
        command += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    if namespace is not None:
        command += ["--namespace", namespace]
    command += ["--log-level", "error", "--dynamic-config-value", WORKER_LIVENESS_CONFIG]
    return command


def postgres_program(name: str) -> str:
    """A PostgreSQL server program (initdb, postgres, pg_isready): on PATH, or in
    Debian's versioned folder, newest first."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install -y postgresql")
    return str(candidates[-1])


# Run by the interpreter of the stack (psycopg is a requirement), so no psql is needed.
CREATE_DATABASE = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as connection:
    connection.execute("CREATE DATABASE orderdash")
"""


def _is_zombie(pid: int) -> bool:
    """Dead, not yet reaped by its parent (a supervisor reaps it when it notices)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def run_manage(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python manage.py <args>` in a child process with its own environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def throwaway_env(workdir: Path, name: str) -> dict[str, str]:
    """Settings for a stack of its own: a fresh SQLite database and var dir in workdir,
    its own task queue. On a Temporal server shared with other databases, add a
    TEMPORAL_WORKFLOW_ID_PREFIX too: their order numbers, and so ids, overlap."""
    return {
        "DATABASE_URL": f"sqlite:///{workdir / f'{name}.sqlite3'}",
        "ORDERDASH_VAR_DIR": str(workdir),
        "TEMPORAL_TASK_QUEUE": f"{name}-{uuid.uuid4()}",
        "DEBUG": "true",
    }


class LocalStack:
    """The processes of one local stack, started on demand and stopped in order.

    env: settings for every child, over this process's environment.
    log_dir: each child writes to <log_dir>/<name>.log; None leaves them this terminal.
    host, web_port: where daphne serves (web_port None: a free port).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        log_dir: Path | None = None,
        host: str = "127.0.0.1",
        web_port: int | None = None,
    ) -> None:
        self.env: dict[str, str] = {"DJANGO_SETTINGS_MODULE": "orderdash.settings"}
        self.env |= os.environ | dict(env or {})
        self.log_dir = log_dir
        self.host = host
        self.web_port = web_port if web_port is not None else free_port()
        self.url = f"http://{host}:{self.web_port}"
        self.temporal_address: str | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._scratch: list[Path] = []  # throwaway folders removed by stop()

    # --- starting ----------------------------------------------------------------------

    def start_temporal(
        self,
        address: str | None = None,
        *,
        db_file: Path | None = None,
        ui_port: int | None = None,
        namespace: str | None = None,
        timeout: float = 60,
    ) -> str:
        """Start a dev server (address None: 127.0.0.1 on a free port), wait until it
        serves, and point the stack's later children at it. Returns its address."""
        if address is None:
            address = f"127.0.0.1:{free_port()}"
        host, _, port = address.rpartition(":")
        command = dev_server_command(
            int(port), db_file, host=host, ui_port=ui_port, namespace=namespace
        )
        process = self._spawn("temporal", command)
        wait_for_port(int(port), host, timeout, process=process)
        wait_until_serving(address, timeout)
        self.temporal_address = self.env["TEMPORAL_ADDRESS"] = address
        return address

    def start_postgres(self, timeout: float = 60) -> str:
        """A throwaway PostgreSQL cluster (initdb in a temporary folder) on a free loopback
        port, with an `orderdash` database; later children get its DATABASE_URL.

        As root the cluster belongs to, and runs as, the `postgres` system user that
        Debian's package creates: PostgreSQL refuses to run as root.
        """
        as_user = POSTGRES_USER if os.geteuid() == 0 else None
        folder = Path(tempfile.mkdtemp(prefix="orderdash-postgres-"))
        self._scratch.append(folder)
        if as_user is not None:
            shutil.chown(folder, as_user, as_user)
        data = folder / "data"
        subprocess.run(
            [postgres_program("initdb"), "-D", str(data), *INITDB_OPTIONS],
            user=as_user,
            check=True,
            capture_output=True,
        )
        port = free_port()
        listen = ["-h", "127.0.0.1", "-k", str(folder)]  # loopback, and its socket in there
        # Thrown away afterwards, so durability is not worth its fsyncs.
        options = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        process = self._spawn(
            "postgres",
            [postgres_program("postgres"), "-D", str(data), "-p", str(port), *listen, *options],
            user=as_user,
        )
        wait_for_port(port, timeout=timeout, process=process)
        admin = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        deadline = time.monotonic() + timeout
        while True:  # the port opens before the server accepts logins
            created = subprocess.run(
                [sys.executable, "-c", CREATE_DATABASE, admin], capture_output=True, text=True
            )
            if created.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create the database: {created.stderr}")
            time.sleep(0.2)
        self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{port}/orderdash"
        return self.env["DATABASE_URL"]

    def start_redis(self, timeout: float = 30) -> str:
        """A redis-server on a free loopback port, nothing persisted (it only carries the
        Channels layer); later children get its REDIS_URL."""
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server not found: apt-get install -y redis-server")
        port = free_port()
        process = self._spawn(
            "redis",
            [server, "--port", str(port), "--bind", "127.0.0.1", *REDIS_NOTHING_KEPT],
        )
        wait_for_port(port, timeout=timeout, process=process)
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        return self.env["REDIS_URL"]

    def start_web(
        self, name: str = "daphne", *, port: int | None = None, timeout: float = 30
    ) -> str:
        """daphne on host:port (default web_port); returns its URL once it accepts
        connections. More web processes: each under its own name and port."""
        port = self.web_port if port is None else port
        process = self._spawn(name, [*WEB_COMMAND, "-b", self.host, "-p", str(port), ASGI_APP])
        wait_for_port(port, self.host, timeout, process=process)
        return f"http://{self.host}:{port}"

    def start_worker(self, name: str = "worker") -> None:
        """The Temporal worker under its supervisor, which restarts it after a crash.

        Give a second one another name: both poll the same task queue.
        """
        self._spawn(name, [sys.executable, "-m", "worker"])

    def kill_supervised(self, name: str = "worker", timeout: float = 30) -> int:
        """Kill (SIGKILL: no goodbye) the process a supervisor currently runs; its pid.

        Waits for the child to exist first: after a kill the supervisor starts the next
        one only after its pause.
        """
        supervisor = self.processes[name]
        children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = children.read_text().split() if children.exists() else []
            alive = [int(pid) for pid in pids if not _is_zombie(int(pid))]
            if alive:
                os.kill(alive[0], signal.SIGKILL)
                return alive[0]
            time.sleep(0.05)
        raise RuntimeError(f"the {name} supervisor has no child process after {timeout:g}s")

    def start_plain(self) -> None:
        """The plain-script runner (the seed's fragile script), supervised the same way."""
        self._spawn("plain", [sys.executable, "-m", "worker.plain"])

    def manage(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 120) -> str:
        """`manage.py <args>` with the stack's settings; its output, or RuntimeError."""
        result = run_manage(self.env, *args, timeout=timeout)
        if result.returncode not in ok:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    # --- stopping ----------------------------------------------------------------------

    def stop_worker(self) -> None:
        self._stop("worker")

    def stop_plain(self) -> None:
        self._stop("plain")

    def stop_web(self) -> None:
        self._stop("daphne")

    def stop_temporal(self) -> None:
        """Stop the dev server; start_temporal() with the same address and db_file later
        brings the same workflows back."""
        self._stop("temporal")

    def stop_process(self, name: str) -> None:
        """Stop one named child gracefully (SIGTERM) and wait for it."""
        self._stop(name)

    def kill_process(self, name: str) -> None:
        """Kill one named child and everything it started (a supervisor and its worker)
        at once, with no chance to finish anything: a machine lost mid-batch."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: pgid == pid
        process.wait()

    def stop(self) -> None:
        """Stop everything: web and workers first, so they finish the calls in hand while
        Temporal and the databases still answer, then those. Safe to call twice."""
        others = [name for name in self.processes if name not in BACKING_SERVICES]
        for name in others:
            self._signal(name)
        for name in others:
            self._stop(name)
        for name in BACKING_SERVICES:
            self._stop(name)
        for log in self._logs:
            log.close()
        self._logs.clear()
        for folder in self._scratch:
            shutil.rmtree(folder, ignore_errors=True)
        self._scratch.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            self.print_log_tails()
        self.stop()

    # --- watching ----------------------------------------------------------------------

    def exited(self) -> tuple[str, int] | None:
        """The first child that stopped by itself, with its exit status; None if all run."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def log_tail(self, name: str, lines: int = 15) -> str:
        if self.log_dir is None or not (self.log_dir / f"{name}.log").exists():
            return ""
        text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def print_log_tails(self) -> None:
        """What each child said last: the reason a start or a run failed is usually there."""
        names = sorted(path.stem for path in self.log_dir.glob("*.log")) if self.log_dir else []
        for name in names:
            if tail := self.log_tail(name):
                print(f"--- last lines of the {name} log", tail, sep="\n", file=sys.stderr)

    # --- the processes -----------------------------------------------------------------

    def _spawn(
        self, name: str, command: list[str], *, user: str | None = None
    ) -> subprocess.Popen[bytes]:
        if name in self.processes:
            raise RuntimeError(f"{name} is already running")
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            output = (self.log_dir / f"{name}.log").open("ab")
            self._logs.append(output)
        self.processes[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            # Its own session: a Ctrl-C in the terminal reaches only the launcher, which
            # then stops its children in order instead of all at once.
            start_new_session=True,
            user=user,
        )
        return self.processes[name]

    def _signal(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(STOP_SIGNALS.get(name, signal.SIGTERM))

    def _stop(self, name: str) -> None:
        self._signal(name)
        process = self.processes.pop(name, None)
        if process is None:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
