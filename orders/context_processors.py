from django.conf import settings
from django.http import HttpRequest

from orders.access import may_act
from orders.contract import OrderStatus
from orders.models import Order


def temporal_links(request: HttpRequest) -> dict[str, object]:
    return {
        "temporal_ui_url": settings.TEMPORAL_UI_URL,
        "temporal_namespace": settings.TEMPORAL_NAMESPACE,
        # The header's banner counts the orders still waiting for Temporal.
        "queued": Order.objects.filter(status=OrderStatus.QUEUED).count(),
        "demo_mode": settings.DEMO_MODE,
        "may_act": may_act(request.user),
    }
