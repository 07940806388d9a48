"""The board in the browser: filters kept in the address bar on a board that stays live,
and a bulk action with its confirmation."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e


def place(page: Page, customer: str) -> str:
    """Place an order from the dashboard as `customer`; return its number."""
    form = page.locator("#place-order")
    form.locator("select[name=product]").select_option("KB-01")
    form.locator("input[name=quantity]").fill("1")
    form.locator("input[name=customer_name]").fill(customer)
    form.locator("input[name=email]").fill("barbara@example.com")
    form.locator("input[name=address]").fill("5 Substitution Street")
    form.get_by_role("button", name="Place order").click()
    link = page.locator("#place-order .flash a")
    expect(link).to_be_visible()
    return link.inner_text().lstrip("#")


def test_a_filtered_board_keeps_its_filter_in_the_address_and_stays_live(page: Page, stack):
    customer = f"Liskov {uuid.uuid4().hex[:6]}"
    page.goto(stack.url + "/")
    filters = page.locator("#board-filters")
    filters.locator("select[name=service]").select_option("payment")
    expect(page).to_have_url(re.compile(r"/\?service=payment$"))
    filters.locator("select[name=state]").select_option("retrying")
    expect(page).to_have_url(re.compile(r"/\?state=retrying&service=payment$"))
    search = filters.locator("input[name=q]")
    search.fill(customer)
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"q=Liskov\+"))
    expect(page.locator("[data-no-match]")).to_be_visible()

    stack.manage("services", "set", "payment", "down")
    number = place(page, customer)
    row = page.locator(f"#order-{number}")
    # It starts matching (retrying on payment): the filtered board gains it, live.
    expect(row.locator('[data-step="payment"]')).to_have_attribute("data-state", "retrying")
    expect(row.locator("[data-current-step]")).to_have_attribute("data-current-step", "payment")
    expect(page.locator("#order-list tbody tr")).to_have_count(1)

    # A bookmark of this address opens the same filtered, live board.
    bookmarked = page.context.new_page()
    bookmarked.goto(page.url)
    expect(bookmarked.locator("#board-filters select[name=service]")).to_have_value("payment")
    expect(bookmarked.locator("#board-filters input[name=q]")).to_have_value(customer)
    expect(bookmarked.locator(f"#order-{number}")).to_be_visible()

    # It stops matching (payment back, the order completes): it leaves both boards, live.
    stack.manage("services", "set", "payment", "healthy")
    expect(row).to_have_count(0)
    expect(bookmarked.locator(f"#order-{number}")).to_have_count(0)
    expect(page.locator("[data-no-match]")).to_be_visible()


def test_a_bulk_cancel_says_how_many_orders_it_will_touch_then_cancels_them(page: Page, stack):
    customer = f"Hoare {uuid.uuid4().hex[:6]}"
    stack.manage("services", "set", "shipping", "down")
    page.goto(stack.url + "/")
    numbers = [place(page, customer), place(page, customer)]
    page.goto(f"{stack.url}/?status=running&q={customer.replace(' ', '+')}")
    for number in numbers:
        expect(page.locator(f"#order-{number}")).to_be_visible()

    page.locator('[data-bulk-action="cancel"]').click()
    panel = page.locator("#bulk-panel")
    expect(panel).to_have_attribute("data-bulk-count", "2")
    expect(panel).to_contain_text("on 2 orders")
    panel.locator("input[name=reason]").fill("customer withdrew")
    panel.locator('[data-bulk-confirm="cancel"]').click()
    expect(panel).to_have_attribute("data-bulk-done", "2")
    expect(panel).to_have_attribute("data-bulk-refused", "0")

    page.goto(f"{stack.url}/?status=cancelled&q={customer.replace(' ', '+')}")
    for number in numbers:
        expect(page.locator(f"#order-{number}")).to_have_attribute("data-order-status", "cancelled")


def test_a_refused_bulk_action_says_why_in_the_page(page: Page, stack):
    # Refusals answer 409: the page must show them, not drop them as htmx 2 does by default.
    nobody = f"Nobody {uuid.uuid4().hex[:6]}"
    page.goto(f"{stack.url}/?q={nobody.replace(' ', '+')}")
    page.locator('[data-bulk-action="cancel"]').click()
    expect(page.locator("#bulk-panel")).to_contain_text("No order matches")
