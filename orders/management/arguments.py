"""What a person types at a terminal, checked as the forms check it.

argparse's `type=int` reads "٤" as 4 and "99…9" (thousands of digits) as a traceback;
these read ASCII whole numbers within bounds only, and say what was wrong otherwise.
"""

from __future__ import annotations

from argparse import ArgumentTypeError
from collections.abc import Callable

from orders.forms import ASCII_WHOLE_NUMBER

# The largest order number the database can hold (a 64-bit primary key).
MAX_ORDER_NUMBER = 2**63 - 1


def whole_number_or_none(typed: str, low: int, high: int) -> int | None:
    """The number typed, if it is ASCII digits (a sign allowed) from low to high."""
    typed = typed.strip()
    # Far more digits than any bound here: refused before int() spends time on them.
    if len(typed) > 20 or not ASCII_WHOLE_NUMBER.fullmatch(typed):
        return None
    value = int(typed)
    return value if low <= value <= high else None


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from low to high, else a clear error."""

    def parse(typed: str) -> int:
        value = whole_number_or_none(typed, low, high)
        if value is None:
            raise ArgumentTypeError(
                f"must be a whole number from {low} to {high} in digits 0-9, not {typed!r}"
            )
        return value

    return parse
