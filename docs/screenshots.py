"""Take the screenshots in docs/screenshots/ from a real, throwaway stack.

Run by hand from anywhere: `.venv/bin/python docs/screenshots.py`.

It starts its own Temporal dev server (in memory), a fresh SQLite database in a temporary
directory, daphne and a supervised worker, all on free ports; places orders that end in
each interesting state; and drives Debian's Chromium with Playwright. Every wait is on the
page's data attributes, never on a sleep. Everything it started is stopped at the end.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from orderdash.stack import CHROMIUM, LocalStack, chromium, throwaway_env  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}
PLACED = re.compile(r"Order #(\d+) placed")


class Stack(LocalStack):
    """The launcher's stack, plus the two terminal tools the shots are set up with."""

    def switch(self, service: str, mode: str, *extra: str) -> None:
        self.manage("services", "set", service, mode, *extra)

    def place(self, sku: str, quantity: int, customer: str, *, wait: bool, ok: int = 0) -> int:
        first = customer.split()[0].lower()
        args = ["place_order", "--product", sku, "--quantity", str(quantity)]
        args += ["--customer", customer, "--email", f"{first}@example.com"]
        if wait:
            args.append("--wait")
        output = self.manage(*args, ok=(ok,))
        match = PLACED.search(output)
        if match is None:
            raise RuntimeError(f"no order number in:\n{output}")
        return int(match.group(1))


@contextmanager
def running_stack() -> Iterator[Stack]:
    """Temporal dev server, database, daphne and worker, all private to one run; on a
    failure the last lines of each log are printed before the directory goes."""
    workdir = Path(tempfile.mkdtemp(prefix="orderdash-screenshots-"))
    env = throwaway_env(workdir, "screenshots") | {"WORKER_RESTART_PAUSE": "0.5"}
    try:
        with Stack(env=env, log_dir=workdir) as stack:
            stack.start_temporal()
            stack.manage("migrate", "--no-input")
            stack.manage("seed_demo")
            stack.start_web()
            stack.start_worker()
            yield stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def new_page(browser: Browser) -> Page:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(30_000)
    return page


def shoot(page: Page, name: str, *, full_page: bool) -> None:
    path = OUT / name
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="initial")
    print(f"saved {path.relative_to(ROOT)}")


def row(page: Page, order_id: int) -> Locator:
    return page.locator(f"#order-{order_id}")


