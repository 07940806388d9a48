"""Whatever a person types, sends or asks for: a clear answer, nothing changed, no 500.

Property-based (hypothesis) over the order form, the switch form, the management
commands, URLs and the websocket consumers. Examples are few by default (the "fast"
profile in conftest.py); `pytest --hypothesis-profile=thorough tests/test_properties.py`
tries many more.
"""

from __future__ import annotations

import asyncio
import io
import re
from urllib.parse import quote

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import assume, example, given
from hypothesis import strategies as st

from orderdash.asgi import application
from orders.contract import SERVICES
from orders.forms import MAX_QUANTITY, OrderForm, SwitchForm
from orders.live import hub
from orders.models import Order
from orders.simulator.models import Mode, Product, ServiceSwitch

GOOD_ORDER = {
    "product": "KB-01",
    "quantity": "1",
    "customer_name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "address": "12 Analytical Row, London",
}
HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]

# Numbers as people (and scripts) mistype them: other scripts' digits, signs, exponents,
# fractions, separators, padding, and far too many digits.
TRICKY_NUMBERS = st.sampled_from(
    ["٤", "４", "১২", "1e1", "1.0", "0x10", "1_000", "1,000", "+3", "-1", "0", "00", " 7 ",
     "\u00a05", "9" * 5000, "NaN", "inf", "-0", "", " ", "\x00", "3\x00", "½", "²"]
)  # fmt: skip
NUMBERS = st.one_of(TRICKY_NUMBERS, st.integers(-(10**12), 10**12).map(str), st.text(max_size=12))
TEXT = st.one_of(st.text(max_size=300), st.sampled_from(["", " ", "\x00", "a\x00b", "<b>x</b>"]))
ASCII_WHOLE = re.compile(r"[+-]?[0-9]+")


def whole_number_in(typed: str, low: int, high: int) -> bool:
    """What the forms accept: ASCII digits (a sign allowed, padding ignored) in range."""
    typed = typed.strip()
    if len(typed) > 30:  # far beyond every bound here (and int() refuses 4300 digits)
        return False
    return bool(ASCII_WHOLE.fullmatch(typed)) and low <= int(typed) <= high


def switches() -> list[tuple]:
    return list(ServiceSwitch.objects.order_by("service").values_list())


@pytest.fixture
def keyboard(seeded) -> Product:
    return Product.objects.get(sku="KB-01")


@pytest.fixture
def seeded(db) -> None:
    call_command("seed_demo", stdout=io.StringIO())


# --- the order form --------------------------------------------------------------------


@given(quantity=NUMBERS)
@example(quantity="٤")
def test_the_order_form_takes_only_ascii_whole_quantities_within_bounds(keyboard, quantity):
    form = OrderForm(GOOD_ORDER | {"quantity": quantity})
    in_bounds = whole_number_in(quantity, 1, min(MAX_QUANTITY, keyboard.available))
    assert form.is_valid() == in_bounds, form.errors
    if not in_bounds:
        assert [message for message in form.errors["quantity"] if message.strip()]


@given(field=st.sampled_from(sorted(GOOD_ORDER)), value=TEXT)
def test_the_order_form_answers_any_text_in_any_field_with_field_errors(keyboard, field, value):
    form = OrderForm(GOOD_ORDER | {field: value})
    if not form.is_valid():
        assert set(form.errors) <= set(GOOD_ORDER) | {"engine"}
        assert all(messages for messages in form.errors.values())


