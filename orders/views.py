"""Pages and the htmx fragments they are made of: one view serves both."""

from __future__ import annotations

from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from orders.access import operators_only
from orders.actions import act, record_switch
from orders.board import BoardFilterForm, parse_filter
from orders.bulk import BULK_ACTIONS, bulk_act, selection
from orders.forms import OrderForm, SwitchForm, apply_switch
from orders.models import Engine, Order
from orders.placement import place_comparison, place_order
from orders.progress import build_snapshot
from orders.render import board_context, switches_context
from orders.temporal import WORKER_UP, worker_status, workflow_ui_url


def _worker() -> str:
    return async_to_sync(worker_status)()


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, OrderForm())


def _dashboard(request: HttpRequest, form: OrderForm, status: int = 200) -> HttpResponse:
    board_filter, page, errors = parse_filter(request.GET)
    if errors:  # say what was wrong; showing every order instead would mislead
        board = switches_context() | {"rows": [], "page_obj": None, "board_filter": board_filter}
        status = 400
    else:
        board = board_context(board_filter, page)
    context = board | {
        "form": form,
        "filter_form": BoardFilterForm(request.GET),
        "filter_errors": errors,
        "board_query": board_filter.page_query(page),
        "bulk_actions": BULK_ACTIONS,
        "live": not errors,  # every filter and page stays live
        "worker": _worker(),
    }
    # The filter form swaps the whole dashboard (its socket watches the new filter); other
    # htmx requests ask for the list alone.
    whole = not request.htmx or request.htmx.target == "dashboard"
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
    # The list as the placing page filters it, so the new order shows only where it belongs.
    board_filter, page, _ = parse_filter(QueryDict(urlsplit(request.htmx.current_url or "").query))
    context = board_context(board_filter, page) | {
        "form": OrderForm(),
        "placed": order,
        "oob": True,
        "live": True,
    }
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


@require_GET
@operators_only
def bulk_confirm(request: HttpRequest, action: str) -> HttpResponse:
    """How many orders a bulk action would touch, and a button to go ahead."""
    board_filter, _, errors = parse_filter(request.GET)
    chosen = selection(board_filter, action, errors)
    template = "orders/partials/bulk_confirm.html" if request.htmx else "orders/bulk.html"
    return render(request, template, {"chosen": chosen}, status=409 if chosen.refusal else 200)


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
        actor=request.user.get_username() or "anonymous (demo mode)",
        user=request.user,
        reason=request.POST.get("reason", "")[:500],
    )
    template = "orders/partials/bulk_result.html" if request.htmx else "orders/bulk.html"
    context = {"chosen": chosen, "result": result}
    return render(request, template, context, status=409 if chosen.refusal else 200)