def take_screenshots(stack: Stack, browser: Browser) -> None:
    # Finished orders, one per ending: each command follows its order to the end.
    stack.place("KB-01", 1, "Ada Lovelace", wait=True)
    stack.place("MN-27", 2, "Grace Hopper", wait=True)
    stack.switch("sms", "down")
    stack.place("HS-03", 1, "Alan Turing", wait=True, ok=2)  # completed with warnings
    stack.switch("sms", "healthy")
    stack.switch("payment", "reject")
    failed = stack.place("MS-02", 3, "Katherine Johnson", wait=True, ok=1)
    stack.switch("payment", "healthy")

    # One order retrying live: shipping fails four times, then works on the fifth (last) try.
    dashboard = new_page(browser)
    dashboard.goto(stack.url + "/")
    expect(dashboard.locator("[data-worker]")).to_have_attribute("data-worker", "up")
    shipping_switch = dashboard.locator('[data-service="shipping"]')
    stack.switch("shipping", "flaky", "--failures", "4")
    expect(shipping_switch).to_have_attribute("data-mode", "flaky")
    retrying = stack.place("CB-04", 5, "Edsger Dijkstra", wait=False)
    order_page = new_page(browser)
    order_page.goto(f"{stack.url}/orders/{retrying}/")
    # After the third failure Temporal waits 4 s before attempt 4, and the switch still
    # has one failure to go: a wide enough window for both shots, with the switch flaky.
    shipping = order_page.locator('[data-step="shipping"][data-state]')
    expect(shipping).to_have_attribute("data-attempt", "4")
    expect(shipping).to_have_attribute("data-state", "retrying")
    expect(shipping.locator(".countdown")).to_have_text(re.compile(r"^in [1-9]\.\d s$"))
    shoot(order_page, "order-retrying.png", full_page=True)
    live_row = row(dashboard, retrying)
    expect(live_row).to_have_attribute("data-order-status", "running")
    live_shipping = live_row.locator('[data-step="shipping"][data-state]')
    expect(live_shipping).to_have_attribute("data-state", "retrying")
    expect(live_shipping).to_have_attribute("data-attempt", "4")  # the attempt coming next
    expect(shipping_switch).to_have_attribute("data-mode", "flaky")
    shoot(dashboard, "dashboard.png", full_page=True)
    expect(row(order_page, retrying)).to_have_attribute("data-order-status", "completed")
    expect(live_row).to_have_attribute("data-order-status", "completed")
    # Its timeline: four failed attempts with the backoff waited between them, then one ok.
    timeline = order_page.locator("[data-timeline]")
    expect(timeline.locator('[data-attempt][data-step="shipping"]')).to_have_count(5)
    timeline.screenshot(path=str(OUT / "order-timeline.png"), animations="disabled")
    print("saved docs/screenshots/order-timeline.png")
    order_page.context.close()

    # The same board's charts, pushed live: four completed (one with warnings), one
    # failed, and the four shipping retries of the order above.
    throughput = dashboard.locator('[data-chart="throughput"]')
    expect(throughput).to_have_attribute("data-completed", "4")
    expect(throughput).to_have_attribute("data-failed", "1")
    expect(dashboard.locator('[data-chart="retries"]')).to_have_attribute("data-shipping", "4")
    path = OUT / "metrics.png"
    dashboard.locator(".panel-metrics").screenshot(path=str(path), animations="disabled")
    print(f"saved {path.relative_to(ROOT)}")

    # The failed order: payment rejected, the inventory reservation undone.
    failed_page = new_page(browser)
    failed_page.goto(f"{stack.url}/orders/{failed}/")
    expect(row(failed_page, failed)).to_have_attribute("data-order-status", "failed")
    expect(failed_page.locator('[data-step="payment"][data-state]')).to_have_attribute(
        "data-state", "failed"
    )
    expect(failed_page.locator('[data-step="inventory"][data-state]')).to_have_attribute(
        "data-state", "compensated"
    )
    shoot(failed_page, "order-failed.png", full_page=True)
    failed_page.context.close()

    # An operator at work: a big order held for approval, a reason being typed, and the
    # order's record of who did what (a refused retry-now included).
    held = stack.place("MN-27", 4, "Frances Allen", wait=False)
    # Tall enough for the whole order: the inbox banner stays at the window's foot.
    operator_page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
    operator_page.set_default_timeout(30_000)
    operator_page.goto(f"{stack.url}/orders/{held}/")
    expect(row(operator_page, held)).to_have_attribute("data-order-status", "awaiting_approval")
    stack.manage("order", "retry-now", str(held), "--step", "payment", ok=(0, 1, 2))
    expect(operator_page.locator('[data-history="retry-now"]')).to_be_visible()
    approve = operator_page.locator('[data-action="approve"]')
    approve.locator("input[name=reason]").fill("known customer, confirmed by phone")
    shoot(operator_page, "operator.png", full_page=False)
    approve.get_by_role("button", name="Approve").click()
    expect(row(operator_page, held)).to_have_attribute("data-order-status", "completed")
    operator_page.context.close()

    # Bad input, explained next to each field.
    form_page = new_page(browser)
    form_page.goto(stack.url + "/")
    form = form_page.locator("#place-order")
    form.locator("input[name=quantity]").fill("0")
    form.locator("input[name=customer_name]").fill("")  # prefilled with a made-up customer
    form.locator("input[name=email]").fill("ada@")
    form.locator("input[name=phone]").fill("call me")
    form.get_by_role("button", name="Place order").click()
    for field in ("quantity", "email", "customer_name"):
        expect(
            form_page.locator(f'#place-order [data-field="{field}"] .field-error')
        ).to_be_visible()
    shoot(form_page, "validation.png", full_page=False)
    form_page.context.close()

    # The worker stops: the pill turns, and a new order waits in Temporal for a worker.
    stack.stop_worker()
    expect(dashboard.locator("[data-worker]")).to_have_attribute("data-worker", "down")
    waiting = stack.place("KB-01", 1, "Barbara Liskov", wait=False)
    expect(row(dashboard, waiting)).to_have_attribute("data-order-status", "pending")
    expect(dashboard.locator("[data-worker]")).to_have_attribute("data-worker", "down")
    shoot(dashboard, "worker-down.png", full_page=False)
    dashboard.context.close()


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    # Retries back off 1, 2, 4, 8 s: give every wait room for that.
    expect.set_options(timeout=30_000)
    with running_stack() as stack, chromium() as browser:
        take_screenshots(stack, browser)


if __name__ == "__main__":
    main()