@given(field=st.sampled_from(sorted(GOOD_ORDER)), value=TEXT, htmx=st.booleans())
def test_a_bad_order_posted_to_the_page_is_explained_and_creates_nothing(
    client, keyboard, field, value, htmx
):
    # The quantity is always out of bounds, so no example places an order.
    data = GOOD_ORDER | {field: value} | {"quantity": str(MAX_QUANTITY + 1)}
    response = client.post("/orders/new/", data, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code == (200 if htmx else 400)
    assert "Traceback" not in response.content.decode()
    assert not Order.objects.exists()


# --- the switch form -------------------------------------------------------------------


@given(
    service=st.one_of(st.sampled_from(SERVICES), st.text(max_size=20)),
    mode=st.one_of(st.sampled_from(Mode.values), st.text(max_size=20)),
    failures=st.one_of(st.just(""), NUMBERS),
    latency_ms=st.one_of(st.just(""), NUMBERS),
)
def test_the_switch_form_accepts_exactly_known_services_modes_and_bounded_numbers(
    db, service, mode, failures, latency_ms
):
    form = SwitchForm(
        {"service": service, "mode": mode, "failures": failures, "latency_ms": latency_ms}
    )
    expected = (
        service in SERVICES
        and mode in Mode.values
        and (not failures.strip() or whole_number_in(failures, 1, 50))
        and (not latency_ms.strip() or whole_number_in(latency_ms, 10, 60_000))
    )
    assert form.is_valid() == expected, form.errors


@given(
    service=st.one_of(st.sampled_from(SERVICES), st.text(min_size=1, max_size=20)),
    mode=st.one_of(st.sampled_from(Mode.values), st.text(max_size=20)),
    failures=NUMBERS,
)
def test_a_switch_posted_to_the_page_is_applied_or_refused_without_a_500(
    client, seeded, service, mode, failures
):
    before = switches()
    response = client.post(
        f"/services/{quote(service, safe='')}/", {"mode": mode, "failures": failures}
    )
    assert response.status_code in (302, 400, 404), response.status_code
    if response.status_code != 302:
        assert switches() == before


# --- the management commands -----------------------------------------------------------


def run_command(*args: str) -> str:
    """The command's error message (a CommandError, as the terminal shows it); "" if it
    succeeded. Anything else propagates: a traceback is a failure."""
    try:
        call_command(*args, stdout=io.StringIO(), stderr=io.StringIO())
    except CommandError as error:
        assert str(error).strip()
        return str(error)
    return ""


def seconds_in(typed: str, low: float, high: float) -> bool:
    try:
        return low <= float(typed) <= high
    except ValueError:
        return False


@given(timeout=st.one_of(NUMBERS, st.floats().map(str)))
@example(timeout="-5")
def test_place_order_refuses_a_timeout_out_of_bounds_and_places_nothing(seeded, timeout):
    # The quantity is refused too: an accepted timeout leaves only the quantity's error.
    error = run_command(
        "place_order", "--product=KB-01", "--quantity=0", f"--timeout={timeout}", "--wait"
    )
    if seconds_in(timeout, 1, 86_400):
        assert "Quantity must be at least 1." in error
    else:
        assert "--timeout" in error
    assert not Order.objects.exists()


@given(quantity=NUMBERS)
def test_place_order_refuses_any_quantity_but_an_ascii_whole_number_in_bounds(seeded, quantity):
    assume(not whole_number_in(quantity, 1, MAX_QUANTITY))
    assert "quantity" in run_command("place_order", "--product=KB-01", f"--quantity={quantity}")
    assert not Order.objects.exists()


@given(
    service=st.one_of(st.sampled_from(SERVICES), st.text(min_size=1, max_size=12)),
    mode=st.one_of(st.sampled_from(Mode.values), st.text(min_size=1, max_size=12)),
    failures=NUMBERS,
    latency_ms=NUMBERS,
)
@example(service="inventory", mode="flaky", failures="٤", latency_ms="100")
@example(service="inventory", mode="slow", failures="2", latency_ms="-5")
def test_services_set_applies_exactly_what_the_switch_form_accepts(
    seeded, service, mode, failures, latency_ms
):
    before = switches()
    error = run_command(
        "services", "set", service, mode, f"--failures={failures}", f"--latency-ms={latency_ms}"
    )
    valid = (  # "--failures=" (blank) is as good as not given
        service in SERVICES
        and mode in Mode.values
        and (not failures.strip() or whole_number_in(failures, 1, 50))
        and (not latency_ms.strip() or whole_number_in(latency_ms, 10, 60_000))
    )
    assert (error == "") == valid, error
    if not valid:
        assert switches() == before


@given(action=st.text(max_size=12), order_id=st.one_of(NUMBERS, st.text(max_size=12)))
@example(action="cancel", order_id="99999999999999999999")
def test_the_order_command_answers_anything_with_a_clear_refusal(seeded, action, order_id):
    assume(not order_id.startswith("-"))  # an option, for argparse: refused all the same
    assert run_command("order", action or "cancel", order_id or "1", "--reason=x")


@given(order_id=NUMBERS)
@example(order_id="٤")
@example(order_id="99999999999999999999")
def test_audit_of_anything_but_an_order_number_says_so(seeded, order_id):
    error = run_command("audit", f"--order={order_id}")
    if whole_number_in(order_id, 1, 2**63 - 1):
        assert error == f"There is no order #{int(order_id)}."
    else:
        assert "--order" in error


@given(port=NUMBERS)
@example(port="٤")
@example(port="70000")
def test_run_stack_refuses_a_port_that_is_not_one_before_starting_anything(db, port):
    assume(not whole_number_in(port, 1, 65_535))  # a good port would start the stack
    assert "--port" in run_command("run_stack", f"--port={port}")


def test_run_stack_refuses_a_host_that_does_not_resolve_before_starting_anything(db):
    assert "--host 'no such host.invalid'" in run_command(
        "run_stack", "--host=no such host.invalid", "--port=8000"
    )


# --- URLs ------------------------------------------------------------------------------

PATH_PARTS = st.one_of(
    st.sampled_from(
        ["..", ".", "%2e%2e", "%2E%2E", "..%2f", "%2f..", "%00", "%c0%ae%c0%ae", "static",
         "orders", "admin", "ws", "x", "manage.py", "orderdash", "settings.py", "%", "-1"]
    ),
    st.text(max_size=8).map(lambda part: quote(part, safe="")),
)  # fmt: skip


@given(parts=st.lists(PATH_PARTS, min_size=1, max_size=5))
@example(parts=["static", "..", "x"])
@example(parts=["static", "%2e%2e", "manage.py"])
def test_no_path_is_a_500_and_a_step_out_of_static_files_is_a_404(client, seeded, parts):
    path = "/" + "/".join(parts)
    assume(path.rstrip("/") not in ("", "/orders/new", "/admin"))  # real pages: elsewhere
    response = client.get(path)
    assert response.status_code in (200, 301, 302, 400, 404, 405), (path, response.status_code)
    if parts[0] == "static" and any(".." in part or "%2e" in part.lower() for part in parts):
        assert response.status_code == 404, path


# --- websockets ------------------------------------------------------------------------


async def closes_with(path: str) -> int:
    communicator = WebsocketCommunicator(application, path, headers=HEADERS)
    try:
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            return code
        while True:
            message = await communicator.receive_output(timeout=10)
            if message["type"] == "websocket.close":
                return message.get("code", 1000)
    finally:
        await communicator.disconnect()
        await hub.stop()


@given(tail=st.one_of(st.text(max_size=20), st.sampled_from(["orders/0/", "orders/99/", "x/"])))
def test_any_other_websocket_path_is_told_what_exists_and_closed(live_temporal, catalogue, tail):
    path = "/ws/" + quote(tail, safe="/")
    assume(path not in ("/ws/orders/", "/ws/orders"))
    assert asyncio.run(closes_with(path)) == 4404


async def answers_each(messages: list[str | bytes]) -> list[str]:
    communicator = WebsocketCommunicator(application, "/ws/orders/", headers=HEADERS)
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        answers = []
        for message in messages:
            # As the server hands a frame over (send_to() refuses an empty one).
            kind = "bytes" if isinstance(message, bytes) else "text"
            await communicator.send_input({"type": "websocket.receive", kind: message})
            while "takes no commands" not in (answer := await communicator.receive_from(10)):
                pass  # the board's own snapshot and updates
            answers.append(answer)
        return answers
    finally:
        await communicator.disconnect()
        await hub.stop()


@given(messages=st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200)), max_size=4))
def test_any_websocket_message_gets_a_clear_answer_and_the_socket_stays(
    live_temporal, catalogue, messages
):
    answers = asyncio.run(answers_each(messages))
    assert len(answers) == len(messages)
