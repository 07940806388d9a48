"""Prometheus's /metrics: the dashboard's numbers in the text exposition format.

A custom collector reads the database (orders/metrics.py) at scrape time instead of
counting in this process's memory, so every web process answers the same and a restart
loses nothing. `orderdash_worker_up` asks Temporal, as the page's worker pill does.
"""

from __future__ import annotations

from collections.abc import Iterator

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orders import metrics
from orders.access import refuse_scrape
from orders.temporal import WORKER_UP, worker_status


class OrderdashCollector(Collector):
    """Every metric read afresh from the database (and Temporal) on each scrape."""

    def collect(self) -> Iterator[Metric]:
        orders = GaugeMetricFamily(
            "orderdash_orders", "Orders by status and engine.", labels=["status", "engine"]
        )
        for (status, engine), count in metrics.orders_by_status_and_engine().items():
            orders.add_metric([status, engine], count)
        yield orders

        attempts = CounterMetricFamily(
            "orderdash_step_attempts",
            "Attempts at a service call, from the ledger, by service and the outcome each"
            " was first recorded with (an attempt recorded lost that answers late stays lost).",
            labels=["service", "outcome"],
        )
        for (service, outcome), count in metrics.attempts_by_service_and_outcome().items():
            attempts.add_metric([service, outcome], count)
        yield attempts

        yield GaugeMetricFamily(
            "orderdash_orders_in_flight",
            "Orders started and not waiting for anyone (pending or running, not lost).",
            value=metrics.orders_in_flight(),
        )
        up = async_to_sync(worker_status)() == WORKER_UP
        yield GaugeMetricFamily(
            "orderdash_worker_up",
            "1 when a worker polled the task queue in the last few seconds, else 0.",
            value=1 if up else 0,
        )


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OrderdashCollector())
    return generate_latest(registry)


@login_not_required  # a scraper has no session: refuse_scrape applies the rules itself
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if refused := refuse_scrape(request):
        return refused
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
