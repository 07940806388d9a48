"""Validation for everything a person can type: orders and switch settings."""

from __future__ import annotations

import re

from django import forms

from orders.contract import Service
from orders.models import Engine
from orders.simulator.models import Mode, Product, ServiceSwitch

# One order may not take more than this many units, whatever the stock.
MAX_QUANTITY = 20
# A chaos run's bounds, for the page and the `chaos` command alike.
MAX_CHAOS_ORDERS = 2000
MAX_CHAOS_MINUTES = 240
PHONE_PATTERN = re.compile(r"^\+?[0-9 ()-]{6,20}$")


ASCII_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class WholeNumberField(forms.IntegerField):
    """A whole number in ASCII digits. Python's int() also reads "٤" or "４", which a
    person checking the order would not read as 4."""

    def to_python(self, value: object) -> int | None:
        if isinstance(value, str):
            # Blank is blank, spaces or not: an optional field left empty, a required one
            # "required" (not "Enter a whole number.").
            value = value.strip()
            if value and not ASCII_WHOLE_NUMBER.fullmatch(value):
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class ProductChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Product) -> str:
        return f"{obj.name} — {obj.price} ({obj.available} available)"


class OrderForm(forms.Form):
    product = ProductChoiceField(
        queryset=Product.objects.all(),
        to_field_name="sku",
        empty_label=None,
        error_messages={"invalid_choice": "No product with that SKU. Pick one from the list."},
    )
    quantity = WholeNumberField(
        initial=1,
        min_value=1,
        max_value=MAX_QUANTITY,
        error_messages={
            "min_value": "Quantity must be at least 1.",
            "max_value": f"At most {MAX_QUANTITY} units per order.",
        },
    )
    customer_name = forms.CharField(max_length=100, strip=True, label="Customer name")
    email = forms.EmailField(
        error_messages={"invalid": "Enter an email address like ada@example.com."}
    )
    phone = forms.CharField(
        max_length=32, required=False, strip=True, help_text="For the SMS update."
    )
    address = forms.CharField(max_length=200, strip=True, label="Shipping address")
    engine = forms.ChoiceField(
        choices=Engine.choices,
        initial=Engine.TEMPORAL,
        required=False,
        error_messages={"invalid_choice": "Engine must be temporal or plain."},
        help_text="Compare places the same order in both.",
    )

    def clean_engine(self) -> str:
        return self.cleaned_data["engine"] or Engine.TEMPORAL

    def clean_phone(self) -> str:
        phone = self.cleaned_data["phone"]
        if phone and not PHONE_PATTERN.match(phone):
            raise forms.ValidationError("Enter a phone number of digits, spaces and an optional +.")
        return phone

    def __init__(self, *args: object, copies: int = 1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Comparing places the order twice, so it needs the stock twice.
        self.copies = copies

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        product, quantity = cleaned.get("product"), cleaned.get("quantity")
        if product and quantity and quantity * self.copies > product.available:
            if self.copies > 1:
                self.add_error(
                    "quantity",
                    f"Comparing needs {quantity * self.copies} of {product.name};"
                    f" only {product.available} available.",
                )
                return cleaned
            self.add_error(
                "quantity", f"Only {product.available} of {product.name} available right now."
            )
        return cleaned


class SwitchForm(forms.Form):
    service = forms.ChoiceField(choices=[(s, s) for s in Service.values])
    mode = forms.ChoiceField(
        choices=[(m, m) for m in Mode.values],
        error_messages={"invalid_choice": "Unknown mode %(value)s."},
    )
    failures = WholeNumberField(min_value=1, max_value=50, required=False)
    latency_ms = WholeNumberField(min_value=10, max_value=60_000, required=False)


def apply_switch(cleaned: dict) -> ServiceSwitch:
    """Set a service's mode; flaky restarts its countdown from the failures asked for."""
    switch, _ = ServiceSwitch.objects.get_or_create(service=cleaned["service"])
    switch.mode = cleaned["mode"]
    if cleaned.get("failures"):
        switch.failures = cleaned["failures"]
    if cleaned.get("latency_ms"):
        switch.latency_ms = cleaned["latency_ms"]
    switch.failures_left = switch.failures if switch.mode == Mode.FLAKY else 0
    switch.save()
    return switch


# The load generator's bounds: past these a two-core demo machine only queues.
MAX_LOAD_ORDERS = 10_000
MAX_LOAD_RATE = 50.0
LOAD_ENGINES = ("temporal", "plain", "both")
MIX_PATTERN = re.compile(r"^(\d{1,3}):(\d{1,3})$")


class LoadForm(forms.Form):
    """A load run, from the `load` command's options or the page's form alike."""

    orders = WholeNumberField(
        min_value=1,
        max_value=MAX_LOAD_ORDERS,
        error_messages={
            "min_value": "Orders must be at least 1.",
            "max_value": f"At most {MAX_LOAD_ORDERS:,} orders per run.",
            "invalid": "Orders must be a whole number.",
        },
    )
    rate = forms.FloatField(
        max_value=MAX_LOAD_RATE,
        error_messages={
            "max_value": f"At most {MAX_LOAD_RATE:g} orders per second.",
            "invalid": "Rate must be a number of orders per second, like 2 or 0.5.",
        },
    )
    engine = forms.ChoiceField(
        choices=[(engine, engine) for engine in LOAD_ENGINES],
        initial="temporal",
        error_messages={"invalid_choice": "Engine must be temporal, plain or both."},
    )
    mix = forms.CharField(
        required=False,
        strip=True,
        help_text="With engine both: Temporal:plain orders, e.g. 3:1 (default 1:1).",
    )

    def clean_rate(self) -> float:
        rate = self.cleaned_data["rate"]
        if not rate > 0:  # also refuses NaN
            raise forms.ValidationError("Rate must be more than 0 orders per second.")
        return rate

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        mix = cleaned.get("mix", "")
        if not mix:
            cleaned["mix"] = "1:1" if cleaned.get("engine") == "both" else ""
            return cleaned
        if cleaned.get("engine") != "both":
            self.add_error("mix", "A mix applies to engine both only.")
            return cleaned
        match = MIX_PATTERN.match(mix)
        if match is None or not any(int(part) for part in match.groups()):
            self.add_error("mix", "Mix must be Temporal:plain orders, like 3:1, not 0:0.")
        return cleaned


class ChaosForm(forms.Form):
    """Start a chaos run: how many orders on each engine, over how many minutes."""

    orders = WholeNumberField(
        initial=20,
        min_value=1,
        max_value=MAX_CHAOS_ORDERS,
        label="Orders per engine",
        error_messages={
            "min_value": "At least 1 order.",
            "max_value": f"At most {MAX_CHAOS_ORDERS} orders per run.",
        },
    )
    minutes = WholeNumberField(
        initial=1,
        min_value=1,
        max_value=MAX_CHAOS_MINUTES,
        label="Minutes",
        error_messages={
            "min_value": "At least 1 minute.",
            "max_value": f"At most {MAX_CHAOS_MINUTES} minutes.",
        },
    )
