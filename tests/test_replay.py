"""Workflow code changes keep old histories replayable: a query on an order placed before
a change replays that order's history on today's code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from worker.main import workflow_runner
from worker.workflows import OrderWorkflow

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize(
    "history",
    [
        # An order that waited for approval, recorded when the order's status and outcome
        # were written by ordinary activities (now local ones, behind a patch).
        "order_with_approval_before_local_records.json",
    ],
)
# The worker's runner, and the SDK's default sandbox (which also refuses a
# non-deterministic call in the workflow module).
@pytest.mark.parametrize(
    "runner", [workflow_runner, SandboxedWorkflowRunner], ids=["worker", "sandbox"]
)
async def test_an_old_history_replays_on_todays_workflow(history: str, runner) -> None:
    replayer = Replayer(workflows=[OrderWorkflow], workflow_runner=runner())
    recorded = WorkflowHistory.from_json("order-7", (HISTORIES / history).read_text())
    result = await replayer.replay_workflow(recorded, raise_on_replay_failure=False)
    assert result.replay_failure is None
