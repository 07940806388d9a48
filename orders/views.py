from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from orders.models import Order


def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "orders/dashboard.html", {"orders": Order.objects.all()[:50]})
