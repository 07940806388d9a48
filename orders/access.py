"""Who may watch and who may act: the one place that decides, for views, sockets and pages.

In demo mode anyone may do anything, and the page says so. Outside it every page,
fragment and websocket needs a logged-in user, and placing orders, flipping switches and
acting on orders needs the `operate_orders` permission (the "operators" group has it).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

OPERATE = "orders.operate_orders"
OPERATORS_GROUP = "operators"


def may_watch(user: AbstractBaseUser | AnonymousUser) -> bool:
    return settings.DEMO_MODE or user.is_authenticated


def may_act(user: AbstractBaseUser | AnonymousUser) -> bool:
    return settings.DEMO_MODE or user.has_perm(OPERATE)


class DemoOrLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's login-required middleware, switched off in demo mode (read per request,
    so the mode is one setting whichever process reads it)."""

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: tuple, view_kwargs: dict
    ) -> HttpResponse | None:
        if settings.DEMO_MODE:
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def operators_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse, with a page that says why and changes nothing, a user who may only watch."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if may_act(request.user):
            return view(request, *args, **kwargs)
        template = "orders/partials/refused.html" if request.htmx else "orders/refused.html"
        return render(request, template, status=403)

    return guarded


def refuse_scrape(request: HttpRequest) -> HttpResponse | None:
    """Who may read /metrics: anyone in demo mode; otherwise the bearer token
    METRICS_TOKEN when it is set, else a logged-in user, as for every page. None: go on.
    """
    if settings.DEMO_MODE:
        return None
    token = settings.METRICS_TOKEN
    if not token:
        return None if request.user.is_authenticated else redirect_to_login(request.get_full_path())
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        response = HttpResponse(
            "401 Unauthorized: /metrics needs the header"
            " 'Authorization: Bearer <METRICS_TOKEN>'.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="orderdash metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse(
            "403 Forbidden: that bearer token is not this server's METRICS_TOKEN.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return None
