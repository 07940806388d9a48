"""The chaos panel in the browser: start a run, watch its scoreboard move, stop it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from orders.contract import SERVICES

pytestmark = pytest.mark.e2e

STOP_ANY_RUN = (
    "from orders.chaos import current_run, request_stop\n"
    "run = current_run()\n"
    "if run is not None:\n"
    "    request_stop(run, 'test cleanup')\n"
)


@pytest.fixture
def no_run_left_behind(stack):
    """A failing test must not leave a run breaking services under the tests after it."""
    yield
    stack.manage("shell", "--no-imports", "-c", STOP_ANY_RUN)


def test_a_chaos_run_started_from_the_panel_scores_live_and_stop_heals_every_switch(
    page: Page, stack, no_run_left_behind
):
    page.goto(stack.url + "/")
    panel = page.locator("[data-chaos]")
    expect(panel).to_have_attribute("data-chaos", re.compile("idle|finished|interrupted"))
    panel.locator("input[name=orders]").fill("30")
    panel.locator("input[name=minutes]").fill("2")
    panel.get_by_role("button", name="Start chaos run").click()
    expect(panel).to_have_attribute("data-chaos", "running")

    # The scoreboard refreshes by itself while the run places orders.
    placed = panel.locator('[data-score="placed"] [data-engine="temporal"]')
    expect(placed).to_have_text(re.compile(r"^[1-9]\d*$"))
    first = int(placed.inner_text())
    expect(placed).not_to_have_text(str(first))
    # The run breaks services through the switches, which every dashboard shows live.
    broken = page.locator('[data-service]:not([data-mode="healthy"])')
    expect(broken.first).to_be_visible(timeout=60_000)

    panel.locator("[data-chaos-stop]").click()
    for service in SERVICES:
        expect(page.locator(f'[data-service="{service}"]')).to_have_attribute(
            "data-mode", "healthy"
        )
    expect(panel).to_have_attribute("data-chaos", re.compile("settling|finished"))
    expect(panel.locator("[data-chaos-stop]")).to_have_count(0)
    # Once every order has settled: the numbers stay on screen, with the verdict.
    expect(panel).to_have_attribute("data-chaos", "finished", timeout=240_000)
    expect(panel.locator("[data-chaos-run]")).to_contain_text("Stopped by")
    expect(panel.locator("[data-chaos-verdict]")).to_have_attribute("data-chaos-verdict", "kept")
    placed_in_the_end = int(placed.inner_text())
    assert 2 <= placed_in_the_end < 30
    lost = panel.locator('[data-score="lost"] [data-engine="temporal"]')
    expect(lost).to_have_text("0")
