"""Monitoring in docker compose: Prometheus and Grafana, their provisioned files, and a
dashboard that asks for metrics the app really exposes. No Docker engine runs here, so
the files are read and checked against each other and against /metrics itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orders.prometheus import exposition

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "docs" / "monitoring"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def prometheus_config() -> dict:
    return yaml.safe_load((MONITORING / "prometheus.yml").read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((MONITORING / "grafana" / "dashboards" / "orderdash.json").read_text())


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((ROOT / source, target))
    return mounts


def default_of(value: str) -> str:
    """${NAME:-default} → default."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", str(value))
    return match.group(1) if match else str(value)


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_compose_runs_prometheus_and_grafana_on_loopback_with_their_files(compose, name):
    service = compose["services"][name]
    assert service["image"].split("/")[-1].startswith(name)
    assert service["restart"] == "unless-stopped"
    assert all(
        port.startswith(f"${{{name.upper()}_BIND:-127.0.0.1}}:") for port in service["ports"]
    )
    mounts = bind_mounts(service)
    assert mounts, f"{name} mounts no provisioning files"
    for source, _ in mounts:
        assert source.exists(), f"{source} is missing"


def test_grafana_is_provisioned_with_the_prometheus_source_and_the_dashboard(compose, dashboard):
    grafana = compose["services"]["grafana"]
    targets = {target: source for source, target in bind_mounts(grafana)}
    provisioning = targets["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "orderdash.yml").read_text())[
        "providers"
    ]
    dashboards_dir = targets[provider["options"]["path"]]
    assert (dashboards_dir / "orderdash.json").exists()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/orderdash.json"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
    # No default password: compose refuses to start without one.
    assert ":?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


def test_prometheus_scrapes_the_dashboard_with_the_token_and_every_worker(
    compose, prometheus_config
):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    web = jobs["orderdash"]
    assert web["metrics_path"] == "/metrics"
    assert web["static_configs"][0]["targets"] == ["web:8000"]
    secret = compose["services"]["prometheus"]["secrets"][0]
    assert web["authorization"]["credentials_file"] == secret["target"]
    assert compose["secrets"][secret["source"]] == {"environment": "METRICS_TOKEN"}
    app_env = compose["x-app"]["environment"]
    assert app_env["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")
    (workers,) = jobs["orderdash-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"]
    assert workers["port"] == int(default_of(app_env["WORKER_METRICS_PORT"]))
    assert app_env["WORKER_METRICS_HOST"] == "0.0.0.0"


def dashboard_metrics(prefix: str) -> set[str]:
    """The metric names the Grafana dashboard's queries ask for, with this prefix."""
    panels = json.loads((MONITORING / "grafana" / "dashboards" / "orderdash.json").read_text())
    return {
        name
        for panel in panels["panels"]
        for target in panel["targets"]
        for name in re.findall(rf"\b{prefix}\w+", target["expr"])
    }


def test_the_dashboard_asks_only_for_metrics_that_dashboard_exposes(db):
    """(The temporal_* ones are checked against a real worker in test_metrics.)"""
    exposed = set()
    for family in text_string_to_metric_families(exposition().decode()):
        exposed |= {sample.name for sample in family.samples}
    asked = dashboard_metrics("orderdash_")
    assert asked and asked <= exposed
