"""Line charts as SVG text: lines, step lines, shaded bands and marked moments over time.

Pure (no Airflow import), no JavaScript, no fonts or files to fetch: the report must render on a
machine without internet. Every text that goes into the SVG is escaped; values that are None,
NaN or infinite are left out (a chart of nothing says "no data"), and huge ones are clamped so
that every coordinate stays a finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 660, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 30  # room for the axis labels and the legend
CLAMP = 1e300  # any larger value is drawn at this one: (hi - lo) must stay finite
COLORS = {"canary": "#d9480f", "baseline": "#1c7ed6", "set": "#868e96", "read": "#2b8a3e",
          "fail": "#c92a2a", "pass": "#2f9e44", "band": "#1c7ed6", "canary_band": "#d9480f", "marker": "#495057"}


@dataclass(frozen=True)
class Series:
    """A line through (x, y) points; ``step`` holds each value until the next x."""

    name: str
    points: tuple[tuple[float, float | None], ...]
    color: str = "#495057"
    dashed: bool = False
    step: bool = False
    dots: bool = True


@dataclass(frozen=True)
class Band:
    """A shaded range (x, low, high), e.g. a confidence interval over time."""

    name: str
    points: tuple[tuple[float, float | None, float | None], ...]
    color: str = "#1c7ed6"


@dataclass(frozen=True)
class Marker:
    """A marked moment: a vertical line at ``x`` with a label."""

    x: float
    label: str
    color: str = "#495057"


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str = ""  # "percent" (fractions shown in %), "ms" (seconds shown in ms), "weight" (already %), ""
    series: tuple[Series, ...] = ()
    bands: tuple[Band, ...] = ()
    markers: tuple[Marker, ...] = ()
    x_label: str = "seconds"
    css_class: str = "chart"
    notes: tuple[str, ...] = field(default=())  # short lines under the title, e.g. the threshold


def finite(value) -> float | None:
    """The value as a float if it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return max(-CLAMP, min(CLAMP, value))


def format_value(unit: str, value: float | None) -> str:
    """A value as people read it: a rate in %, a latency in ms, a weight in %."""
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "percent":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value * 1000:.4g} ms"
    if unit == "weight":
        return f"{value:.4g}%"
    return f"{value:.4g}"


def format_seconds(value: float) -> str:
    if abs(value) >= 120:
        return f"{value / 60:.3g}m"
    return f"{value:.3g}s"


def _extent(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return max(-CLAMP, lo - pad), min(CLAMP, hi + pad)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def render(chart: Chart, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The chart as an ``<svg>`` element (a string), or a framed "no data" when nothing is finite."""
    xs: list[float] = []
    ys: list[float] = []
    for s in chart.series:
        for x, y in s.points:
            fx, fy = finite(x), finite(y)
            if fx is not None and fy is not None:
                xs.append(fx)
                ys.append(fy)
    for b in chart.bands:
        for x, lo, hi in b.points:
            fx, flo, fhi = finite(x), finite(lo), finite(hi)
            if fx is not None and flo is not None and fhi is not None:
                xs.append(fx)
                ys += [flo, fhi]
    title = escape(chart.title)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(chart.css_class)}" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{title}">'
            f'<title>{title}</title><rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>')
    if not xs:
        return (head + f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" class="no-data" '
                f'fill="#868e96" font-size="14">no data</text></svg>')
    xs += [m for m in (finite(mk.x) for mk in chart.markers) if m is not None]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = _extent(ys)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    parts = [head]
    # Axes and grid.
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e9ecef"/>'
                     f'<text x="{LEFT - 4}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="10" fill="#495057">'
                     f'{escape(format_value(chart.unit, t))}</text>')
    for t in _ticks(x_lo, x_hi):
        parts.append(f'<text x="{px(t):.1f}" y="{height - 10}" text-anchor="middle" font-size="10" fill="#495057">'
                     f'{escape(format_seconds(t))}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#adb5bd"/>')
    # Bands under the lines.
    for b in chart.bands:
        pts = [(finite(x), finite(lo), finite(hi)) for x, lo, hi in b.points]
        pts = [(x, lo, hi) for x, lo, hi in pts if x is not None and lo is not None and hi is not None]
        if not pts:
            continue
        if len(pts) == 1:  # one look: a short bar, so the range is still visible
            x, lo, hi = pts[0]
            pts = [(x - (x_hi - x_lo) * 0.01, lo, hi), (x + (x_hi - x_lo) * 0.01, lo, hi)]
        upper = " ".join(f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in pts)
        lower = " ".join(f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(pts))
        parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{escape(b.color)}" fill-opacity="0.13" '
                     f'stroke="none"><title>{escape(b.name)}</title></polygon>')
    # Lines.
    for s in chart.series:
        pts = [(finite(x), finite(y)) for x, y in s.points]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if not pts:
            continue
        coords: list[str] = []
        for i, (x, y) in enumerate(pts):
            if s.step and i:
                coords.append(f"{px(x):.1f},{py(pts[i - 1][1]):.1f}")
            coords.append(f"{px(x):.1f},{py(y):.1f}")
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        parts.append(f'<polyline class="series" data-name="{escape(s.name)}" points="{" ".join(coords)}" fill="none" '
                     f'stroke="{escape(s.color)}" stroke-width="2"{dash}/>')
        if s.dots:
            for x, y in pts:
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{escape(s.color)}">'
                             f'<title>{escape(s.name)} at {escape(format_seconds(x))}: '
                             f'{escape(format_value(chart.unit, y))}</title></circle>')
    # Marked moments.
    for m in chart.markers:
        x = finite(m.x)
        if x is None:
            continue
        parts.append(f'<line class="marker" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                     f'stroke="{escape(m.color)}" stroke-width="1.5" stroke-dasharray="2,3"/>'
                     f'<text x="{px(x) + 3:.1f}" y="{TOP + 11}" font-size="10" fill="{escape(m.color)}">'
                     f'{escape(m.label)}</text>')
    # Legend, above the plot.
    x = LEFT
    for name, color, dashed in [(s.name, s.color, s.dashed) for s in chart.series] + [(b.name, b.color, None) for b in chart.bands]:
        if dashed is None:
            parts.append(f'<rect x="{x}" y="10" width="14" height="9" fill="{escape(color)}" fill-opacity="0.25"/>')
        else:
            dash = ' stroke-dasharray="4,3"' if dashed else ""
            parts.append(f'<line x1="{x}" x2="{x + 14}" y1="15" y2="15" stroke="{escape(color)}" stroke-width="2"{dash}/>')
        label = name if len(name) <= 40 else name[:39] + "…"
        parts.append(f'<text x="{x + 18}" y="19" font-size="10" fill="#212529">{escape(label)}</text>')
        x += 26 + 6 * len(label)
    parts.append("</svg>")
    return "".join(parts)
