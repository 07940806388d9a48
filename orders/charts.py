"""Chart geometry: per-minute series turned into the rectangles and lines of an SVG.

Pure functions of the numbers (orders/metrics.py); templates/orders/partials/
metrics_charts.html draws what they return. The server renders the whole chart and htmx
swaps it like any other fragment: no charting library in the browser, nothing to vendor,
and every open board gets the same picture from one rendering per hub tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

# The drawing area inside the SVG's viewBox; the left margin holds the scale.
WIDTH, HEIGHT = 320, 120
LEFT, TOP, BOTTOM = 26, 8, 18
PLOT_W, PLOT_H = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    key: str  # the CSS class suffix and the data-* name
    label: str
    total: int  # over the whole window


@dataclass(frozen=True)
class Bar:
    series: str
    x: float
    y: float
    width: float
    height: float
    tooltip: str


@dataclass(frozen=True)
class Chart:
    name: str  # the data-chart hook
    title: str
    series: list[Series]
    bars: list[Bar]
    scale: int  # the value at the top of the drawing area
    line_points: str = ""  # an SVG polyline's points ("" for none)
    line: Series | None = None
    width: int = WIDTH
    height: int = HEIGHT
    top: int = TOP
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM
    right: int = WIDTH - 4

    @property
    def totals(self) -> dict[str, int]:
        every = [*self.series, *([self.line] if self.line else [])]
        return {series.key: series.total for series in every}


def nice_scale(largest: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 … that is at least `largest` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= largest:
                return step * factor
        step *= 10


def stacked_bars(
    name: str,
    title: str,
    minutes: Sequence[datetime],
    series: Sequence[tuple[str, str]],
    values: Sequence[Mapping[str, int]],
    line: tuple[str, str, Sequence[int]] | None = None,
) -> Chart:
    """One stacked bar per minute (series in the given order, bottom up), and optionally
    a line over them (key, label, one value per minute)."""
    count = len(minutes)
    stacks = [sum(minute.get(key, 0) for key, _ in series) for minute in values]
    line_values = list(line[2]) if line else []
    scale = nice_scale(max([*stacks, *line_values, 0]))
    slot = PLOT_W / max(count, 1)
    bar_w = slot * 0.7
    bars = []
    for i, (start, minute) in enumerate(zip(minutes, values, strict=True)):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = TOP + PLOT_H
        for key, label in series:
            value = minute.get(key, 0)
            if not value:
                continue
            height = PLOT_H * value / scale
            base -= height
            tooltip = f"{start:%H:%M} UTC: {value} {label}"
            bars.append(
                Bar(key, round(x, 1), round(base, 1), round(bar_w, 1), round(height, 1), tooltip)
            )
    points = " ".join(
        f"{LEFT + (i + 0.5) * slot:.1f},{TOP + PLOT_H - PLOT_H * value / scale:.1f}"
        for i, value in enumerate(line_values)
    )
    return Chart(
        name=name,
        title=title,
        series=[
            Series(key, label, sum(minute.get(key, 0) for minute in values))
            for key, label in series
        ],
        bars=bars,
        scale=scale,
        line_points=points,
        line=Series(line[0], line[1], sum(line_values)) if line else None,
    )
