"""Small display helpers: every state reads as a word and an icon, not only a colour."""

from django import template
from django.utils.html import format_html

from orders.audit import audit_order
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
