"""With demo mode off: an operator logs in, acts on an order, and sees the result live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orderdash.stack import LocalStack
from tests.browser import submit_order_form

pytestmark = pytest.mark.e2e

CREATE_OPERATOR = (
    "from django.contrib.auth.models import Group, User\n"
    "user = User.objects.create_user('otto', password='a long passphrase')\n"
    "user.groups.add(Group.objects.get(name='operators'))\n"
)


@pytest.fixture(scope="module")
def locked_url(stack):
    """A second daphne on the same database and Temporal, with demo mode off."""
    stack.manage("shell", "--no-imports", "-c", CREATE_OPERATOR)
    with LocalStack(env=stack.env | {"DEMO_MODE": "false"}) as web:
        yield web.start_web()


def test_an_operator_logs_in_cancels_an_order_and_sees_it_undone(browser, stack, locked_url):
    stack.reset_switches()
    stack.manage("services", "set", "shipping", "down")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel order #n? …"
    try:
        page.goto(locked_url + "/")
        expect(page).to_have_url(locked_url + "/accounts/login/?next=/")
        page.fill("input[name=username]", "otto")
        page.fill("input[name=password]", "a long passphrase")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("[data-user]")).to_have_attribute("data-user", "otto")
        expect(page.locator("[data-demo-mode]")).to_have_count(0)

        submit_order_form(page).click()

        order = page.locator("article[id^=order-]")
        expect(order.locator('[data-step="shipping"][data-state]')).to_have_attribute(
            "data-state", "retrying"
        )
        cancel = order.locator('[data-action="cancel"]')
        cancel.locator("input[name=reason]").fill("customer called")
        cancel.get_by_role("button", name="Cancel order").click()
        expect(order).to_have_attribute("data-order-status", "cancelled")
        expect(order.locator('[data-history="cancel"]')).to_contain_text("otto")
        expect(order.locator('[data-step="payment"][data-state]')).to_have_attribute(
            "data-state", "compensated"
        )
    finally:
        context.close()
        stack.manage("services", "set", "shipping", "healthy")
