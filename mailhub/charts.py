"""Charts for the admin dashboard, drawn as SVG on the server (no JavaScript, no CDN).

Each function returns safe markup: an ``<svg>`` (scaling to its container's
width) followed by an HTML legend. Every label is escaped; every point and
bar has a ``<title>`` so hovering shows its exact value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH = 880
LEFT, RIGHT, TOP, BOTTOM = 52, 28, 12, 30
#: Widest bar in a grouped bar chart (a single category would otherwise fill it).
MAX_BAR = 28
_ids = count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    color: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above value (1 for 0)."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover (the loop always returns)


def short_number(value: float, percent: bool = False) -> str:
    """1234 -> "1.2k"; with percent, 0.052 -> "5.2%"."""
    if percent:
        shown = f"{value * 100:.2f}".rstrip("0").rstrip(".")
        return f"{shown}%"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}"


def axis_scale(peak: float, counts: bool = True) -> tuple[float, int]:
    """(step, intervals) for a y axis reaching at least peak, about five intervals of
    1, 2, 2.5 or 5 x 10^n (whole numbers when the axis counts things)."""
    step = nice_ceiling(peak / 5) if peak > 0 else 1
    if counts:
        step = max(step, 1)
    return step, max(1, math.ceil(peak / step - 1e-9))


def _frame(height: int, peak: float, title: str, percent: bool) -> tuple[list[str], float]:
    """The svg's opening, gridlines and y labels; returns (parts, the axis top value)."""
    step, intervals = axis_scale(peak, counts=not percent)
    top_value = step * intervals
    chart_id = f"mh-chart-{next(_ids)}"
    parts = [
        format_html(
            '<svg class="mh-chart" viewBox="0 0 {} {}" width="100%" role="img" '
            'aria-labelledby="{}" preserveAspectRatio="xMidYMid meet">'
            '<title id="{}">{}</title>',
            WIDTH,
            height,
            chart_id,
            chart_id,
            title,
        )
    ]
    plot_height = height - TOP - BOTTOM
    for tick in range(intervals + 1):
        value = step * tick
        y = TOP + plot_height - plot_height * tick / intervals
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 6,
                f"{y + 4:.1f}",
                short_number(value, percent),
            )
        )
    return parts, top_value


def _x_labels(labels: Sequence[str], centers: Sequence[float], height: int) -> list[str]:
    every = max(1, math.ceil(len(labels) / 12))
    return [
        format_html(
            '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
            f"{x:.1f}",
            height - 10,
            label,
        )
        for index, (label, x) in enumerate(zip(labels, centers, strict=True))
        if index % every == 0 or index == len(labels) - 1
    ]


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        format_html(
            '<li><span class="swatch" style="background:{}"></span>{}</li>', s.color, s.name
        )
        for s in series
    )
    return f'<ul class="mh-legend">{items}</ul>'


def _value_text(value: float, percent: bool) -> str:
    return short_number(value, True) if percent else f"{value:,.0f}"


def line_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    height: int = 240,
    percent: bool = False,
    thresholds: Sequence[tuple[str, float, str]] = (),
) -> SafeString:
    """One line per series over labels (days); thresholds are dashed (label, value, color)."""
    peak = max([v for s in series for v in s.values] + [t[1] for t in thresholds] + [0])
    parts, top_value = _frame(height, peak or (0.01 if percent else 1), title, percent)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = height - TOP - BOTTOM
    step = plot_width / max(len(labels) - 1, 1)
    xs = [LEFT + step * index for index in range(len(labels))]

    def y_of(value: float) -> float:
        return TOP + plot_height - plot_height * (value / top_value)

    for name, value, color in thresholds:
        y = y_of(value)
        parts.append(
            format_html(
                '<line class="threshold" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}">'
                "<title>{}: {}</title></line>",
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                color,
                name,
                _value_text(value, percent),
            )
        )
    for s in series:
        points = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in zip(xs, s.values, strict=True))
        parts.append(
            format_html('<polyline class="line" points="{}" stroke="{}"/>', points, s.color)
        )
        for x, label, value in zip(xs, labels, s.values, strict=True):
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}, {}: {}</title></circle>',
                    f"{x:.1f}",
                    f"{y_of(value):.1f}",
                    s.color,
                    label,
                    s.name,
                    _value_text(value, percent),
                )
            )
    parts += _x_labels(labels, xs, height)
    parts.append("</svg>")
    legend = list(series) + [Series(f"{n} (threshold)", [], c) for n, _, c in thresholds]
    return mark_safe("".join(parts) + _legend(legend))


def stacked_bar_chart(
    *, labels: Sequence[str], series: Sequence[Series], title: str, height: int = 240
) -> SafeString:
    """Bars per label (days), each stacking the series' values."""
    totals = [sum(values) for values in zip(*(s.values for s in series), strict=True)]
    parts, top_value = _frame(height, max([*totals, 0]), title, percent=False)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = height - TOP - BOTTOM
    slot = plot_width / max(len(labels), 1)
    bar = max(slot * 0.7, 1)
    centers = []
    for index, label in enumerate(labels):
        x = LEFT + slot * index + (slot - bar) / 2
        centers.append(x + bar / 2)
        base = TOP + plot_height
        for s in series:
            value = s.values[index]
            if not value:
                continue
            h = plot_height * value / top_value
            base -= h
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}, {}: {}</title></rect>",
                    f"{x:.1f}",
                    f"{base:.1f}",
                    f"{bar:.1f}",
                    f"{h:.1f}",
                    s.color,
                    label,
                    s.name,
                    f"{value:,.0f}",
                )
            )
    parts += _x_labels(labels, centers, height)
    parts.append("</svg>")
    return mark_safe("".join(parts) + _legend(series))


def grouped_bar_chart(
    *, categories: Sequence[str], series: Sequence[Series], title: str, height: int = 260
) -> SafeString:
    """For each category (an ESP, a tag), one bar per series side by side."""
    peak = max([v for s in series for v in s.values] + [0])
    parts, top_value = _frame(height, peak, title, percent=False)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = height - TOP - BOTTOM
    slot = plot_width / max(len(categories), 1)
    bar = min(slot * 0.8 / max(len(series), 1), MAX_BAR)
    group = bar * len(series)
    centers = []
    for index, category in enumerate(categories):
        left = LEFT + slot * index + (slot - group) / 2
        centers.append(left + group / 2)
        for position, s in enumerate(series):
            value = s.values[index]
            h = plot_height * value / top_value
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}, {}: {}</title></rect>",
                    f"{left + bar * position:.1f}",
                    f"{TOP + plot_height - h:.1f}",
                    f"{max(bar - 1, 0.5):.1f}",
                    f"{h:.1f}",
                    s.color,
                    category,
                    s.name,
                    f"{value:,.0f}",
                )
            )
    parts += _x_labels([_truncate(c) for c in categories], centers, height)
    parts.append("</svg>")
    return mark_safe("".join(parts) + _legend(series))


def _truncate(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


__all__ = [
    "Series",
    "grouped_bar_chart",
    "line_chart",
    "nice_ceiling",
    "short_number",
    "stacked_bar_chart",
]
