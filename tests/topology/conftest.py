"""The production topology on one machine: a throwaway PostgreSQL cluster and Redis
server, two daphne processes and two supervised workers, with the environment
docker-compose.yml gives its containers (DEBUG and DEMO_MODE off, static files collected
and served by WhiteNoise under hashed names), on the session's Temporal dev server.

What differs from compose is only where things are (loopback ports instead of service
names) and the HTTPS switches: no TLS proxy stands in front here, so the four settings
that need one are off, as they would be for a plain-http deployment.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from orderdash.stack import LocalStack, chromium, free_port
from tests.topology.compose import app_environment

OPERATOR = "opal"
OPERATOR_PASSWORD = secrets.token_urlsafe(16)
# What .env gives compose: the required secrets.
DOTENV = {
    "SECRET_KEY": secrets.token_urlsafe(48),
    "APP_DB_PASSWORD": "unused-here",
    "TEMPORAL_DB_PASSWORD": "unused-here",
    "METRICS_TOKEN": secrets.token_urlsafe(24),
    "GRAFANA_ADMIN_PASSWORD": "unused-here",
}
# HTTPS needs the proxy in front; on loopback without one these are off.
PLAIN_HTTP = {
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}


class Topology(LocalStack):
    """Two web processes (web-1, web-2) and two workers (worker-1, worker-2) on one
    PostgreSQL database and one Redis."""

    web_urls: list[str]

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Rows from the app's database, read from the test process."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def log(self, name: str) -> str:
        """Everything a child has written so far."""
        assert self.log_dir is not None
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def production_env(workdir, temporal_address: str) -> dict[str, str]:
    env = app_environment(DOTENV) | PLAIN_HTTP
    return env | {
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": f"topology-{uuid.uuid4()}",
        "TEMPORAL_WORKFLOW_ID_PREFIX": f"topo{uuid.uuid4().hex[:8]}-",
        "ORDERDASH_VAR_DIR": str(workdir),
        "STATIC_ROOT": str(workdir / "static"),
        "DJANGO_SUPERUSER_PASSWORD": OPERATOR_PASSWORD,
    }


@pytest.fixture(scope="session")
def topology(temporal_server, tmp_path_factory) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("topology")
    with Topology(env=production_env(workdir, temporal_server), log_dir=workdir) as stack:
        stack.start_postgres()
        stack.start_redis()
        # The procedure of the README's production section, in its order.
        stack.manage("collectstatic", "--no-input", "-v0")
        stack.manage("migrate", "--no-input", "-v0")
        stack.manage("seed_demo")
        stack.manage("createsuperuser", "--no-input", "--username", OPERATOR, "--email", "o@x.io")
        stack.start_worker("worker-1")
        stack.start_worker("worker-2")
        stack.web_urls = [
            stack.start_web("web-1", port=free_port()),
            stack.start_web("web-2", port=free_port()),
        ]
        yield stack


@pytest.fixture(scope="module")
def topology_browser():
    """Chromium for one module: closed before the e2e tests start their own."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    with chromium() as browser:
        yield browser


@pytest.fixture
def logged_in(topology_browser, topology):
    """A browser context logged in on web-1; the session cookie is good on web-2 too
    (cookies are per host, not per port), as behind one proxy."""
    context = topology_browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(topology.web_urls[0] + "/accounts/login/")
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(topology.web_urls[0] + "/")
    page.close()
    yield context
    context.close()
