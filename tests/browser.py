"""Driving the dashboard in Chromium, shared by the browser tests and the topology test."""

from __future__ import annotations

import time

from playwright.sync_api import FloatRect, Locator, Page, expect


def box_once_in_place(locator: Locator, timeout: float = 5) -> FloatRect | None:
    """Where an element is on the page, or None if it never shows within `timeout`.

    The page's socket swaps the board, the switches and the metrics in as it connects:
    an element found just before a swap is measured detached, with no box. Measured
    again, the locator finds the one that replaced it.
    """
    deadline = time.monotonic() + timeout
    while (box := locator.bounding_box()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return box


def submit_order_form(
    page: Page,
    *,
    sku: str = "KB-01",
    quantity: int | None = None,
    name: str = "Ada Lovelace",
    email: str = "ada@example.com",
    phone: str | None = None,
    address: str = "12 Analytical Row, London",
) -> Locator:
    """Fill the place-order form as a person does and submit it; the link to the new
    order in the form's flash, once it shows. Fields left None keep what the form has."""
    form = page.locator("#place-order")
    form.locator("select[name=product]").select_option(sku)
    if quantity is not None:
        form.locator("input[name=quantity]").fill(str(quantity))
    form.locator("input[name=customer_name]").fill(name)
    form.locator("input[name=email]").fill(email)
    if phone is not None:
        form.locator("input[name=phone]").fill(phone)
    form.locator("input[name=address]").fill(address)
    form.get_by_role("button", name="Place order").click()
    placed = page.locator("#place-order .flash a")
    expect(placed).to_be_visible()
    return placed
