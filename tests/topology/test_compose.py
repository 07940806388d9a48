"""docker-compose.yml, checked by structure (no Docker engine runs in CI), and the
settings it gives the app checked by Django's own deployment checks."""

from __future__ import annotations

import os
import re
import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from orderdash.stack import ASGI_APP, ROOT, run_manage
from tests.topology.compose import COMPOSE_FILE, app_environment, load_compose, resolve
from tests.topology.conftest import DOTENV, PLAIN_HTTP, production_env

SERVICES = load_compose()["services"]
# Started by plain `docker compose up` (not behind a profile).
DEFAULT_SERVICES = {name: spec for name, spec in SERVICES.items() if not spec.get("profiles")}


def test_compose_runs_what_the_topology_test_runs():
    assert {"db", "redis", "migrate", "web", "worker", "temporal"} <= DEFAULT_SERVICES.keys()
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    # The launcher's web command: daphne through orderdash/web.py.
    assert SERVICES["web"]["command"][:3] == ["python", "-m", "orderdash.web"]
    assert SERVICES["web"]["command"][-1] == ASGI_APP
    assert SERVICES["worker"]["command"] == ["python", "-m", "worker"]
    env = app_environment(DOTENV)
    assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    # DEBUG and DEMO_MODE are not left to .env.
    assert SERVICES["web"]["environment"]["DEBUG"] == "false"
    assert SERVICES["web"]["environment"]["DEMO_MODE"] == "false"


def test_the_topology_test_changes_only_addresses_and_the_https_switches(tmp_path):
    compose = app_environment(DOTENV)
    tested = production_env(tmp_path, "127.0.0.1:7233")
    changed = {name for name in compose if tested[name] != compose[name]}
    addresses = {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "TEMPORAL_TASK_QUEUE"}
    assert changed <= addresses | PLAIN_HTTP.keys()


@pytest.mark.parametrize("name", ["db", "redis", "temporal", "temporal-postgresql", "web"])
def test_long_running_services_have_a_healthcheck(name):
    assert SERVICES[name]["healthcheck"]["test"]


def test_migrate_runs_once_before_web_and_workers():
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    assert "manage.py migrate --no-input" in "\n".join(migrate["command"])
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_no_secret_has_a_default_and_none_is_missing_silently():
    text = COMPOSE_FILE.read_text()
    secrets = set(re.findall(r"\$\{(\w*(?:PASSWORD|SECRET|TOKEN)\w*)", text))
    assert secrets == {
        "SECRET_KEY",
        "APP_DB_PASSWORD",
        "TEMPORAL_DB_PASSWORD",
        "METRICS_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
    }
    for name in secrets:
        # Every use is the required form, `${NAME:?message}`.
        assert re.findall(rf"\$\{{{name}([^}}]*)\}}", text), name
        assert all(use.startswith(":?") for use in re.findall(rf"\$\{{{name}([^}}]*)\}}", text))
    for name in secrets:
        with pytest.raises(KeyError, match=name):
            resolve({key: value for key, value in DOTENV.items() if key != name})
    resolve(DOTENV)  # and with all of them given, nothing else is required
    # No demo admin either (DEMO_MODE is off): the first user comes from createsuperuser.
    assert "createsuperuser" in text


def test_only_the_web_port_is_published():
    published = {name for name, spec in DEFAULT_SERVICES.items() if spec.get("ports")}
    assert published == {"web"}


def test_the_worker_scales_with_scale_worker_n():
    worker = SERVICES["worker"]
    # A fixed name, host name or host port would make a second replica fail to start.
    assert not {"container_name", "hostname", "ports"} & worker.keys()
    # Time to finish the activities in hand (worker/main.py gives them 20 s) on a stop.
    assert worker["stop_grace_period"] == "30s"


def check_deploy(environment: dict[str, str]):
    env = os.environ | environment
    return run_manage(env, "check", "--deploy", "--fail-level", "WARNING")


def test_check_deploy_with_the_compose_environment_prints_no_warning():
    result = check_deploy(app_environment(DOTENV))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


def test_check_deploy_warns_when_the_https_switches_are_off():
    result = check_deploy(app_environment(DOTENV) | PLAIN_HTTP)
    assert result.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SECURE_SSL_REDIRECT", "maybe", "SECURE_SSL_REDIRECT must be true or false"),
        ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS must be a whole number"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS must be 0"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "must be HEADER,value"),
        ("SESSION_COOKIE_SECURE", "yes please", "SESSION_COOKIE_SECURE must be true or false"),
    ],
)
def test_a_bad_https_setting_stops_the_process_with_a_clear_message(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=says):
        runpy.run_path(str(ROOT / "orderdash" / "settings.py"))


def test_the_proxy_header_becomes_the_request_header_django_reads(monkeypatch):
    monkeypatch.setenv("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto, https")
    settings = runpy.run_path(str(ROOT / "orderdash" / "settings.py"))
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
