"""Demo mode and logins: who may watch, who may act, and what the others are told."""

from __future__ import annotations

import io

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command

from orderdash.asgi import application
from orders.models import Order
from orders.simulator.models import ServiceSwitch

ORDER = {
    "product": "MS-02",
    "quantity": "1",
    "customer_name": "Margaret Hamilton",
    "email": "margaret@example.com",
    "address": "11 Apollo Street",
}


@pytest.fixture
def locked(settings, catalogue):
    settings.DEMO_MODE = False


@pytest.fixture
def viewer(client) -> User:
    user = User.objects.create_user("vera", password="a long passphrase")
    client.force_login(user)
    return user


@pytest.fixture
def operator(client) -> User:
    # Tests that flush the database remove what migrations wrote: make the group again.
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.add(Permission.objects.get(codename="operate_orders"))
    user = User.objects.create_user("otto", password="a long passphrase")
    user.groups.add(group)
    client.force_login(user)
    return user


def test_a_migration_creates_the_operators_group_with_its_permission(db):
    group = Group.objects.get(name="operators")
    assert [p.codename for p in group.permissions.all()] == ["operate_orders"]


@pytest.mark.parametrize("path", ["/", "/orders/1/", "/orders/1/compare/", "/?page=2"])
def test_outside_demo_mode_every_page_sends_strangers_to_the_login(client, locked, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_outside_demo_mode_a_stranger_cannot_place_an_order(client, locked):
    response = client.post("/orders/new/", ORDER)
    assert response.status_code == 302 and not Order.objects.exists()


def test_the_login_page_explains_itself_and_logs_in(client, locked):
    User.objects.create_user("otto", password="a long passphrase")
    page = client.get("/accounts/login/").content.decode()
    assert 'id="login"' in page and "Operators" in page
    response = client.post(
        "/accounts/login/", {"username": "otto", "password": "a long passphrase", "next": "/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert 'data-user="otto"' in client.get("/").content.decode()
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_a_viewer_sees_everything_read_only(client, locked, viewer):
    page = client.get("/").content.decode()
    assert 'data-read-only="true"' in page and 'id="place-order"' not in page
    assert 'data-may-act="false"' in page and "watching only" in page
    assert 'data-demo-mode="on"' not in page


@pytest.mark.parametrize(
    ("path", "data"),
    [("/orders/new/", ORDER), ("/services/payment/", {"mode": "down"})],
)
def test_a_viewer_who_tries_to_act_is_refused_and_nothing_changes(
    client, locked, viewer, path, data
):
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(path, data, headers=headers)
        assert response.status_code == 403
        assert "need the “operators” group. Nothing was changed." in response.content.decode()
    assert not Order.objects.exists()
    assert ServiceSwitch.objects.get(service="payment").mode == "healthy"


def test_an_operator_may_act(client, locked, operator):
    response = client.post("/services/payment/", {"mode": "down"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert ServiceSwitch.objects.get(service="payment").mode == "down"
    assert 'id="place-order"' in client.get("/").content.decode()


def test_demo_mode_lets_anyone_act_and_says_so(client, catalogue, settings):
    settings.DEMO_MODE = True
    page = client.get("/").content.decode()
    assert 'data-demo-mode="on"' in page and 'id="place-order"' in page
    response = client.post("/services/sms/", {"mode": "down"}, headers={"HX-Request": "true"})
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/orders/", "/ws/orders/1/"])
async def test_outside_demo_mode_a_strangers_socket_is_told_and_closed(settings, path):
    settings.DEMO_MODE = False
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert "Log in to see live updates." in await communicator.receive_from(timeout=10)
    assert (await communicator.receive_output(timeout=10))["code"] == 4403
    await communicator.disconnect()


def test_outside_demo_mode_seeding_creates_no_default_password(locked):
    User.objects.all().delete()
    call_command("seed_demo", stdout=io.StringIO())
    assert not User.objects.exists()
