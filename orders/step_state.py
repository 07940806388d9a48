"""The one definition of a step's state on the page.

Three sources each know part of a step:

- the database: what each attempt recorded when it started and ended (orders/steps.py);
  written before Temporal hears how the attempt ended, so it is the fastest;
- the workflow's `progress` query: the saga's verdict on a finished step (completed,
  failed, compensated, skipped), which no attempt can know;
- describe's pending activity: what only Temporal knows about a step in flight (the
  attempt it is on, when the next retry is due, a retry waiting for a worker).

`step_view` decides between them with three rules, in this order:

1. a step the workflow has finished shows the workflow's verdict;
2. else describe's pending activity: paused if an operator paused it, or what it says
   when it is not older than what the database saw;
3. else what the database recorded.

It is a pure function: tests/test_step_state.py lists every combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orders.contract import RETRY_TABLE, Step, StepProgress, StepState

# States the workflow's query reports only once it knows how the step ended.
FINISHED_BY_WORKFLOW = (
    StepState.COMPLETED,
    StepState.FAILED,
    StepState.COMPENSATED,
    StepState.SKIPPED,
)


@dataclass(frozen=True)
class Recorded:
    """A step as its attempts recorded it: `attempt` is the last attempt made."""

    state: str = StepState.PENDING
    attempt: int = 0
    last_error: str = ""
    result: str = ""


@dataclass(frozen=True)
class PendingAttempt:
    """What describe() knows about a step's activity that the workflow code cannot see."""

    step: str
    attempt: int  # the attempt running, or the one coming next
    last_failure: str = ""
    next_attempt_at: datetime | None = None  # set while it waits out a backoff
    running: bool = False  # a worker has started this attempt
    paused: bool = False  # an operator paused it: no attempt starts until resumed


@dataclass(frozen=True)
class StepView:
    """A step as the page shows it (the page contract's data-state and data-attempt)."""

    name: str
    state: str
    attempt: int  # the attempt running, or coming next while retrying
    last_error: str = ""
    result: str = ""
    next_retry_at: datetime | None = None

    @property
    def label(self) -> str:
        return Step(self.name).label

    @property
    def max_attempts(self) -> int:
        return RETRY_TABLE[self.name].maximum_attempts

    @property
    def policy(self) -> str:
        return RETRY_TABLE[self.name].describe()


def step_view(
    name: str,
    recorded: Recorded,
    queried: StepProgress | None = None,
    pending: PendingAttempt | None = None,
) -> StepView:
    """The step as the page shows it, from what each source said (None: not asked)."""
    if queried is not None and queried.state in FINISHED_BY_WORKFLOW:
        return StepView(
            name,
            queried.state,
            max(queried.attempts, recorded.attempt),
            last_error=queried.error or recorded.last_error,
            result=queried.result or recorded.result,
        )
    retrying = recorded.state == StepState.RETRYING
    # A failed attempt that will be retried announces the next one, as Temporal counts.
    announced = recorded.attempt + 1 if retrying else recorded.attempt
    if pending is not None and pending.paused and recorded.state not in FINISHED_BY_WORKFLOW:
        # Paused waits where it was: the attempt the database announced comes on resume.
        return StepView(
            name,
            StepState.PAUSED,
            max(pending.attempt, announced),
            last_error=pending.last_failure or recorded.last_error,
            result=recorded.result,
        )
    if pending is not None and _newer(pending, recorded, announced):
        return StepView(
            name,
            StepState.RUNNING if pending.running else StepState.RETRYING,
            pending.attempt,
            last_error=pending.last_failure or recorded.last_error,
            result=recorded.result,
            next_retry_at=None if pending.running else pending.next_attempt_at,
        )
    return StepView(
        name, recorded.state, announced, recorded.last_error, recorded.result, next_retry_at=None
    )


def _newer(pending: PendingAttempt, recorded: Recorded, announced: int) -> bool:
    """Describe can lag behind the database (each attempt writes before Temporal hears).

    It is newer about an attempt the database never saw (a timeout the worker could not
    report, a retry due while no worker polls) and about the schedule of a retry the
    database announced, which only Temporal knows. A first attempt merely scheduled says
    nothing the database does not.
    """
    if recorded.state in FINISHED_BY_WORKFLOW:
        return False  # the attempt itself recorded how it ended
    if pending.attempt > announced:
        return pending.running or pending.attempt > 1
    # The retry the database announced: Temporal adds its schedule, or that it started.
    # The same attempt recorded as running is news to describe, never the other way.
    return pending.attempt == announced and recorded.state == StepState.RETRYING
