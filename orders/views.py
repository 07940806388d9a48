"""Pages and the htmx fragments they are made of: one view serves both."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from orders import chaos
from orders.access import operators_only
from orders.actions import act, record_switch
from orders.board import BoardFilterForm, parse_filter
from orders.bulk import BULK_ACTIONS, bulk_act, selection
from orders.forms import ChaosForm, LoadForm, OrderForm, SwitchForm, apply_switch
from orders.load import (
    LoadRunning,
    create_run,
    latest_run,
    outcomes,
    request_stop,
    start_in_background,
    still_open,
)
from orders.metrics import current_metrics
from orders.models import Engine, LoadRun, Order
from orders.placement import place_comparison, place_order
from orders.progress import build_snapshot
from orders.render import board_context, metrics_context, switches_context
from orders.scenarios import SCENARIOS, demo_customer, demo_order_data, run_scenario
from orders.temporal import WORKER_UP, worker_status, workflow_ui_url


def _actor(request: HttpRequest) -> str:
    return request.user.get_username() or "anonymous (demo mode)"


def _worker() -> str:
    return async_to_sync(worker_status)()


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    # Prefilled with a made-up customer: a demo starts with one click, not four fields.
    return _dashboard(request, OrderForm(initial=demo_customer()))


def _dashboard(request: HttpRequest, form: OrderForm, status: int = 200) -> HttpResponse:
    board_filter, page, errors = parse_filter(request.GET)
    if errors:  # say what was wrong; showing every order instead would mislead
        board = switches_context() | {"rows": [], "page_obj": None, "board_filter": board_filter}
        status = 400
    else:
        board = board_context(board_filter, page)
    context = (
        board
        | {
            "form": form,
            "filter_form": BoardFilterForm(request.GET),
            "filter_errors": errors,
            "board_query": board_filter.page_query(page),
            "bulk_actions": BULK_ACTIONS,
            "live": not errors,  # every filter and page stays live
            "worker": _worker(),
            "scenarios": SCENARIOS.values(),
        }
        | _load_context()
    )
    # The filter form swaps the whole dashboard (its socket watches the new filter); other
    # htmx requests ask for the list alone.
    whole = not request.htmx or request.htmx.target == "dashboard"
    if whole:  # with the metrics strip and charts
        context |= metrics_context(current_metrics(), context["worker"])
    template = "orders/dashboard.html" if whole else "orders/dashboard.html#order-list"
    response = render(request, template, context, status=status)
    if whole and request.htmx and not errors:
        # The address bar gets the filter's one spelling: no empty fields, stable order.
        query = context["board_query"]
        push_url(response, reverse("orders:dashboard") + (f"?{query}" if query else ""))
    return response


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
    # A fresh form and a word on the order, and no board: the page's live socket brings
    # the board with the new order in it (as the hub renders it once for every socket on
    # that filter), so a burst of orders does not render the board once per order.
    context = {"form": OrderForm(initial=demo_customer()), "placed": order}
    return render(request, "orders/partials/place_order_form.html", context)


@require_POST
@operators_only
def set_switch(request: HttpRequest, service: str) -> HttpResponse:
    data = request.POST.copy()
    data["service"] = service
    form = SwitchForm(data)
    if form.is_valid():
        switch = apply_switch(form.cleaned_data)
        record_switch(service, switch.summary, actor=_actor(request), user=request.user)
    elif not request.htmx:
        return render(request, "orders/switch_error.html", {"form": form}, status=400)
    if not request.htmx:
        return redirect("orders:dashboard")
    context = switches_context() | {"switch_form": form, "switch_service": service}
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
        actor=_actor(request),
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


@require_POST
@operators_only
def demo_order(request: HttpRequest) -> HttpResponse:
    """One order for a made-up customer, placed as the form places it."""
    data = demo_order_data()
    if data is None:
        return _demo_result(request, error="No product has stock left: nothing was placed.")
    order = place_order(data)
    if not request.htmx:
        return redirect("orders:detail", pk=order.pk)
    return _demo_result(request, placed=[order])


@require_POST
@operators_only
def scenario(request: HttpRequest, name: str) -> HttpResponse:
    """Set the switches of one of the stories in orders/scenarios.py and place its orders."""
    if name not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        error = f"There is no scenario “{name}”; try one of: {known}. Nothing was changed."
        return _demo_result(request, error=error, status=404)
    result = run_scenario(name, actor=_actor(request), user=request.user)
    if not request.htmx:
        first = result.orders[0] if result.orders else None
        return redirect("orders:detail", pk=first.pk) if first else redirect("orders:dashboard")
    return _demo_result(request, result=result, placed=result.orders, error=result.error)


def _demo_result(
    request: HttpRequest, *, placed: list | None = None, status: int = 0, **context: object
) -> HttpResponse:
    # The switches and the order list come along out of band: they changed too.
    status = status or (409 if context.get("error") else 200)
    context |= board_context() | {"placed": placed or [], "oob": True, "live": True}
    return render(request, "orders/partials/demo_result.html", context, status=status)


def _load_context(form: LoadForm | None = None, message: str = "") -> dict:
    run = latest_run()
    open_orders = still_open(run) if run else 0
    return {
        "load_run": run,
        "load_outcomes": outcomes(run) if run else {},
        "load_polling": bool(run and (run.shown_state == LoadRun.State.RUNNING or open_orders)),
        "load_form": form or LoadForm(initial={"orders": 20, "rate": 2, "engine": "temporal"}),
        "load_message": message,
    }


@require_http_methods(["GET", "POST"])
def load(request: HttpRequest) -> HttpResponse:
    """The load generator's panel: GET shows the latest run (the page polls it while it
    runs), POST starts a run in a thread of this process, outside the request."""
    if request.method == "POST":
        return _start_load(request)
    return render(request, "orders/partials/load_panel.html", _load_context())


@operators_only
def _start_load(request: HttpRequest) -> HttpResponse:
    form = LoadForm(request.POST)
    if not form.is_valid():
        context = _load_context(form)
        return render(request, "orders/partials/load_panel.html", context, status=400)
    try:
        run = create_run(form.cleaned_data, actor=_actor(request))
    except LoadRunning as exc:
        context = _load_context(message=str(exc))
        return render(request, "orders/partials/load_panel.html", context, status=409)
    start_in_background(run)
    if not request.htmx:
        return redirect("orders:dashboard")
    return render(request, "orders/partials/load_panel.html", _load_context())


@require_POST
@operators_only
def stop_load(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(LoadRun, pk=pk)
    stopping = request_stop(run)
    message = "" if stopping else f"Load run #{run.pk} was not running: nothing to stop."
    if not request.htmx:
        return redirect("orders:dashboard")
    context = _load_context(message=message)
    return render(
        request, "orders/partials/load_panel.html", context, status=200 if stopping else 409
    )


@require_GET
@operators_only
def bulk_confirm(request: HttpRequest, action: str) -> HttpResponse:
    """How many orders a bulk action would touch, and a button to go ahead."""
    board_filter, _, errors = parse_filter(request.GET)
    chosen = selection(board_filter, action, errors)
    template = "orders/partials/bulk_confirm.html" if request.htmx else "orders/bulk.html"
    return render(request, template, {"chosen": chosen}, status=409 if chosen.refusal else 200)


def _chaos_panel(
    request: HttpRequest, form: ChaosForm | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    context = chaos.panel_context() | {"chaos_form": form or ChaosForm(), "chaos_error": error}
    template = "orders/partials/chaos_panel.html" if request.htmx else "orders/chaos.html"
    return render(request, template, context, status=status)


@require_GET
def chaos_panel(request: HttpRequest) -> HttpResponse:
    """The chaos panel: polled by htmx every 2 s while a run is under way."""
    return _chaos_panel(request)


@require_POST
@operators_only
def bulk_apply(request: HttpRequest, action: str) -> HttpResponse:
    """Run a confirmed bulk action on each order the filter selected when it was confirmed."""
    board_filter, _, errors = parse_filter(request.POST)
    upto = request.POST.get("upto", "")  # the newest order the confirmation counted
    chosen = selection(board_filter, action, errors, upto=int(upto) if upto.isdigit() else None)
    if not upto.isdigit():
        chosen.refusal = "A bulk action runs only once confirmed: start it from the board."
    result = bulk_act(
        chosen,
        actor=_actor(request),
        user=request.user,
        reason=request.POST.get("reason", "")[:500],
    )
    template = "orders/partials/bulk_result.html" if request.htmx else "orders/bulk.html"
    context = {"chosen": chosen, "result": result}
    return render(request, template, context, status=409 if chosen.refusal else 200)


@require_POST
@operators_only
def chaos_start(request: HttpRequest) -> HttpResponse:
    form = ChaosForm(request.POST)
    if not form.is_valid():
        return _chaos_panel(request, form, status=400)
    actor = _actor(request)
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
    actor = _actor(request)
    if run is None or not chaos.request_stop(run, actor):
        return _chaos_panel(request, error="No chaos run is placing orders now.", status=409)
    return _chaos_panel(request) if request.htmx else redirect("orders:chaos")
