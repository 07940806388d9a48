"""The one definition of a step's state: every combination of what the sources said.

Rows read: what the database recorded, what the workflow's query said, what describe's
pending activity said  →  the state and attempt number the page shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import pytest

from orders.contract import StepProgress, StepState
from orders.step_state import PendingAttempt, Recorded, step_view

AT = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
S = StepState


def rec(state: str, attempt: int, error: str = "") -> Recorded:
    return Recorded(state, attempt, last_error=error)


def query(state: str, attempts: int = 0) -> StepProgress:
    return StepProgress("inventory", state, attempts)


def running(attempt: int) -> PendingAttempt:
    return PendingAttempt("inventory", attempt, running=True)


def backoff(attempt: int, error: str = "from describe") -> PendingAttempt:
    return PendingAttempt("inventory", attempt, last_failure=error, next_attempt_at=AT)


def due(attempt: int) -> PendingAttempt:
    """Scheduled, no backoff left, not started: waiting for a worker to pick it up."""
    return PendingAttempt("inventory", attempt, last_failure="from describe")


# recorded, queried, pending → (state, attempt, next retry at)
TABLE = [
    # Nothing has happened yet.
    (rec(S.PENDING, 0), None, None, (S.PENDING, 0, None)),
    (rec(S.PENDING, 0), query(S.RUNNING), due(1), (S.PENDING, 0, None)),
    # A worker started attempt 1 before the activity recorded it.
    (rec(S.PENDING, 0), query(S.RUNNING), running(1), (S.RUNNING, 1, None)),
    (rec(S.RUNNING, 1), None, running(1), (S.RUNNING, 1, None)),
    # The database hears an attempt failed before Temporal: the next attempt is announced.
    (rec(S.RETRYING, 1), None, None, (S.RETRYING, 2, None)),
    (rec(S.RETRYING, 1), query(S.RUNNING), running(1), (S.RETRYING, 2, None)),
    # Temporal scheduled that retry: the countdown comes from describe.
    (rec(S.RETRYING, 1), query(S.RUNNING), backoff(2), (S.RETRYING, 2, AT)),
    # The retry is due and no worker has picked it up.
    (rec(S.RETRYING, 1), None, due(2), (S.RETRYING, 2, None)),
    # A worker started the retry before the activity recorded it.
    (rec(S.RETRYING, 1), None, running(2), (S.RUNNING, 2, None)),
    # A stale describe never sends a started attempt back to waiting.
    (rec(S.RUNNING, 2), None, backoff(2), (S.RUNNING, 2, None)),
    (rec(S.RUNNING, 3), None, running(2), (S.RUNNING, 3, None)),
    # An attempt that died without a word (worker killed, timeout): only describe knows.
    (rec(S.RUNNING, 1), None, backoff(2), (S.RETRYING, 2, AT)),
    (rec(S.RUNNING, 1), None, due(2), (S.RETRYING, 2, None)),
    (rec(S.RUNNING, 1), None, running(2), (S.RUNNING, 2, None)),
    # An attempt that ended records how; describe has nothing to add.
    (rec(S.COMPLETED, 3), None, running(3), (S.COMPLETED, 3, None)),
    (rec(S.FAILED, 6), None, backoff(7), (S.FAILED, 6, None)),
    # The workflow's verdict on a finished step wins over everything.
    (rec(S.RUNNING, 2), query(S.COMPLETED, 2), running(2), (S.COMPLETED, 2, None)),
    (rec(S.RETRYING, 6), query(S.FAILED, 6), None, (S.FAILED, 6, None)),
    (rec(S.COMPLETED, 1), query(S.COMPENSATED, 1), None, (S.COMPENSATED, 1, None)),
    (rec(S.PENDING, 0), query(S.SKIPPED), None, (S.SKIPPED, 0, None)),
    (rec(S.RUNNING, 1), query(S.SKIPPED), None, (S.SKIPPED, 1, None)),
    # The saga's states come with the finish too, recorded in the database.
    (rec(S.COMPENSATED, 2), None, None, (S.COMPENSATED, 2, None)),
    (rec(S.SKIPPED, 0), None, None, (S.SKIPPED, 0, None)),
]


@pytest.mark.parametrize(("recorded", "queried", "pending", "expected"), TABLE)
def test_the_page_shows_one_state_for_each_combination(recorded, queried, pending, expected):
    view = step_view("inventory", recorded, queried, pending)
    assert (view.state, view.attempt, view.next_retry_at) == expected


def test_the_error_shown_is_the_newest_sources():
    recorded = rec(S.RETRYING, 1, "from the attempt")
    assert step_view("inventory", recorded).last_error == "from the attempt"
    assert step_view("inventory", recorded, None, backoff(2)).last_error == "from describe"
    stale = step_view("inventory", recorded, None, running(1))
    assert stale.last_error == "from the attempt"


RECORDED = [rec(state, n) for state in S.values for n in (0, 1, 2)]
QUERIED = [None, *(query(state, n) for state in S.values for n in (0, 2))]
PENDING = [None, *(f(n) for f in (running, backoff, due) for n in (1, 2, 3))]


@pytest.mark.parametrize("recorded", RECORDED)
def test_no_combination_moves_a_step_backwards(recorded):
    for queried, pending in product(QUERIED, PENDING):
        view = step_view("inventory", recorded, queried, pending)
        assert view.state in S.values
        # Never an attempt older than the one the attempts themselves recorded.
        assert view.attempt >= recorded.attempt
        # A countdown only for a step that waits for its retry.
        assert view.next_retry_at is None or view.state == S.RETRYING
