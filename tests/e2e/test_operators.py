"""An operator at work in the browser: approve a big order, pause and resume a step."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import submit_order_form

pytestmark = pytest.mark.e2e


def place(page: Page, sku: str, quantity: int) -> str:
    """Place an order from the dashboard; open its page; return its number."""
    link = submit_order_form(
        page,
        sku=sku,
        quantity=quantity,
        name="Grace Hopper",
        email="grace@example.com",
        address="1 Harvard Mark Way",
    )
    number = link.inner_text().lstrip("#")
    link.click()
    return number


def test_a_big_order_waits_for_approval_and_an_operator_approves_it(page: Page, stack):
    page.goto(stack.url + "/")
    expect(page.locator("[data-approval-policy]")).to_contain_text("$1,000.00 or more")
    number = place(page, "MN-27", 4)  # 4 × $279.00
    order = page.locator(f"#order-{number}")
    expect(order).to_have_attribute("data-order-status", "awaiting_approval")
    expect(order.locator("[data-awaiting-approval]")).to_be_visible()
    approve = order.locator('[data-action="approve"]')
    approve.locator("input[name=reason]").fill("known customer")
    # A live update lands while the reason is typed (a refused action joins the order's
    # history): the typed reason must survive the swap and reach the server.
    stack.manage("order", "retry-now", number, "--step", "payment", ok=(0, 1, 2))
    expect(order.locator('[data-history="retry-now"]')).to_be_visible()
    expect(approve.locator("input[name=reason]")).to_have_value("known customer")
    approve.get_by_role("button", name="Approve").click()
    expect(page.locator("#action-result")).to_contain_text("approved")
    expect(order).to_have_attribute("data-order-status", "completed")
    expect(order.locator('[data-history="approve"]')).to_contain_text("known customer")


def test_an_operator_pauses_a_retrying_step_and_resumes_it(page: Page, stack):
    stack.manage("services", "set", "payment", "down")
    page.goto(stack.url + "/")
    number = place(page, "KB-01", 1)
    order = page.locator(f"#order-{number}")
    payment = order.locator('[data-step="payment"][data-state]')
    expect(payment).to_have_attribute("data-state", "retrying")
    payment.locator('[data-action="pause"] button').click()
    expect(payment).to_have_attribute("data-state", "paused")
    stack.manage("services", "set", "payment", "healthy")
    payment.locator('[data-action="resume"] button').click()
    expect(order).to_have_attribute("data-order-status", "completed")
    expect(order.locator('[data-history="pause"]')).to_be_visible()
    expect(order.locator('[data-history="resume"]')).to_be_visible()
