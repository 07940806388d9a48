"""The web side's door to Temporal: one client per event loop, and small typed helpers.

Temporal clients are bound to the event loop that created them. Daphne has one loop for
the life of the process; management commands and sync views get a fresh one per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, timedelta

from django.conf import settings
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    PauseActivityRequest,
    UnpauseActivityRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from orders.contract import (
    ACTIVITY_STEPS,
    DECIDE_UPDATE,
    PROGRESS_QUERY,
    STEP_ACTIVITIES,
    WORKFLOW_NAME,
    Decision,
    OrderInput,
    OrderProgress,
    format_cents,
    workflow_id_for,
)
from orders.step_state import PendingAttempt

# Per event loop, one client per (address, namespace): settings may point elsewhere later.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Client]] = (
    weakref.WeakKeyDictionary()
)


class TemporalUnavailable(Exception):
    """Temporal could not be reached; the message says where we tried."""


# After a failed connect, say "unreachable" at once for a while instead of making every
# page wait for the connect timeout again.
CONNECT_RETRY_AFTER_S = 3.0
_connect_failures: dict[str, tuple[float, str]] = {}  # address -> (when, why)


async def get_client() -> Client:
    loop = asyncio.get_running_loop()
    target = (settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE)
    client = _clients.get(loop, {}).get(target)
    if client is not None:
        return client
    failed_at, reason = _connect_failures.get(settings.TEMPORAL_ADDRESS, (-1e9, ""))
    if time.monotonic() - failed_at < CONNECT_RETRY_AFTER_S:
        raise TemporalUnavailable(reason)
    try:
        client = await asyncio.wait_for(
            Client.connect(settings.TEMPORAL_ADDRESS, namespace=settings.TEMPORAL_NAMESPACE),
            # A refused connection fails at once; a slow first connect on a busy machine
            # should not be mistaken for an unreachable server.
            timeout=max(5.0, settings.TEMPORAL_RPC_TIMEOUT * 3),
        )
    except (RuntimeError, TimeoutError, RPCError) as exc:
        reason = f"Temporal is not reachable at {settings.TEMPORAL_ADDRESS}: {exc}"
        _connect_failures[settings.TEMPORAL_ADDRESS] = (time.monotonic(), reason)
        raise TemporalUnavailable(reason) from exc
    _clients.setdefault(loop, {})[target] = client
    return client


# A workflow task takes milliseconds; one held by a worker that died is handed to another
# after this (Temporal's default, 10 s, left orders standing while workers were killed).
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=5)


def rpc_timeout() -> timedelta:
    return timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT)


class WorkflowIdTaken(Exception):
    """Temporal holds a workflow under this id that another order started."""


async def start_order_workflow(order: OrderInput, workflow_id: str, placed_at: str) -> None:
    """Start the order's workflow exactly once.

    The id is the order's and a second start of it is refused, running or closed, so a
    start that already went through (its answer lost, or another starter first) is
    adopted, never doubled. `placed_at`, kept in the workflow's memo, tells our order's
    workflow from one another database started under the same id.
    """
    client = await get_client()
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            order,
            id=workflow_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={"placed_at": placed_at},
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            # What the Temporal Web UI lists for the workflow, as the dashboard shows it.
            static_summary=(
                f"Order #{order.order_id}: {order.customer_name}, {order.quantity} ×"
                f" {order.sku}, {format_cents(order.amount_cents)}"
            ),
            rpc_timeout=rpc_timeout(),
        )
    except WorkflowAlreadyStartedError as exc:
        if await _placed_at(client, workflow_id) == placed_at:
            return
        raise WorkflowIdTaken(
            f"Temporal already holds another order's workflow {workflow_id}; was the"
            " dashboard's database reset while Temporal kept its history?"
        ) from exc
    except RPCError as exc:
        # The start may have gone through even though its answer did not come back.
        with contextlib.suppress(RPCError):
            if await _placed_at(client, workflow_id) == placed_at:
                return
        raise TemporalUnavailable(f"Temporal did not start {workflow_id}: {exc}") from exc


async def _placed_at(client: Client, workflow_id: str) -> str:
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=rpc_timeout())
    return str(await description.memo_value("placed_at", ""))


@dataclass
class WorkflowState:
    status: str  # Temporal's view: RUNNING, COMPLETED, FAILED, TERMINATED …
    pending: list[PendingAttempt]


async def describe_order(workflow_id: str) -> WorkflowState | None:
    """None when Temporal has no such workflow."""
    client = await get_client()
    try:
        description = await client.get_workflow_handle(workflow_id).describe(
            rpc_timeout=rpc_timeout()
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TemporalUnavailable(f"Temporal could not describe {workflow_id}: {exc}") from exc
    pending = [
        _pending_attempt(activity) for activity in description.raw_description.pending_activities
    ]
    status = description.status or WorkflowExecutionStatus.RUNNING
    return WorkflowState(status=status.name, pending=[p for p in pending if p.step])


def _pending_attempt(activity: PendingActivityInfo) -> PendingAttempt:
    next_at = None
    if activity.HasField("next_attempt_schedule_time"):
        # ToDatetime() is naive UTC.
        next_at = activity.next_attempt_schedule_time.ToDatetime().replace(tzinfo=UTC)
    last_failure = activity.last_failure.message if activity.HasField("last_failure") else ""
    return PendingAttempt(
        step=ACTIVITY_STEPS.get(activity.activity_type.name, ""),
        attempt=activity.attempt,
        last_failure=last_failure,
        next_attempt_at=next_at,
        # Scheduled but not started means waiting for a worker, not running.
        running=activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        paused=activity.paused,
    )


def order_workflow_id(order_id: int) -> str:
    """The workflow id of an order placed from this database."""
    return workflow_id_for(order_id, settings.TEMPORAL_WORKFLOW_ID_PREFIX)


def workflow_ui_url(workflow_id: str) -> str:
    return (
        f"{settings.TEMPORAL_UI_URL}/namespaces/{settings.TEMPORAL_NAMESPACE}"
        f"/workflows/{workflow_id}"
    )


WORKER_UP = "up"
WORKER_DOWN = "down"
TEMPORAL_DOWN = "unreachable"


async def worker_status() -> str:
    """up / down from the task queue's pollers, or unreachable when Temporal is away."""
    try:
        client = await get_client()
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.TEMPORAL_NAMESPACE,
                task_queue=TaskQueue(name=settings.TEMPORAL_TASK_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            ),
            timeout=rpc_timeout(),
        )
    except (TemporalUnavailable, RPCError):
        return TEMPORAL_DOWN
    now = time.time()
    for poller in response.pollers:
        if now - poller.last_access_time.ToSeconds() < settings.WORKER_POLLER_STALE_SECONDS:
            return WORKER_UP
    return WORKER_DOWN


