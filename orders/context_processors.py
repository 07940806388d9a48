from django.conf import settings
from django.http import HttpRequest


def temporal_links(request: HttpRequest) -> dict[str, str]:
    return {
        "temporal_ui_url": settings.TEMPORAL_UI_URL,
        "temporal_namespace": settings.TEMPORAL_NAMESPACE,
    }
