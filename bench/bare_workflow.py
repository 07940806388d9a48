"""The bare-SDK baseline for bench/throughput.py: six no-op activities in sequence.

A module of its own so the workflow sandbox can import it without running the benchmark.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

STEPS = 6


@activity.defn
def noop(step: int) -> int:
    return step


@workflow.defn
class BareWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=5))
        return steps
