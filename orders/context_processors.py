from django.conf import settings
from django.http import HttpRequest

from orders.access import may_act, may_watch
from orders.render import waiting


def temporal_links(request: HttpRequest) -> dict[str, object]:
    return {
        "temporal_ui_url": settings.TEMPORAL_UI_URL,
        "temporal_namespace": settings.TEMPORAL_NAMESPACE,
        # The header's banners count the orders waiting for Temporal and for an operator.
        **(waiting() if may_watch(request.user) else {}),
        "demo_mode": settings.DEMO_MODE,
        "may_act": may_act(request.user),
    }
