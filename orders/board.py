"""The board: which orders it shows (filters, search, pages) and what it says about each.

One definition of a filtered board, read from the address bar's query parameters by the
page, by the live hub (each socket watches its own filter) and by bulk actions, which act
on everything a filter selects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from orders.contract import OrderStatus, Service, StepState, steps_calling
from orders.models import Engine, Order, OrderStep

BOARD_ROWS = 25
# A live board's page re-rendered as time passes is read afresh at least this often.
PAGE_REREAD_S = 30.0
FILTERS = ("status", "state", "service", "engine", "q")
# A step in one of these states is the one an order is on now.
ACTIVE_STATES = (StepState.RUNNING, StepState.RETRYING, StepState.PAUSED)


class BoardFilterForm(forms.Form):
    """The board's query parameters; an invalid value is an error, never "show everything"."""

    status = forms.ChoiceField(choices=[("", "any status"), *OrderStatus.choices], required=False)
    state = forms.ChoiceField(
        choices=[("", "any"), (StepState.RETRYING, "a step retrying now")],
        required=False,
        label="Steps",
    )
    service = forms.ChoiceField(
        choices=[("", "any service"), *Service.choices],
        required=False,
        label="On service",
        help_text="The order's current step calls this service",
    )
    engine = forms.ChoiceField(choices=[("", "any engine"), *Engine.choices], required=False)
    q = forms.CharField(
        required=False,
        max_length=100,
        strip=True,
        label="Search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "order #, customer, email"}),
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, data: QueryDict | dict | None = None) -> None:
        super().__init__(data if data is not None else {}, auto_id="board-%s")
        for name in FILTERS:
            self.fields[name].widget.attrs["data-board-filter"] = name


@dataclass(frozen=True)
class BoardFilter:
    """A valid filter: the values set, in one canonical order."""

    status: str = ""
    state: str = ""
    service: str = ""
    engine: str = ""
    q: str = ""

    @property
    def is_filtered(self) -> bool:
        return any(getattr(self, name) for name in FILTERS)

    def items(self) -> list[tuple[str, str]]:
        """The parameters set, in canonical order (hidden inputs of a confirmation)."""
        return [(name, getattr(self, name)) for name in FILTERS if getattr(self, name)]

    @property
    def query(self) -> str:
        """The filter as query parameters, the same string for the same filter."""
        return urlencode(self.items())

    def page_query(self, page: int) -> str:
        """The filter and the page: what one live board watches."""
        return "&".join(part for part in (self.query, f"page={page}" if page > 1 else "") if part)

    def describe(self) -> str:
        """In words, for a confirmation: `status running, on service payment`."""
        words = {
            "status": "status {}",
            "state": "a step {} now",
            "service": "on service {}",
            "engine": "engine {}",
            "q": "matching “{}”",
        }
        parts = [words[name].format(value) for name, value in self.items()]
        return ", ".join(parts) or "all orders"

    def orders(self) -> QuerySet[Order]:
        """Every order the filter selects, newest first."""
        orders = Order.objects.all()
        if self.status:
            orders = orders.filter(status=self.status)
        if self.engine:
            orders = orders.filter(engine=self.engine)
        if self.state or self.service:
            # "Now": a step an order that has ended left behind (terminated mid-retry) is not.
            orders = orders.exclude(status__in=OrderStatus.final())
        if self.state:
            orders = orders.filter(pk__in=_steps(state=self.state))
        if self.service:
            steps = steps_calling(self.service)
            orders = orders.filter(pk__in=_steps(state__in=ACTIVE_STATES, name__in=steps))
        if self.q:
            orders = orders.filter(_search(self.q))
        return orders.order_by("-id")


def _steps(**conditions: object) -> QuerySet[OrderStep]:
    # From the (indexed) few steps in flight to their orders: never a scan of every order.
    return OrderStep.objects.filter(**conditions).values("order_id")


def _search(text: str) -> Q:
    number = text.removeprefix("#").strip()
    found = Q(customer_name__icontains=text) | Q(email__icontains=text)
    return found | Q(pk=int(number)) if number.isdigit() and len(number) < 12 else found


def parse_filter(data: QueryDict | dict) -> tuple[BoardFilter, int, list[str]]:
    """The filter and page asked for, and what was wrong with the request (in words)."""
    form = BoardFilterForm(data)
    if form.is_valid():
        values = {name: form.cleaned_data[name] for name in FILTERS}
        return BoardFilter(**values), form.cleaned_data["page"] or 1, []
    errors = [
        f"{form.fields[name].label or name.capitalize()} ({name}={data.get(name, '')[:40]}):"
        f" {' '.join(messages)}"
        for name, messages in form.errors.items()
    ]
    return BoardFilter(), 1, errors


@dataclass
class BoardRow:
    """One order as a row of the board, with where it is and for how long."""

    order: Order
    step: OrderStep | None  # the step it is on now, if any
    since: datetime | None  # on that step since (retries included)
    stuck: bool

    @property
    def on_step_for(self) -> str:
        if self.since is None:
            return ""
        return short_duration((timezone.now() - self.since).total_seconds())


def row_of(order: Order, now: datetime) -> BoardRow:
    """Where the order is (steps prefetched) and whether it has been there too long."""
    if order.is_final or order.is_lost:
        return BoardRow(order, None, None, stuck=False)
    step = next((s for s in order.steps.all() if s.state in ACTIVE_STATES), None)
    if step is None:
        return BoardRow(order, None, None, stuck=False)
    since = step.entered_at or step.started_at
    limit = settings.STUCK_AFTER_SECONDS.get(step.name)
    stuck = bool(since and limit is not None and (now - since).total_seconds() > limit)
    return BoardRow(order, step, since, stuck)


def short_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"


def board_page(board_filter: BoardFilter, page: int = 1) -> dict:
    """The rows of one page of the board, newest first, and its pager: a page's worth of
    queries whatever the number of orders."""
    orders = board_filter.orders().select_related("product").prefetch_related("steps")
    page_obj: Page = Paginator(orders, BOARD_ROWS).get_page(page)
    now = timezone.now()
    return {
        "page_obj": page_obj,
        "rows": [row_of(order, now) for order in page_obj.object_list],
        "board_filter": board_filter,
        "read_at": time.monotonic(),
    }


def retimed(page: dict) -> dict | None:
    """A page board_page read earlier, its rows' times and stuck marks as of now; None
    when it must be read afresh.

    The hub's change check said nothing moved, but it compares the newest change only: a
    write that took its time before it waited for the database's lock commits a change
    older than the newest, unseen. So one query by primary key checks the page's own
    rows, and a page older than PAGE_REREAD_S is read again whatever it says (an order
    that slipped in the same way). The orders' products and steps and the pager's count
    come with the page."""
    if time.monotonic() - page.get("read_at", 0) > PAGE_REREAD_S:
        return None
    shown = {row.order.pk: row.order.updated_at for row in page["rows"]}
    if dict(Order.objects.filter(pk__in=shown).values_list("pk", "updated_at")) != shown:
        return None
    now = timezone.now()
    return page | {"rows": [row_of(row.order, now) for row in page["rows"]]}
