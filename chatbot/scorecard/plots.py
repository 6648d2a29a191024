"""The scorecard's charts as inline SVG text: a line chart, grouped bars and a strip plot.

Hand-written SVG keeps the HTML report one self-contained file with no plotting dependency (and no
fonts or scripts to fetch): a report mailed to someone opens anywhere. Every label is escaped.
"""

from __future__ import annotations

import math
import statistics
from html import escape

__all__ = ["COLORS", "line_chart", "grouped_bars", "strip_plot"]

COLORS = {
    "base": "#8a8f98",
    "prompted": "#d9932b",
    "fewshot": "#8e5bd0",
    "tuned": "#2f6fdf",
    "reference": "#2e9e5b",
    "train": "#2f6fdf",
    "eval": "#d9532b",
}
_FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#333"'
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 44, 34


def _color(name: str, index: int) -> str:
    fallback = ("#6a4fc9", "#c94f8a", "#4fa3c9", "#8ac94f")
    return COLORS.get(name, fallback[index % len(fallback)])


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    label = escape(title, quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{label}">'
        f'<text x="{_LEFT}" y="16" {_FONT} font-weight="600">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at or below `low` to at or above `high` (about `count` steps)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def _legend(names: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        left = x + i * 96
        out.append(
            f'<rect x="{left}" y="{y - 8}" width="10" height="10" fill="{_color(name, i)}"/>'
        )
        out.append(f'<text x="{left + 14}" y="{y + 1}" {_FONT}>{escape(name)}</text>')
    return out


def line_chart(
    series: dict[str, list[list[float]]],
    *,
    title: str,
    x_label: str,
    width: int = 560,
    height: int = 240,
) -> str:
    """One line per series of [x, y] points (a series of one point is drawn as a dot)."""
    points = [p for s in series.values() for p in s]
    if not points:
        return _svg(width, 60, title, [f'<text x="{_LEFT}" y="44" {_FONT}>no data</text>'])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks, y_ticks = _ticks(min(xs), max(xs)), _ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return _TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    body = _axes(x_ticks, y_ticks, sx, sy, width, height)
    body.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{height - 4}" text-anchor="middle" {_FONT}>'
        f"{escape(x_label)}</text>"
    )
    for i, (name, pts) in enumerate(series.items()):
        color = _color(name, i)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        if len(pts) > 1:
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        body += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts
        ]
    body += _legend(list(series), _LEFT, 32)
    return _svg(width, height, title, body)


def _axes(x_ticks, y_ticks, sx, sy, width: int, height: int) -> list[str]:  # noqa: ANN001
    body = []
    for y in y_ticks:
        body.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            'stroke="#e4e4e4"/>'
        )
        body.append(
            f'<text x="{_LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{_number(y)}</text>"
        )
    for x in x_ticks:
        body.append(
            f'<text x="{sx(x):.1f}" y="{height - _BOTTOM + 14}" text-anchor="middle" {_FONT}>'
            f"{_number(x)}</text>"
        )
    return body


def grouped_bars(
    categories: list[str],
    series: dict[str, list[float | None]],
    *,
    title: str,
    width: int = 560,
    label_width: int = 210,
) -> str:
    """Horizontal bars of rates in [0, 1]: one group per category, one bar per series."""
    bar, gap = 10, 10
    group = bar * len(series) + gap
    height = _TOP + group * max(len(categories), 1) + 10
    plot_w = width - label_width - 60
    body = _legend(list(series), _LEFT, 32)
    top = _TOP
    for c, category in enumerate(categories):
        y = top + c * group
        body.append(
            f'<text x="{label_width - 8}" y="{y + group / 2}" text-anchor="end" {_FONT}>'
            f"{escape(_shorten(category, 30))}</text>"
        )
        for i, (name, values) in enumerate(series.items()):
            value = values[c]
            top_of_bar = y + i * bar
            if value is None:
                body.append(
                    f'<text x="{label_width}" y="{top_of_bar + 9}" {_FONT}>not checked</text>'
                )
                continue
            length = max(value, 0.0) * plot_w
            body.append(
                f'<rect x="{label_width}" y="{top_of_bar}" width="{length:.1f}" '
                f'height="{bar - 2}" fill="{_color(name, i)}"><title>{escape(name)}: '
                f"{value:.0%}</title></rect>"
            )
            body.append(
                f'<text x="{label_width + length + 4:.1f}" y="{top_of_bar + 8}" {_FONT}>'
                f"{value:.0%}</text>"
            )
    return _svg(width, int(height), title, body)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def strip_plot(
    groups: dict[str, list[float]],
    *,
    title: str,
    low: float,
    high: float,
    x_label: str,
    width: int = 560,
) -> str:
    """One row of dots per group on a shared axis, with each group's median as a bar."""
    row = 30
    height = _TOP + row * max(len(groups), 1) + _BOTTOM
    label_width = 90
    plot_w = width - label_width - _RIGHT
    ticks = _ticks(low, high)
    low, high = ticks[0], ticks[-1]

    def sx(x: float) -> float:
        return label_width + (min(max(x, low), high) - low) / ((high - low) or 1) * plot_w

    body = []
    for tick in ticks:
        body.append(
            f'<line x1="{sx(tick):.1f}" x2="{sx(tick):.1f}" y1="{_TOP}" '
            f'y2="{height - _BOTTOM}" stroke="#e4e4e4"/>'
        )
        body.append(
            f'<text x="{sx(tick):.1f}" y="{height - _BOTTOM + 14}" text-anchor="middle" '
            f"{_FONT}>{_number(tick)}</text>"
        )
    body.append(
        f'<text x="{label_width + plot_w / 2}" y="{height - 4}" text-anchor="middle" {_FONT}>'
        f"{escape(x_label)}</text>"
    )
    for g, (name, values) in enumerate(groups.items()):
        middle = _TOP + g * row + row / 2
        color = _color(name, g)
        body.append(
            f'<text x="{label_width - 8}" y="{middle + 4}" text-anchor="end" {_FONT}>'
            f"{escape(name)}</text>"
        )
        for i, value in enumerate(values):
            # A fixed, spread-out vertical offset per dot: repeatable and readable.
            jitter = ((i * 7) % 11 - 5) * 1.6
            body.append(
                f'<circle cx="{sx(value):.1f}" cy="{middle + jitter:.1f}" r="3" '
                f'fill="{color}" fill-opacity="0.55"/>'
            )
        if values:
            median = statistics.median(values)
            body.append(
                f'<line x1="{sx(median):.1f}" x2="{sx(median):.1f}" y1="{middle - 11}" '
                f'y2="{middle + 11}" stroke="#111" stroke-width="2"/>'
            )
    return _svg(width, int(height), title, body)
