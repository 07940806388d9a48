"""The one-click demo: a demo order, a scenario told from the page, and everything a
presenter needs in view on a 1366x768 screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import box_once_in_place

pytestmark = pytest.mark.e2e

LAPTOP = {"width": 1366, "height": 768}


def placed_orders(page: Page) -> list[str]:
    placed = page.locator("[data-demo-placed]")
    expect(placed).to_be_visible()
    return placed.get_attribute("data-demo-placed").split()


def test_the_demo_order_button_places_an_order_for_a_made_up_customer(page: Page, stack):
    page.goto(stack.url + "/")
    expect(page.locator("[data-worker]")).to_have_attribute("data-worker", "up")
    page.locator("#demo-order").click()
    (number,) = placed_orders(page)
    row = page.locator(f"#order-{number}")
    expect(row).to_have_attribute("data-order-status", "completed")
    expect(page.locator("#demo-result")).to_contain_text(f"#{number} for ")


def test_the_seed_story_scenario_shows_inventory_succeeding_on_attempt_3(page: Page, stack):
    page.goto(stack.url + "/")
    page.locator('[data-scenario="seed-story"]').click()
    expect(page.locator('[data-service="inventory"]')).to_have_attribute("data-mode", "flaky")
    (number,) = placed_orders(page)
    expect(page.locator("[data-scenario-told]")).to_have_attribute(
        "data-scenario-told", "seed-story"
    )

    page.goto(f"{stack.url}/orders/{number}/")
    order = page.locator(f"#order-{number}")
    expect(order).to_have_attribute("data-order-status", "completed")
    timeline = order.locator("[data-timeline]")
    inventory = timeline.locator('[data-attempt][data-step="inventory"]')
    expect(inventory).to_have_count(3)
    expect(inventory.nth(0)).to_have_attribute("data-outcome", "error")
    expect(inventory.nth(1)).to_have_attribute("data-outcome", "error")
    expect(inventory.nth(2)).to_have_attribute("data-outcome", "ok")
    expect(inventory.nth(2)).to_have_attribute("data-attempt", "3")
    expect(inventory.nth(2)).to_be_visible()
    # The two waits between them, 1 s then 2 s, are drawn and labelled.
    expect(timeline.locator('[data-lane="inventory"] [data-gap]')).to_have_count(2)


def test_form_demo_buttons_and_switches_fit_a_1366x768_screen_without_scrolling(browser, stack):
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(stack.url + "/")
        must_show = [
            "#place-order",
            "#place-order button[type=submit]:not([name])",
            "#demo-order",
            *(
                f'[data-scenario="{name}"]'
                for name in (
                    "seed-story",
                    "payment-outage",
                    "crash-during-payment",
                    "sms-down",
                    "reset",
                )
            ),
            "#switches",
            *(
                f'[data-service="{s}"]'
                for s in ("inventory", "payment", "shipping", "email", "sms")
            ),
        ]
        for selector in must_show:
            box = box_once_in_place(page.locator(selector).first)
            assert box is not None, f"{selector} is not shown"
            inside = box["x"] >= 0 and box["y"] >= 0
            inside = inside and box["x"] + box["width"] <= LAPTOP["width"]
            assert inside and box["y"] + box["height"] <= LAPTOP["height"], (selector, box)
        # Required fields come filled with a made-up customer.
        for field in ("customer_name", "email", "address"):
            assert page.locator(f"#place-order [name={field}]").input_value()
    finally:
        context.close()
