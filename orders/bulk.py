"""Bulk actions: one operator action on every order a filtered board selects.

Each order goes through `orders.actions.act`, exactly as a single action would, and is
recorded the same way; the result says which orders it applied to and, for the others,
why not. The selection is the filter's at the moment of confirmation: orders placed after
it are never touched, and orders that stopped matching meanwhile are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from orders.actions import act
from orders.board import BoardFilter
from orders.contract import steps_calling
from orders.models import Action, Order

BULK_ACTIONS = (Action.RETRY_NOW, Action.PAUSE, Action.RESUME, Action.CANCEL)
# One request runs them one after the other (a few Temporal calls each): keep it bounded.
BULK_LIMIT = 500


@dataclass
class Selection:
    """The orders a bulk action would touch, or why it cannot run."""

    board_filter: BoardFilter
    action: str
    upto: int = 0  # the newest order selected when the count was taken
    count: int = 0
    refusal: str = ""

    @property
    def label(self) -> str:
        return Action(self.action).label if self.action in BULK_ACTIONS else self.action

    @property
    def step(self) -> str:
        """The step to act on: the filter's service's, when it calls from one step only."""
        steps = steps_calling(self.board_filter.service)
        return steps[0] if len(steps) == 1 else ""

    def orders(self) -> QuerySet[Order]:
        return self.board_filter.orders().filter(pk__lte=self.upto)


def selection(
    board_filter: BoardFilter, action: str, errors: list[str], upto: int | None = None
) -> Selection:
    """What `action` would touch under `board_filter` (orders up to `upto`, once confirmed)."""
    chosen = Selection(board_filter, action)
    if action not in BULK_ACTIONS:
        known = ", ".join(BULK_ACTIONS)
        chosen.refusal = f"There is no bulk action {action!r}; try one of: {known}."
    elif errors:
        chosen.refusal = "Not a board filter: " + "; ".join(errors)
    elif not board_filter.is_filtered:
        chosen.refusal = (
            "Filter the board first: a bulk action acts on the orders a filter selects,"
            " never on every order."
        )
    if chosen.refusal:
        return chosen
    orders = board_filter.orders()
    if upto is not None:
        orders = orders.filter(pk__lte=upto)
    chosen.upto = upto if upto is not None else orders.values_list("pk", flat=True).first() or 0
    chosen.count = orders.count()
    if chosen.count == 0:
        chosen.refusal = f"No order matches ({board_filter.describe()}): nothing to do."
    elif chosen.count > BULK_LIMIT:
        chosen.refusal = (
            f"{chosen.count} orders match; a bulk action takes at most {BULK_LIMIT} at once."
            " Narrow the filter."
        )
    return chosen


@dataclass
class BulkResult:
    done: list[tuple[int, str]] = field(default_factory=list)  # order number, what was said
    refused: list[tuple[int, str]] = field(default_factory=list)  # order number, why not

    @property
    def touched(self) -> int:
        return len(self.done) + len(self.refused)


def bulk_act(
    chosen: Selection,
    *,
    actor: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
    reason: str = "",
) -> BulkResult:
    """Run the chosen action on each selected order, oldest first; nothing when refused."""
    result = BulkResult()
    if chosen.refusal:
        return result
    for order in chosen.orders().order_by("id").iterator():
        outcome = act(order, chosen.action, actor=actor, user=user, reason=reason, step=chosen.step)
        (result.done if outcome.accepted else result.refused).append((order.pk, outcome.message))
    return result
