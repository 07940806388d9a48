"""Small display helpers: every state reads as a word and an icon, not only a colour."""

from django import template
from django.conf import settings
from django.utils.html import format_html

from orders.audit import audit_order
from orders.chaos import panel_context
from orders.contract import format_cents
from orders.forms import ChaosForm
from orders.models import Order

register = template.Library()

STATE_ICONS = {
    "pending": "○",
    "running": "◐",
    "retrying": "↻",
    "completed": "✓",
    "failed": "✖",
    "skipped": "–",
    "compensated": "↺",
}
STATUS_ICONS = {
    "queued": "◷",
    "stopped": "■",
    "pending": "○",
    "running": "◐",
    "completed": "✓",
    "completed_with_warnings": "⚠",
    "failed": "✖",
    "cancelled": "⊘",
    "awaiting_approval": "⚖",  # an operator weighs it up
    "rejected": "⊘",
}


@register.filter
def state_icon(state: str) -> str:
    return STATE_ICONS.get(state, "?")


@register.simple_tag
def status_badge(order: Order) -> str:
    if order.is_lost:
        return format_html(
            '<span class="badge status-lost" data-lost="true">✖ {}</span>',
            audit_order(order).lost_summary,
        )
    return format_html(
        '<span class="badge status-{}">{} {}</span>',
        order.status,
        STATUS_ICONS.get(order.status, "?"),
        order.get_status_display(),
    )


@register.simple_tag
def approval_policy() -> str:
    """The approval rule in force, in words (the page and the hub's fragments alike)."""
    minutes = settings.APPROVAL_TIMEOUT_SECONDS / 60
    deadline = f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"
    return (
        f"Orders of {format_cents(settings.APPROVAL_THRESHOLD_CENTS)} or more wait for an"
        f" operator's approval; with no decision within {deadline} they are rejected."
    )


@register.inclusion_tag("orders/partials/chaos_panel.html", takes_context=True)
def chaos_panel(context: template.Context) -> dict[str, object]:
    """The chaos panel as the dashboard first shows it (htmx keeps it fresh from then on)."""
    return panel_context() | {
        "chaos_form": ChaosForm(),
        "may_act": context.get("may_act", False),
        "csrf_token": context.get("csrf_token", ""),
    }
