"""Orders, the board and the worker status as the HTML fragments the live page swaps in.

Every fragment's root element has a stable id, so htmx swaps it out of band wherever it
arrives: in a page, or over a websocket.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q
from django.http import QueryDict
from django.template.loader import render_to_string

from orders.board import BoardFilter, board_page, parse_filter, retimed
from orders.charts import stacked_bars
from orders.contract import OrderStatus, Service
from orders.metrics import Ending, Metrics
from orders.models import Order
from orders.progress import OrderSnapshot
from orders.simulator.models import MODE_HELP, Mode, ServiceSwitch


def render_order(snapshot: OrderSnapshot, worker: str, ledger_cache: dict | None = None) -> str:
    """The order's fragment. With a cache (one per watched order) the ledger and timeline
    parts, most of the rendering work, are rendered again only when they changed."""
    context = {"snapshot": snapshot, "worker": worker, "oob": True}
    if ledger_cache is not None:
        key = _ledger_key(snapshot)
        if ledger_cache.get("key") != key:
            ledger_cache["key"] = key
            ledger_cache["html"] = render_to_string(
                "orders/partials/order_ledger.html", {"snapshot": snapshot}
            )
        context["ledger_html"] = ledger_cache["html"]
        key = _timeline_key(snapshot)
        if ledger_cache.get("timeline_key") != key:
            ledger_cache["timeline_key"] = key
            ledger_cache["timeline_html"] = render_timeline(snapshot)
        context["timeline_html"] = ledger_cache["timeline_html"]
    return render_to_string("orders/partials/order_detail.html", context)


def _ledger_key(snapshot: OrderSnapshot) -> tuple:
    # Everything order_ledger.html shows; a ledger row's other fields never change.
    audit = snapshot.audit
    return (
        snapshot.order.is_final,
        tuple(service.line for service in audit.services) if audit else None,
        tuple(audit.problems) if audit else None,
        tuple((c.id, c.outcome, c.error, c.duration_ms) for c in snapshot.calls),
    )


def render_timeline(snapshot: OrderSnapshot) -> str:
    """The order's attempts on a time axis (orders/timeline.py), part of its fragment."""
    context = {"timeline": snapshot.timeline}
    return render_to_string("orders/partials/order_timeline.html", context)


def _timeline_key(snapshot: OrderSnapshot) -> tuple:
    # The ledger's attempts and the retries Temporal has scheduled: all the timeline draws.
    return (
        tuple((c.id, c.outcome, c.duration_ms) for c in snapshot.calls),
        tuple(step.next_retry_at for step in snapshot.steps),
    )


def waiting() -> dict[str, int]:
    """Orders waiting: for Temporal (queued), and for an operator (approval)."""
    counts = Order.objects.filter(
        status__in=[OrderStatus.QUEUED, OrderStatus.AWAITING_APPROVAL]
    ).aggregate(
        queued=Count("id", filter=Q(status=OrderStatus.QUEUED)),
        awaiting=Count("id", filter=Q(status=OrderStatus.AWAITING_APPROVAL)),
    )
    return {"queued": counts["queued"], "awaiting": counts["awaiting"]}


def render_status(worker: str) -> str:
    """The header's worker pill and banners, with the orders waiting (queued, approval)."""
    context = {"worker": worker, "oob": True} | waiting()
    return render_to_string("orders/partials/worker_status.html", context)


def switches_context() -> dict:
    return {
        "switches": list(ServiceSwitch.objects.order_by("id")),
        "modes": Mode.values,
        "mode_help": MODE_HELP,
    }


def board_context(board_filter: BoardFilter | None = None, page: int = 1) -> dict:
    """The switches and one page of the board, filtered or not."""
    return switches_context() | board_page(board_filter or BoardFilter(), page)


@dataclass
class BoardList:
    """One watched board's list as rendered, and the page it was rendered from."""

    html: str
    ticking: bool  # it shows an order on a step: its time there grows, stuck or not
    page: dict  # the rows read from the database (board_page), to render again as time passes


def render_order_list(query: str = "", page: dict | None = None) -> BoardList:
    """The board as a socket watching these query parameters (filter and page) sees it.

    With the page read before (the hub knows nothing in the database moved since) only
    the rows' times and stuck marks are taken again, after one query that checks its
    rows (board.retimed): no count of the orders."""
    if page is not None:
        page = retimed(page)
    if page is None:
        board_filter, number, _ = parse_filter(QueryDict(query))  # checked when the socket came
        page = board_page(board_filter, number) | {"oob": True, "live": True}
    ticking = any(row.since for row in page["rows"])
    return BoardList(render_to_string("orders/partials/order_list.html", page), ticking, page)


def render_boards(
    queries: list[str], pages: dict[str, dict] | None = None
) -> tuple[dict[str, BoardList], str | None]:
    """Every watched board's list, and the switches they share.

    `pages`: nothing moved in the database since these pages were read; they are rendered
    again as of now, and the switches, unchanged, are not (None). A board without one
    is read afresh."""
    pages = pages or {}
    lists = {query: render_order_list(query, pages.get(query)) for query in queries}
    return lists, None if pages else render_switches()


def render_switches() -> str:
    context = switches_context() | {"oob": True}
    return render_to_string("orders/partials/switches.html", context)


def metrics_context(metrics: Metrics, worker: str) -> dict:
    """The strip's figures and the two charts, for the page and for the hub alike."""
    minutes = [minute.start for minute in metrics.minutes]
    throughput = stacked_bars(
        "throughput",
        "Orders per minute: placed (line) and how finished ones ended (bars)",
        minutes,
        [(ending.value, ending.label) for ending in Ending],
        [minute.ended for minute in metrics.minutes],
        line=("placed", "placed", [minute.placed for minute in metrics.minutes]),
    )
    retries = stacked_bars(
        "retries",
        "Retries per minute, per service",
        minutes,
        [(service.value, service.label) for service in Service],
        [minute.retries for minute in metrics.minutes],
    )
    return {"metrics": metrics, "worker": worker, "charts": [throughput, retries]}


def render_metrics(metrics: Metrics, worker: str) -> str:
    """The metrics strip and the charts: two fragments in one message, each swapped by id."""
    context = metrics_context(metrics, worker) | {"oob": True}
    return render_to_string("orders/partials/metrics_strip.html", context) + render_to_string(
        "orders/partials/metrics_charts.html", context
    )
