"""One worker's death costs only the attempts it was running.

Two real worker processes poll one task queue, every service healthy; one of them is
killed again and again while orders run (its supervisor restarts it). Every order
completes, and the only attempts beyond the first are retries of attempts that died with
a killed worker.
"""

from __future__ import annotations

import random
import time

from orderdash.stack import LocalStack
from orders.contract import OrderStatus
from orders.models import Order
from orders.placement import place_order
from orders.simulator.models import Outcome, ServiceCall
from tests.conftest import set_switch, wait_for
from tests.test_crash import order_data

KILLS = 6
ORDERS_PER_KILL = 5
# A killed worker's workflows wait out its sticky queue (2 s, worker/main.py) or the
# workflow task it held (5 s, orders/temporal.py) before the other worker replays them.
# With Temporal's defaults (10 s each) orders stood for up to 22 s.
SLOWEST_ORDER_S = 15


def polling_count(log_file) -> int:
    """How many times a supervised worker has started polling (once per process)."""
    return log_file.read_text().count("Worker polling") if log_file.exists() else 0


def test_a_worker_killed_again_and_again_costs_only_the_attempts_it_was_running(
    process_env, catalogue, tmp_path
):
    killed: set[str] = set()
    orders: list[Order] = []
    with LocalStack(env=process_env, log_dir=tmp_path) as stack:
        stack.start_worker("worker")
        stack.start_worker("doomed-worker")
        for kills_so_far in range(KILLS):
            wait_for(
                lambda n=kills_so_far: polling_count(tmp_path / "doomed-worker.log") > n,
                60,
                "the doomed worker to be (back) at work",
            )
            orders += [place_order(order_data()) for _ in range(ORDERS_PER_KILL)]
            time.sleep(random.uniform(0.2, 0.8))  # while their attempts run on both workers
            killed.add(str(stack.kill_supervised("doomed-worker")))

        def all_settled() -> bool:
            placed = Order.objects.filter(pk__in=[o.pk for o in orders])
            return not placed.exclude(status__in=OrderStatus.final()).exists()

        wait_for(all_settled, 180, "every order to settle")
        survivor_processes = polling_count(tmp_path / "worker.log")

    placed = Order.objects.filter(pk__in=[o.pk for o in orders])
    assert set(placed.values_list("status", flat=True)) == {OrderStatus.COMPLETED}
    slowest = max((o.finished_at - o.created_at).total_seconds() for o in placed)
    assert slowest < SLOWEST_ORDER_S
    # The other worker ran throughout: every attempt it took, it answered (an answer
    # replaces a lost row), so an attempt still without an answer was a killed worker's.
    assert survivor_processes == 1
    calls = list(ServiceCall.objects.filter(order__in=orders))
    unanswered = [c for c in calls if c.outcome not in (Outcome.OK, Outcome.REPLAYED)]
    assert all(c.outcome == Outcome.LOST for c in unanswered), [str(c) for c in unanswered]
    # Named when the attempt got as far as starting; unnamed when the killed worker had
    # been handed it (with the workflow task it completed) but died before it began.
    named = [c.worker.split("@")[0] for c in unanswered if c.worker]
    assert set(named) <= killed, (named, killed)
    # Every retry follows one of those, or an attempt a killed worker finished but never
    # got to report: no attempt was spent for any other reason.
    by_attempt = {(c.order_id, c.service, c.operation, c.attempt): c for c in calls}
    for call in calls:
        if call.attempt > 1:
            before = by_attempt[(call.order_id, call.service, call.operation, call.attempt - 1)]
            died_with_its_worker = before.worker.split("@")[0] in killed
            assert before.outcome == Outcome.LOST or died_with_its_worker, (
                str(call),
                str(before),
                before.worker,
            )


def test_a_killed_workers_workflows_move_to_the_other_worker_within_seconds(
    process_env, catalogue, tmp_path
):
    # The order's workflow is cached on the first worker (its sticky queue) while payment
    # keeps failing; that worker dies, the other takes over, payment recovers. The next
    # workflow task is addressed to the dead worker's sticky queue, and waits there for
    # the sticky timeout before the survivor may take it (Temporal's default: 10 s).
    set_switch("payment", "down")
    with LocalStack(env=process_env, log_dir=tmp_path) as stack:
        stack.start_worker("doomed-worker")
        order = place_order(order_data())
        wait_for(
            lambda: ServiceCall.objects.filter(order=order, service="payment").exists(),
            60,
            "a failed payment attempt",
        )
        stack.start_worker("worker")
        wait_for(lambda: polling_count(tmp_path / "worker.log") == 1, 60, "the other worker")
        stack.kill_supervised("doomed-worker")
        set_switch("payment", "healthy")
        charged = ServiceCall.objects.filter(order=order, service="payment", outcome=Outcome.OK)
        wait_for(charged.exists, 60, "payment to go through")
        wait_for(lambda: Order.objects.get(pk=order.pk).status == "completed", 60, "completion")

    order.refresh_from_db()
    waited = (order.finished_at - charged.get().created_at).total_seconds()
    assert waited < 6, f"the order stood {waited:.1f}s after its payment went through"
