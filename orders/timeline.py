"""One order's attempts on a time axis: what the order page's timeline draws.

Built from the call ledger (one row per attempt, with when it started by Temporal's
clock and how long it took) and the steps as the page shows them (a retry Temporal has
scheduled). Each lane is one kind of call, a step or the undoing of one; the space
between two attempts in a lane is the backoff Temporal waited. Pure: positions are
percentages of the span, so the template only places boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orders.contract import Step
from orders.simulator.models import ServiceCall
from orders.step_state import StepView

# Every (service, operation) the simulators record, in the order the lanes are drawn:
# the flow first, then the saga's undoing (the step it undoes, and what it does).
LANES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("inventory", "reserve"): (Step.INVENTORY, "Reserve inventory", False),
    ("payment", "charge"): (Step.PAYMENT, "Charge payment", False),
    ("inventory", "commit"): (Step.COMMIT, "Commit inventory", False),
    ("shipping", "ship"): (Step.SHIPPING, "Schedule shipping", False),
    ("email", "send"): (Step.EMAIL, "Email confirmation", False),
    ("sms", "send"): (Step.SMS, "SMS update", False),
    ("shipping", "cancel"): (Step.SHIPPING, "Undo: cancel shipment", True),
    ("payment", "refund"): (Step.PAYMENT, "Undo: refund payment", True),
    ("inventory", "release"): (Step.INVENTORY, "Undo: release stock", True),
}
# Axis ticks are a round number of seconds apart, at most about eight of them.
TICK_STEPS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
MAX_TICKS = 8


@dataclass
class Bar:
    """One box on a lane: `left` and `width` are percentages of the timeline's span."""

    start_s: float
    end_s: float
    left: float = 0.0
    width: float = 0.0


@dataclass
class AttemptBar(Bar):
    attempt: int = 0
    outcome: str = ""
    error: str = ""
    duration_ms: int = 0


@dataclass
class GapBar(Bar):
    """The wait between two attempts (the backoff), or before one Temporal has scheduled."""

    scheduled: bool = False  # the next attempt has not started yet

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Lane:
    step: str
    label: str
    compensation: bool
    attempts: list[AttemptBar] = field(default_factory=list)
    gaps: list[GapBar] = field(default_factory=list)


@dataclass
class Tick:
    left: float
    label: str


@dataclass
class Timeline:
    lanes: list[Lane]
    span_s: float
    ticks: list[Tick]


def _started(call: ServiceCall) -> datetime:
    # Temporal's start time when the worker knew it; else the row's own clock (the plain
    # script), less what the call took.
    return call.started_at or call.created_at - timedelta(milliseconds=call.duration_ms)


def build_timeline(
    calls: list[ServiceCall], steps: list[StepView] | None = None
) -> Timeline | None:
    """The order's attempts on one time axis; None before any service was called."""
    known = [call for call in calls if (call.service, call.operation) in LANES]
    if not known:
        return None
    origin = min(_started(call) for call in known)
    lanes: dict[tuple[str, str], Lane] = {}
    for call in sorted(known, key=lambda c: (_started(c), c.attempt)):
        start = (_started(call) - origin).total_seconds()
        step, label, compensation = LANES[(call.service, call.operation)]
        lane = lanes.setdefault((call.service, call.operation), Lane(step, label, compensation))
        if lane.attempts:
            gap_from = lane.attempts[-1].end_s
            lane.gaps.append(GapBar(gap_from, max(start, gap_from)))
        lane.attempts.append(
            AttemptBar(
                start,
                start + call.duration_ms / 1000,
                attempt=call.attempt,
                outcome=call.outcome,
                error=call.error,
                duration_ms=call.duration_ms,
            )
        )
    _add_scheduled_retries(lanes, steps or [], origin)
    ordered = [lanes[key] for key in LANES if key in lanes]
    span = max(bar.end_s for lane in ordered for bar in [*lane.attempts, *lane.gaps])
    span = max(span, 0.1)  # one instant attempt still gets a visible axis
    for lane in ordered:
        for bar in [*lane.attempts, *lane.gaps]:
            bar.left = round(100 * bar.start_s / span, 2)
            bar.width = round(100 * (bar.end_s - bar.start_s) / span, 2)
    return Timeline(ordered, span, _ticks(span))


def _add_scheduled_retries(
    lanes: dict[tuple[str, str], Lane], steps: list[StepView], origin: datetime
) -> None:
    """A step waiting for its next attempt: the wait Temporal scheduled, drawn ahead."""
    for step in steps:
        if step.next_retry_at is None:
            continue
        lane = next(
            (lane for lane in lanes.values() if lane.step == step.name and not lane.compensation),
            None,
        )
        if lane is None or not lane.attempts:
            continue
        retry_at = step.next_retry_at
        if retry_at.tzinfo is None and origin.tzinfo is not None:
            retry_at = retry_at.replace(tzinfo=origin.tzinfo)  # Temporal's naive UTC
        start = lane.attempts[-1].end_s
        lane.gaps.append(
            GapBar(start, max(start, (retry_at - origin).total_seconds()), scheduled=True)
        )


def _ticks(span_s: float) -> list[Tick]:
    every = next((s for s in TICK_STEPS_S if span_s / s <= MAX_TICKS), TICK_STEPS_S[-1])
    count = int(span_s / every) + 1
    return [Tick(round(100 * i * every / span_s, 2), _seconds(i * every)) for i in range(count)]


def _seconds(value: float) -> str:
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"
