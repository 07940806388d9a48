"""The metrics strip and the live charts in the browser: they move with the orders."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_dashboard import place_order_from_page

pytestmark = pytest.mark.e2e


def figure(page: Page, name: str) -> int:
    return int(page.locator(f'[data-metric="{name}"]').get_attribute("data-value"))


def test_the_charts_and_the_strip_update_live_when_an_order_completes(page: Page, stack):
    page.goto(stack.url + "/")
    expect(page.locator('[data-metric="worker_up"]')).to_have_attribute("data-value", "1")
    chart = page.locator('[data-chart="throughput"]')
    # Orders of earlier tests may still finish: wait for the chart to settle first.
    expect(page.locator("[data-order-status=running]")).to_have_count(0)
    completed_before = int(chart.get_attribute("data-completed"))
    placed_before = int(chart.get_attribute("data-placed"))

    row_id = place_order_from_page(page)
    expect(page.locator(f"#{row_id}")).to_have_attribute("data-order-status", "completed")

    # No reload: the hub pushes the new picture over the board's websocket.
    expect(chart).to_have_attribute("data-completed", str(completed_before + 1))
    expect(chart).to_have_attribute("data-placed", str(placed_before + 1))
    expect(chart.locator("rect.series-completed").last).to_be_visible()
    assert figure(page, "completed_per_minute") >= 1
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_the_strip_fits_one_row_and_leaves_the_form_and_switches_above_the_fold(browser, stack):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.goto(stack.url + "/")
        strip = page.locator("#metrics-strip")
        expect(strip).to_be_visible()
        box = strip.bounding_box()
        assert box and box["height"] < 48, box  # one row
        for name in ("in_flight", "waiting", "completed_per_minute", "failed_per_minute"):
            expect(page.locator(f'[data-metric="{name}"]')).to_be_in_viewport()
        expect(page.locator('[data-metric="worker_up"]')).to_have_attribute("data-value", "1")
        # Under it the panels start right away: the form's first field is on screen.
        expect(page.locator("#place-order select[name=product]")).to_be_in_viewport()
    finally:
        context.close()
