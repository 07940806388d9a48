"""The one-click demo from the page: the demo order button and the scenario buttons."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User

from orders.models import Action, Engine, OperatorAction, Order
from orders.scenarios import CUSTOMERS, SCENARIOS
from orders.simulator.models import ServiceSwitch
from tests.conftest import set_switch

HTMX = {"HX-Request": "true"}


@pytest.fixture
def temporal_no_worker(dev_server_address, settings, transactional_db) -> None:
    """The real dev server on a task queue no worker polls: orders start and wait there.

    What a scenario's orders go on to do is the browser tests' part; a crash switch
    here would take down the test process's own worker threads with it.
    """
    settings.TEMPORAL_ADDRESS = dev_server_address
    settings.TEMPORAL_TASK_QUEUE = f"test-{uuid.uuid4()}"


def modes() -> dict[str, str]:
    return dict(ServiceSwitch.objects.values_list("service", "mode"))


def test_the_demo_order_button_places_one_order_for_a_made_up_customer(
    client, live_temporal, catalogue
):
    response = client.post("/demo/order/", headers=HTMX)

    order = Order.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert order.customer_name in {name for name, _ in CUSTOMERS}
    assert order.workflow_id and order.engine == Engine.TEMPORAL
    assert f'data-demo-placed="{order.pk}"' in html
    assert f'id="order-{order.pk}"' in html  # the board, out of band


@pytest.mark.parametrize(
    ("name", "switched", "engines"),
    [
        ("seed-story", {"inventory": "flaky"}, [Engine.TEMPORAL]),
        ("payment-outage", {"payment": "down"}, [Engine.TEMPORAL, Engine.TEMPORAL]),
        ("crash-during-payment", {"payment": "crash"}, [Engine.PLAIN, Engine.TEMPORAL]),
        ("sms-down", {"sms": "down"}, [Engine.TEMPORAL]),
        ("reset", {}, []),
    ],
)
def test_a_scenario_sets_every_switch_places_its_orders_and_records_why(
    client, temporal_no_worker, catalogue, name, switched, engines
):
    set_switch("shipping", "down")  # left over from before: every scenario undoes it

    response = client.post(f"/demo/scenarios/{name}/", headers=HTMX)

    assert response.status_code == 200
    assert modes() == {service: "healthy" for service in modes()} | switched
    assert sorted(Order.objects.values_list("engine", flat=True)) == sorted(engines)
    started = Order.objects.filter(engine=Engine.TEMPORAL)
    assert all(order.workflow_id for order in started)  # on the real dev server
    flips = OperatorAction.objects.filter(action=Action.SWITCH)
    assert {(flip.service, flip.reason) for flip in flips} == {
        (service, f"scenario {name}") for service in {*switched, "shipping"}
    }
    assert f'data-scenario-told="{name}"' in response.content.decode()


def test_the_seed_story_flaky_switch_fails_exactly_twice(client, temporal_no_worker, catalogue):
    client.post("/demo/scenarios/seed-story/", headers=HTMX)
    switch = ServiceSwitch.objects.get(service="inventory")
    assert (switch.mode, switch.failures) == ("flaky", 2)
    assert SCENARIOS["seed-story"].orders == 1


def test_an_unknown_scenario_is_explained_and_changes_nothing(client, catalogue):
    before = modes()

    response = client.post("/demo/scenarios/nope/", headers=HTMX)

    assert response.status_code == 404
    assert "There is no scenario “nope”" in response.content.decode()
    assert modes() == before
    assert not Order.objects.exists() and not OperatorAction.objects.exists()


def test_scenarios_only_take_posts(client, catalogue):
    assert client.get("/demo/scenarios/reset/").status_code == 405
    assert client.get("/demo/order/").status_code == 405


def test_outside_demo_mode_a_viewer_may_not_run_a_scenario(client, settings, catalogue):
    settings.DEMO_MODE = False
    client.force_login(User.objects.create_user("vera", password="a long passphrase"))
    before = modes()

    for url in ("/demo/scenarios/sms-down/", "/demo/order/"):
        response = client.post(url, headers=HTMX)
        assert response.status_code == 403
    assert modes() == before
    assert not Order.objects.exists() and not OperatorAction.objects.exists()


def test_the_dashboard_shows_the_demo_buttons_and_a_prefilled_form(client, catalogue):
    html = client.get("/").content.decode()
    assert 'id="demo-order"' in html
    for name in SCENARIOS:
        assert f'data-scenario="{name}"' in html
    name = next(name for name, _ in CUSTOMERS if f'value="{name}"' in html)
    assert name