async def query_progress(workflow_id: str) -> OrderProgress | None:
    """The workflow's own view of its steps; None when no worker answers in time."""
    client = await get_client()
    try:
        return await client.get_workflow_handle(workflow_id).query(
            PROGRESS_QUERY, result_type=OrderProgress, rpc_timeout=timedelta(seconds=1)
        )
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None


# --- what operators do to a workflow ---------------------------------------------------
# Pausing and resuming a pending activity write no workflow history: the dashboard keeps
# its own record of who did it and why (orders/actions.py).


def _execution(workflow_id: str) -> WorkflowExecution:
    return WorkflowExecution(workflow_id=workflow_id)


async def pause_step(workflow_id: str, step: str, *, identity: str, reason: str) -> None:
    """No attempt of the step starts until it is resumed (one in flight runs to its end)."""
    client = await get_client()
    await client.workflow_service.pause_activity(
        PauseActivityRequest(
            namespace=settings.TEMPORAL_NAMESPACE,
            execution=_execution(workflow_id),
            identity=identity,
            type=STEP_ACTIVITIES[step],
            reason=reason,
        ),
        timeout=rpc_timeout(),
    )


async def resume_step(workflow_id: str, step: str, *, identity: str) -> None:
    """Resume a paused step where it was: same attempt count, next attempt at once."""
    client = await get_client()
    await client.workflow_service.unpause_activity(
        UnpauseActivityRequest(
            namespace=settings.TEMPORAL_NAMESPACE,
            execution=_execution(workflow_id),
            identity=identity,
            type=STEP_ACTIVITIES[step],
        ),
        timeout=rpc_timeout(),
    )


async def cancel_order_workflow(workflow_id: str, *, reason: str) -> None:
    """Ask the workflow to cancel: it undoes what was done and ends `cancelled`. The
    reason (who, and why) goes into Temporal's history too."""
    client = await get_client()
    await client.get_workflow_handle(workflow_id).cancel(reason=reason, rpc_timeout=rpc_timeout())


async def decide_order(workflow_id: str, decision: Decision) -> None:
    """Approve or reject an order waiting for approval; the workflow refuses otherwise."""
    client = await get_client()
    await client.get_workflow_handle(workflow_id).execute_update(
        DECIDE_UPDATE, decision, rpc_timeout=rpc_timeout()
    )
