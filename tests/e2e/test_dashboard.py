"""What a person sees in the browser: break a service, place an order, watch it live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser import submit_order_form

pytestmark = pytest.mark.e2e


def place_order_from_page(page: Page, sku: str = "KB-01") -> str:
    """Fill and submit the form; return the new order's row id (order-<pk>)."""
    placed = submit_order_form(page, sku=sku, quantity=1, phone="+44 20 7946 0000")
    expect(page.locator("#place-order .flash")).not_to_contain_text("not started")
    return "order-" + placed.inner_text().lstrip("#")


def test_flaky_inventory_retries_live_until_the_order_completes(page: Page, stack):
    page.goto(stack.url + "/")
    expect(page.locator("[data-worker]")).to_have_attribute("data-worker", "up")
    inventory = page.locator('[data-service="inventory"]')
    inventory.locator("input[name=failures]").fill("2")
    inventory.get_by_role("button", name="flaky").click()
    expect(page.locator('[data-service="inventory"]')).to_have_attribute("data-mode", "flaky")

    row_id = place_order_from_page(page)
    row = page.locator(f"#{row_id}")
    expect(row.locator('[data-step="inventory"]')).to_have_attribute("data-attempt", "3")
    expect(row).to_have_attribute("data-order-status", "completed", timeout=30_000)
    # The flaky switch recovered by itself after its two failures, on every dashboard.
    expect(page.locator('[data-service="inventory"]')).to_have_attribute("data-mode", "healthy")


def test_order_page_shows_the_retry_countdown_and_the_error(page: Page, stack):
    stack.manage("services", "set", "shipping", "flaky", "--failures", "2")
    page.goto(stack.url + "/")
    row_id = place_order_from_page(page)
    page.goto(f"{stack.url}/orders/{row_id.split('-')[1]}/")
    shipping = page.locator('[data-step="shipping"][data-state]')
    expect(shipping).to_have_attribute("data-state", "retrying")
    expect(shipping.locator(".countdown")).to_have_text(re.compile(r"in \d+\.\d s|now"))
    expect(shipping).to_contain_text("Service Unavailable")
    expect(page.locator(f"#{row_id}")).to_have_attribute("data-order-status", "completed")
    expect(shipping).to_have_attribute("data-attempt", "3")
    expect(page.locator(".attempts")).to_contain_text("shipping")


def test_sms_down_completes_with_warnings(page: Page, stack):
    page.goto(stack.url + "/")
    page.locator('[data-service="sms"]').get_by_role("button", name="down").click()
    expect(page.locator('[data-service="sms"]')).to_have_attribute("data-mode", "down")
    row_id = place_order_from_page(page)
    row = page.locator(f"#{row_id}")
    expect(row).to_have_attribute("data-order-status", "completed_with_warnings", timeout=30_000)
    expect(row.locator('[data-step="sms"]')).to_have_attribute("data-state", "failed")
    expect(row.locator('[data-step="email"]')).to_have_attribute("data-state", "completed")


def test_two_pages_on_one_order_both_update(page: Page, browser, stack):
    stack.manage("services", "set", "payment", "flaky", "--failures", "2")
    page.goto(stack.url + "/")
    row_id = place_order_from_page(page)
    order_url = f"{stack.url}/orders/{row_id.split('-')[1]}/"
    other = browser.new_context().new_page()
    try:
        page.goto(order_url)
        other.goto(order_url)
        for viewer in (page, other):
            expect(viewer.locator(f"#{row_id}")).to_have_attribute(
                "data-order-status", "completed", timeout=30_000
            )
            expect(viewer.locator('[data-step="payment"][data-state]')).to_have_attribute(
                "data-attempt", "3"
            )
    finally:
        other.context.close()


def test_bad_input_is_explained_on_the_page(page: Page, stack):
    page.goto(stack.url + "/")
    form = page.locator("#place-order")
    form.locator("input[name=quantity]").fill("0")
    form.locator("input[name=customer_name]").fill("")  # prefilled with a made-up customer
    form.locator("input[name=email]").fill("nope")
    form.get_by_role("button", name="Place order").click()
    expect(page.locator('#place-order [data-field="quantity"]')).to_contain_text(
        "Quantity must be at least 1."
    )
    expect(page.locator('#place-order [data-field="email"]')).to_contain_text("email address")
    expect(page.locator('#place-order [data-field="customer_name"]')).to_contain_text("required")


def test_stopping_the_worker_shows_it_down_then_up_again(page: Page, stack):
    page.goto(stack.url + "/")
    indicator = page.locator("[data-worker]")
    expect(indicator).to_have_attribute("data-worker", "up")
    stack.stop_worker()
    try:
        expect(indicator).to_have_attribute("data-worker", "down", timeout=20_000)
    finally:
        stack.start_worker()
    expect(indicator).to_have_attribute("data-worker", "up", timeout=20_000)


def test_compare_with_a_crash_the_temporal_order_completes_and_the_plain_one_is_lost(
    page: Page, stack
):
    page.goto(stack.url + "/")
    page.locator('[data-service="payment"]').get_by_role("button", name="crash").click()
    expect(page.locator('[data-service="payment"]')).to_have_attribute("data-mode", "crash")
    form = page.locator("#place-order")
    form.locator("input[name=customer_name]").fill("Grace Hopper")
    form.locator("input[name=email]").fill("grace@example.com")
    form.locator("input[name=address]").fill("1 Compiler Way")
    form.get_by_role("button", name="Compare both engines").click()

    expect(page).to_have_url(re.compile(r"/orders/\d+/compare/$"))
    indicator = page.locator("[data-worker]")
    temporal = page.locator('[data-engine="temporal"] [data-order-status]')
    plain = page.locator('[data-engine="plain"]')
    # The worker dies right after charging, is shown down, comes back and finishes.
    expect(indicator).to_have_attribute("data-worker", "down", timeout=20_000)
    expect(indicator).to_have_attribute("data-worker", "up", timeout=30_000)
    expect(temporal).to_have_attribute("data-order-status", "completed", timeout=30_000)
    expect(page.locator('[data-engine="temporal"] [data-audit-service="payment"]')).to_have_text(
        "payment: 2 attempts, 1 charge"
    )
    # The plain script died at the same point and nothing ever picks the order up again.
    expect(plain.locator('[data-lost="true"]').first).to_contain_text(
        "lost: charged, not shipped", timeout=30_000
    )
    expect(plain.locator('[data-audit-service="payment"]')).to_have_text(
        "payment: 1 attempt, 1 charge"
    )
