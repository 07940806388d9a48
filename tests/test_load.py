"""The load generator: the `load` command and the page's start, progress and stop."""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders import chaos as chaos_module
from orders import load as load_module
from orders.chaos import open_run
from orders.contract import OrderStatus
from orders.load import engine_sequence
from orders.models import ChaosRun, LoadRun, Order

HTMX = {"HX-Request": "true"}


def load(*args: str) -> str:
    out = io.StringIO()
    call_command("load", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_it_places_orders_at_the_rate_and_reports_how_they_ended(live_temporal, catalogue):
    began = time.monotonic()
    out = load("--orders", "3", "--rate", "4", "--timeout", "60")

    assert Order.objects.count() == 3
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.COMPLETED}
    # Three orders at 4/s: the last is placed half a second after the first.
    assert time.monotonic() - began >= 0.5
    assert "placed [##############################] 3/3" in out
    assert "ended [##############################] 3/3" in out
    assert "Placed 3 of 3 orders. How they stand:" in out
    assert "  completed                3" in out
    run = LoadRun.objects.get()
    assert (run.state, run.placed, run.orders.count()) == ("finished", 3, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0", "--rate", "1"], "--orders: Orders must be at least 1."),
        (["--orders", "-5", "--rate", "1"], "--orders: Orders must be at least 1."),
        (["--orders", "many", "--rate", "1"], "--orders: Orders must be a whole number."),
        (["--orders", "1000000", "--rate", "1"], "--orders: At most 10,000 orders per run."),
        (["--orders", "5", "--rate", "0"], "--rate: Rate must be more than 0 orders per second."),
        (["--orders", "5", "--rate", "-2"], "--rate: Rate must be more than 0 orders per second."),
        (["--orders", "5", "--rate", "nan"], "--rate: Rate must be a number"),
        (["--orders", "5", "--rate", "fast"], "--rate: Rate must be a number"),
        (["--orders", "5", "--rate", "1e9"], "--rate: At most 50 orders per second."),
        (["--orders", "5", "--rate", "1", "--engine", "kafka"], "--engine: Engine must be"),
        (["--orders", "5", "--rate", "1", "--mix", "3:1"], "--mix: A mix applies to engine both"),
        (["--orders", "5", "--rate", "1", "--engine", "both", "--mix", "0:0"], "--mix: Mix must"),
        (["--orders", "5", "--rate", "1", "--engine", "both", "--mix", "lots"], "--mix: Mix must"),
        (["--orders", "5", "--rate", "1", "--timeout", "-1"], "--timeout: between 0 and"),
    ],
)
def test_bad_arguments_are_explained_and_change_nothing(catalogue, args, message):
    with pytest.raises(CommandError) as refused:
        load(*args)
    assert message in str(refused.value)
    assert not LoadRun.objects.exists() and not Order.objects.exists()


def test_a_second_run_is_refused_while_one_runs(catalogue):
    LoadRun.objects.create(total=10, rate=1, engine="temporal", actor="someone")
    with pytest.raises(CommandError, match=r"Load run #\d+ is still running: stop it first."):
        load("--orders", "1", "--rate", "1")
    assert LoadRun.objects.count() == 1 and not Order.objects.exists()


@pytest.mark.parametrize(
    ("engine", "mix", "first_eight"),
    [
        ("temporal", "", "TTTTTTTT"),
        ("plain", "", "PPPPPPPP"),
        ("both", "1:1", "TPTPTPTP"),
        ("both", "3:1", "TPTTTPTT"),
    ],
)
def test_the_engines_are_interleaved_by_the_mix(engine, mix, first_eight):
    sequence = engine_sequence(engine, mix)
    assert "".join(next(sequence)[0].upper() for _ in range(8)) == first_eight


def test_the_page_starts_a_run_outside_the_request_shows_progress_and_stops_it(
    client, live_temporal, catalogue
):
    response = client.post(
        "/load/", {"orders": "40", "rate": "4", "engine": "temporal"}, headers=HTMX
    )
    assert response.status_code == 200
    run = LoadRun.objects.get()
    runner = next(t for t in threading.enumerate() if t.name == f"load-{run.pk}")
    try:
        wait_for(lambda: LoadRun.objects.get().placed >= 2, 20, "two orders placed")
        panel = client.get("/load/").content.decode()
        assert 'data-load-state="running"' in panel and 'hx-trigger="every 1s"' in panel
        assert "Stop load" in panel

        stopped = client.post(f"/load/{run.pk}/stop/", headers=HTMX)
        assert stopped.status_code == 200
        runner.join(10)
    finally:
        LoadRun.objects.filter(pk=run.pk).update(stop_requested=True)
        runner.join(10)
    run.refresh_from_db()
    assert (run.state, run.note) == ("stopped", "stopped on request")
    assert 2 <= run.placed < 40 and Order.objects.count() == run.placed
    panel = client.get("/load/").content.decode()
    assert 'data-load-state="stopped"' in panel and "Start load" in panel
    again = client.post(f"/load/{run.pk}/stop/", headers=HTMX)
    assert again.status_code == 409 and "was not running" in again.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"orders": "0", "rate": "1", "engine": "temporal"}, "Orders must be at least 1."),
        ({"orders": "5", "rate": "-1", "engine": "temporal"}, "Rate must be more than 0"),
        ({"orders": "5", "rate": "1", "engine": "nope"}, "Engine must be temporal, plain or both."),
        ({}, "This field is required."),
    ],
)
def test_the_page_explains_a_bad_load_and_starts_nothing(client, catalogue, data, message):
    response = client.post("/load/", data, headers=HTMX)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LoadRun.objects.exists()


def test_outside_demo_mode_a_viewer_may_not_start_a_load(client, settings, catalogue):
    from django.contrib.auth.models import User

    settings.DEMO_MODE = False
    client.force_login(User.objects.create_user("vera", password="a long passphrase"))
    response = client.post("/load/", {"orders": "1", "rate": "1", "engine": "temporal"})
    assert response.status_code == 403
    assert not LoadRun.objects.exists()
    assert client.get("/load/").status_code == 200  # watching is allowed


@pytest.mark.parametrize("kind", ["load", "chaos"])
def test_two_starts_at_the_same_moment_make_one_run(catalogue, monkeypatch, kind):
    """Both starts pass the check before either row is in (as two web processes can):
    the database takes one, and the other start is refused with the usual words."""
    if kind == "load":
        first = LoadRun.objects.create(total=10, rate=1, engine="temporal", actor="someone")
        monkeypatch.setattr(load_module, "current_run", lambda: None)  # the check saw nothing
        cleaned = {"orders": 1, "rate": 1, "engine": "temporal"}
        with pytest.raises(load_module.LoadRunning, match="is still running: stop it first"):
            load_module.create_run(cleaned, actor="someone else")
        assert list(LoadRun.objects.all()) == [first]
    else:
        first = open_run(orders=5, minutes=1, actor="olga")
        monkeypatch.setattr(chaos_module, "current_run", lambda: None)
        with pytest.raises(chaos_module.ChaosRefused, match="started just now"):
            open_run(orders=5, minutes=1, actor="pat")
        assert list(ChaosRun.objects.all()) == [first]
