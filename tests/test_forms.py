"""What a person can type: OrderForm and SwitchForm messages, and apply_switch."""

from __future__ import annotations

import pytest

from orders.contract import SERVICES
from orders.forms import MAX_QUANTITY, OrderForm, SwitchForm, apply_switch
from orders.simulator.models import Mode, Product, ServiceSwitch


@pytest.fixture
def keyboard(db) -> Product:
    return Product.objects.create(
        sku="KB-01", name="Mechanical keyboard", price_cents=8900, stock=10, reserved=3
    )


def order_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "product": "KB-01",
        "quantity": "2",
        "customer_name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": "12 Analytical Row, London",
    }
    data.update(overrides)
    return data


def order_errors(**overrides: object) -> dict[str, list[str]]:
    form = OrderForm(order_data(**overrides))
    assert not form.is_valid()
    return form.errors


def switch_errors(**data: object) -> dict[str, list[str]]:
    form = SwitchForm(data)
    assert not form.is_valid()
    return form.errors


# --- OrderForm -------------------------------------------------------------------------


def test_it_accepts_a_good_order_and_strips_the_text(keyboard):
    form = OrderForm(order_data(customer_name="  Ada Lovelace  ", address=" 12 Row "))

    assert form.is_valid(), form.errors
    assert form.cleaned_data["product"] == keyboard
    assert form.cleaned_data["quantity"] == 2
    assert form.cleaned_data["customer_name"] == "Ada Lovelace"
    assert form.cleaned_data["address"] == "12 Row"


def test_it_accepts_an_order_without_a_phone(keyboard):
    form = OrderForm(order_data(phone=""))

    assert form.is_valid(), form.errors
    assert form.cleaned_data["phone"] == ""


def test_it_says_an_unknown_sku_is_not_a_product(keyboard):
    assert order_errors(product="NOPE-99") == {
        "product": ["No product with that SKU. Pick one from the list."]
    }


@pytest.mark.parametrize("quantity", ["0", "-1"])
def test_it_says_quantity_must_be_at_least_one(keyboard, quantity):
    assert order_errors(quantity=quantity) == {"quantity": ["Quantity must be at least 1."]}


@pytest.mark.parametrize("quantity", ["abc", "2.5", ""])
def test_it_says_quantity_must_be_a_whole_number(keyboard, quantity):
    errors = order_errors(quantity=quantity)

    assert list(errors) == ["quantity"]
    expected = "This field is required." if quantity == "" else "Enter a whole number."
    assert errors["quantity"] == [expected]


def test_it_caps_the_units_per_order(keyboard):
    keyboard.stock = 1000
    keyboard.save()

    assert order_errors(quantity=str(MAX_QUANTITY + 1)) == {
        "quantity": [f"At most {MAX_QUANTITY} units per order."]
    }


def test_it_refuses_more_than_the_available_stock_and_says_how_many_there_are(keyboard):
    # 10 on the shelf, 3 held for other orders: 7 available.
    assert OrderForm(order_data(quantity="7")).is_valid()
    assert order_errors(quantity="8") == {
        "quantity": ["Only 7 of Mechanical keyboard available right now."]
    }


def test_it_shows_the_available_stock_in_the_product_choices(keyboard):
    labels = [label for _value, label in OrderForm().fields["product"].choices]

    assert labels == ["Mechanical keyboard — $89.00 (7 available)"]


@pytest.mark.parametrize("email", ["ada", "ada@", "ada@@example.com", "ada example.com"])
def test_it_says_what_an_email_address_looks_like(keyboard, email):
    assert order_errors(email=email) == {"email": ["Enter an email address like ada@example.com."]}


@pytest.mark.parametrize("name", ["", "   "])
def test_it_requires_a_customer_name(keyboard, name):
    assert order_errors(customer_name=name) == {"customer_name": ["This field is required."]}


@pytest.mark.parametrize("phone", ["call me", "12", "+44 (0) 20 7946 0000 ext. 12"])
def test_it_says_what_a_phone_number_looks_like(keyboard, phone):
    assert order_errors(phone=phone) == {
        "phone": ["Enter a phone number of digits, spaces and an optional +."]
    }


def test_it_requires_a_shipping_address(keyboard):
    assert order_errors(address=" ") == {"address": ["This field is required."]}


# --- SwitchForm and apply_switch -------------------------------------------------------


def test_it_accepts_every_service_and_every_mode(db):
    for service in SERVICES:
        for mode in Mode.values:
            form = SwitchForm({"service": service, "mode": mode})
            assert form.is_valid(), (service, mode, form.errors)


def test_it_says_an_unknown_service_is_not_a_choice(db):
    errors = switch_errors(service="warehouse", mode="down")

    assert list(errors) == ["service"]
    assert "warehouse is not one of the available choices" in errors["service"][0]


def test_it_names_the_unknown_mode(db):
    assert switch_errors(service="inventory", mode="broken") == {"mode": ["Unknown mode broken."]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("failures", 0, "Ensure this value is greater than or equal to 1."),
        ("failures", 51, "Ensure this value is less than or equal to 50."),
        ("failures", "two", "Enter a whole number."),
        ("latency_ms", 5, "Ensure this value is greater than or equal to 10."),
        ("latency_ms", 60_001, "Ensure this value is less than or equal to 60000."),
    ],
)
def test_it_bounds_failures_and_latency(db, field, value, message):
    assert switch_errors(service="inventory", mode="flaky", **{field: value}) == {field: [message]}


def apply(**data: object) -> ServiceSwitch:
    form = SwitchForm(data)
    assert form.is_valid(), form.errors
    return apply_switch(form.cleaned_data)


def test_it_arms_a_flaky_switch_with_the_failures_asked_for(db):
    switch = apply(service="inventory", mode="flaky", failures=3)

    switch.refresh_from_db()
    assert (switch.mode, switch.failures, switch.failures_left) == ("flaky", 3, 3)
    assert switch.summary == "flaky (3 of 3 failures left)"


def test_it_restarts_the_flaky_countdown_when_flaky_is_set_again(db):
    ServiceSwitch.objects.create(service="payment", mode="flaky", failures=4, failures_left=1)

    switch = apply(service="payment", mode="flaky")

    switch.refresh_from_db()
    assert (switch.mode, switch.failures, switch.failures_left) == ("flaky", 4, 4)


def test_it_clears_the_countdown_when_a_flaky_switch_is_made_healthy(db):
    ServiceSwitch.objects.create(service="sms", mode="flaky", failures=5, failures_left=2)

    switch = apply(service="sms", mode="healthy")

    switch.refresh_from_db()
    assert (switch.mode, switch.failures_left) == ("healthy", 0)
    assert switch.summary == "healthy"


def test_it_sets_the_latency_of_a_slow_switch_and_keeps_it_otherwise(db):
    slow = apply(service="shipping", mode="slow", latency_ms=250)
    down = apply(service="shipping", mode="down")

    assert slow.pk == down.pk
    down.refresh_from_db()
    assert (down.mode, down.latency_ms, down.failures_left) == ("down", 250, 0)
    assert ServiceSwitch.objects.filter(service="shipping").count() == 1
