"""Pages and the htmx fragments they are made of: one view serves both."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from orders import chaos
from orders.access import operators_only
from orders.actions import act, record_switch
from orders.contract import OrderStatus
from orders.forms import ChaosForm, OrderForm, SwitchForm, apply_switch
from orders.models import Engine, Order
from orders.placement import place_comparison, place_order
from orders.progress import build_snapshot
from orders.render import BOARD_ROWS, board_context
from orders.temporal import WORKER_UP, worker_status, workflow_ui_url


def _worker() -> str:
    return async_to_sync(worker_status)()


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, OrderForm())


def _dashboard(request: HttpRequest, form: OrderForm, status: int = 200) -> HttpResponse:
    orders = Order.objects.select_related("product").prefetch_related("steps")
    # One filter for now: the operators' inbox (?status=awaiting_approval) and the like.
    only = request.GET.get("status", "")
    if only in OrderStatus.values:
        orders = orders.filter(status=only)
    page_obj = Paginator(orders, BOARD_ROWS).get_page(request.GET.get("page"))
    context = board_context() | {
        "form": form,
        "page_obj": page_obj,
        "orders": page_obj.object_list,
        "status_filter": only if only in OrderStatus.values else "",
        # The live list is the newest orders, unfiltered: a filtered page stays as loaded.
        "live": page_obj.number == 1 and only not in OrderStatus.values,
        "worker": _worker(),
    }
    template = "orders/dashboard.html#order-list" if request.htmx else "orders/dashboard.html"
    return render(request, template, context, status=status)


@require_POST
@operators_only
def place(request: HttpRequest) -> HttpResponse:
    form = OrderForm(request.POST, copies=2 if "compare" in request.POST else 1)
    if not form.is_valid():
        if not request.htmx:  # the whole page, the errors next to the fields
            return _dashboard(request, form, status=400)
        return render(request, "orders/partials/place_order_form.html", {"form": form})
    if "compare" in request.POST:
        order = place_comparison(form.cleaned_data)
        url = reverse("orders:compare", kwargs={"pk": order.pk})
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    order = place_order(form.cleaned_data)
    if not request.htmx:
        return redirect("orders:detail", pk=order.pk)
    context = board_context() | {"form": OrderForm(), "placed": order, "oob": True, "live": True}
    return render(request, "orders/partials/order_placed.html", context)


@require_POST
@operators_only
def set_switch(request: HttpRequest, service: str) -> HttpResponse:
    data = request.POST.copy()
    data["service"] = service
    form = SwitchForm(data)
    if form.is_valid():
        switch = apply_switch(form.cleaned_data)
        actor = request.user.get_username() or "anonymous (demo mode)"
        record_switch(service, switch.summary, actor=actor, user=request.user)
    elif not request.htmx:
        return render(request, "orders/switch_error.html", {"form": form}, status=400)
    if not request.htmx:
        return redirect("orders:dashboard")
    context = board_context() | {"switch_form": form, "switch_service": service}
    return render(request, "orders/partials/switches.html", context)


@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=pk)
    worker = _worker()
    snapshot = async_to_sync(build_snapshot)(order.pk, worker_up=worker == WORKER_UP)
    context = {
        "snapshot": snapshot,
        "worker": worker,
        "temporal_url": workflow_ui_url(order.workflow_id) if order.workflow_id else "",
    }
    template = "orders/detail.html#order-detail" if request.htmx else "orders/detail.html"
    return render(request, template, context)


@require_GET
def compare(request: HttpRequest, pk: int) -> HttpResponse:
    """The same order in both engines, side by side."""
    temporal = get_object_or_404(Order, pk=pk, engine=Engine.TEMPORAL, compare_with__isnull=False)
    worker = _worker()
    snapshots = [
        async_to_sync(build_snapshot)(order_id, worker_up=worker == WORKER_UP)
        for order_id in (temporal.pk, temporal.compare_with_id)
    ]
    return render(request, "orders/compare.html", {"snapshots": snapshots, "worker": worker})


@require_POST
@operators_only
def order_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """An operator's action on an order (cancel, approve, pause …); the page updates live."""
    order = get_object_or_404(Order, pk=pk)
    result = act(
        order,
        action,
        actor=request.user.get_username() or "anonymous (demo mode)",
        user=request.user,
        reason=request.POST.get("reason", "")[:500],
        step=request.POST.get("step", ""),
    )
    status = 200 if result.accepted else 409
    if request.htmx:
        context = {"result": result}
        return render(request, "orders/partials/action_result.html", context, status=status)
    level = messages.SUCCESS if result.accepted else messages.ERROR
    messages.add_message(request, level, result.message)
    return redirect("orders:detail", pk=order.pk)


def _chaos_panel(
    request: HttpRequest, form: ChaosForm | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    context = chaos.panel_context() | {"chaos_form": form or ChaosForm(), "chaos_error": error}
    if request.htmx:  # htmx 2 swaps no 4xx answer: the panel says what was wrong instead
        return render(request, "orders/partials/chaos_panel.html", context)
    return render(request, "orders/chaos.html", context, status=status)


@require_GET
def chaos_panel(request: HttpRequest) -> HttpResponse:
    """The chaos panel: polled by htmx every 2 s while a run is under way."""
    return _chaos_panel(request)


@require_POST
@operators_only
def chaos_start(request: HttpRequest) -> HttpResponse:
    form = ChaosForm(request.POST)
    if not form.is_valid():
        return _chaos_panel(request, form, status=400)
    actor = request.user.get_username() or "anonymous (demo mode)"
    try:
        run = chaos.open_run(**form.cleaned_data, actor=actor)
    except chaos.ChaosRefused as refused:
        return _chaos_panel(request, form, error=str(refused), status=409)
    chaos.start_in_background(run)
    return _chaos_panel(request) if request.htmx else redirect("orders:chaos")


@require_POST
@operators_only
def chaos_stop(request: HttpRequest) -> HttpResponse:
    run = chaos.current_run()
    actor = request.user.get_username() or "anonymous (demo mode)"
    if run is None or not chaos.request_stop(run, actor):
        return _chaos_panel(request, error="No chaos run is placing orders now.", status=409)
    return _chaos_panel(request) if request.htmx else redirect("orders:chaos")
