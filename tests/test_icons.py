"""Every state reads as a word and an icon: icons the page's fonts can draw."""

from __future__ import annotations

import unicodedata

import pytest

from orders.templatetags.orderdash import STATE_ICONS, STATUS_ICONS

ICONS = {f"step {state}": icon for state, icon in STATE_ICONS.items()} | {
    f"order {status}": icon for status, icon in STATUS_ICONS.items()
}


@pytest.mark.parametrize(("what", "icon"), ICONS.items(), ids=list(ICONS))
def test_an_icon_is_a_text_symbol_not_an_emoji(what, icon):
    # Emoji-presentation characters (East Asian width "W", such as ✋) need a colour
    # emoji font, which a Debian Chromium without fonts-noto-color-emoji lacks: it draws
    # an empty box. Text symbols come with the DejaVu fonts every desktop has.
    assert len(icon) == 1
    assert unicodedata.east_asian_width(icon) != "W", f"{what}: {unicodedata.name(icon)}"
