"""The metrics strip and the live charts in the browser: they move with the orders."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import box_once_in_place
from tests.e2e.test_dashboard import place_order_from_page

pytestmark = pytest.mark.e2e


def at_least(page: Page, selector: str, data: str, value: int) -> None:
    """Wait until the element's data-<data> is a number of at least `value`."""
    page.wait_for_function(
        "([selector, data, value]) =>"
        " Number(document.querySelector(selector)?.dataset[data]) >= value",
        arg=[selector, data, value],
        timeout=30_000,
    )


def test_the_charts_and_the_strip_update_live_when_an_order_completes(page: Page, stack):
    page.goto(stack.url + "/")
    expect(page.locator('[data-metric="worker_up"]')).to_have_attribute("data-value", "1")
    chart = page.locator('[data-chart="throughput"]')
    completed_before = int(chart.get_attribute("data-completed"))
    placed_before = int(chart.get_attribute("data-placed"))

    row_id = place_order_from_page(page)
    expect(page.locator(f"#{row_id}")).to_have_attribute("data-order-status", "completed")

    # No reload: the hub pushes the new picture over the board's websocket. (At least,
    # since an order of an earlier test may finish meanwhile too.)
    at_least(page, '[data-chart="throughput"]', "completed", completed_before + 1)
    at_least(page, '[data-chart="throughput"]', "placed", placed_before + 1)
    at_least(page, '[data-metric="completed_per_minute"]', "value", 1)
    expect(chart.locator("rect.series-completed").last).to_be_visible()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_the_strip_is_one_row_at_the_top_of_a_laptop_screen(browser, stack):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.goto(stack.url + "/")
        strip = page.locator("#metrics-strip")
        expect(strip).to_be_visible()
        box = box_once_in_place(strip)
        assert box and box["height"] < 48, box  # one row
        for name in ("in_flight", "waiting", "completed_per_minute", "failed_per_minute"):
            expect(page.locator(f'[data-metric="{name}"]')).to_be_in_viewport()
        expect(page.locator('[data-metric="worker_up"]')).to_have_attribute("data-value", "1")
        # Under it the panels start right away: the form's first field is on screen.
        expect(page.locator("#place-order select[name=product]")).to_be_in_viewport()
    finally:
        context.close()
