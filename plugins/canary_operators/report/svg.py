"""Line charts as SVG text: lines, step lines, shaded bands and marked moments over time.

Pure (no Airflow import), no JavaScript, no fonts or files to fetch: the report must render on a
machine without internet. Every text that goes into the SVG is escaped; values that are None,
NaN or infinite are left out (a chart of nothing says "no data"), and huge ones are clamped so
that every coordinate stays a finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def format_tick(unit: str, value: float, step: float) -> str:
    """An axis label with as many decimals as the ticks' step needs, so that no two read alike."""
    scale = {"percent": 100.0, "ms": 1000.0}.get(unit, 1.0)
    shown, shown_step = value * scale, step * scale
    if not (math.isfinite(shown) and shown_step > 0) or abs(shown) >= 1e6:
        return format_value(unit, value)
    decimals = 0  # the fewest that show the step exactly (2.5 needs one, 0.05 two)
    while decimals < 6 and abs(round(shown_step, decimals) - shown_step) > shown_step * 1e-6:
        decimals += 1
    text = f"{shown:.{decimals}f}"
    return text + {"percent": "%", "ms": " ms", "weight": "%"}.get(unit, "")


def format_seconds(value: float) -> str:
    if abs(value) >= 120:
        return f"{value / 60:.3g}m"
    return f"{value:.3g}s"


def nice_step(span: float, count: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``count`` parts."""
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next((m * power for m in (1, 2, 2.5, 5) if m * power >= raw), 10 * power)


def axis(values: list[float], count: int = 4) -> tuple[float, float, list[float]]:
    """The axis' ends on round numbers around ``values``, and its ticks."""
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step((hi - lo) / 2 if hi - lo > CLAMP else hi - lo, count)
    lo, hi = max(-CLAMP, math.floor(lo / step) * step), min(CLAMP, math.ceil(hi / step) * step)
    ticks = []
    tick = lo
    while tick <= hi + step / 1e9 and len(ticks) < 3 * count:
        ticks.append(0.0 if abs(tick) < step / 1e9 else tick)  # no "-0%"
        tick = lo + step * len(ticks)
    return lo, hi, ticks


def _legend(chart: Chart, width: int) -> tuple[list[str], int]:
    """The legend above the plot, in as many rows as it needs; returns it and where the plot starts."""
    parts, x, y = [], LEFT, 15
    entries = [(s.name, s.color, s.dashed) for s in chart.series] + [(b.name, b.color, None) for b in chart.bands]
    for name, color, dashed in entries:
        label = name if len(name) <= 48 else name[:47] + "…"
        size = 26 + int(5.6 * len(label))
        if x > LEFT and x + size > width - RIGHT:
            x, y = LEFT, y + 14
        if dashed is None:
            parts.append(f'<rect x="{x}" y="{y - 5}" width="14" height="9" fill="{escape(color)}" fill-opacity="0.25"/>')
        else:
            dash = ' stroke-dasharray="4,3"' if dashed else ""
            parts.append(f'<line x1="{x}" x2="{x + 14}" y1="{y}" y2="{y}" stroke="{escape(color)}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 18}" y="{y + 4}" font-size="10" fill="#212529">{escape(label)}</text>')
        x += size
    return parts, y + TOP - 15


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
    x_ticks = [t for t in axis([x_lo, x_hi], 5)[2] if x_lo <= t <= x_hi] or [x_lo, x_hi]
    y_lo, y_hi, y_ticks = axis(ys)
    y_step = (y_ticks[1] - y_ticks[0]) if len(y_ticks) > 1 else 1.0
    legend, top = _legend(chart, width)
    plot_w, plot_h = width - LEFT - RIGHT, height - top - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    parts = [head]
    # Axes and grid.
    for t in y_ticks:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e9ecef"/>'
                     f'<text x="{LEFT - 4}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="10" fill="#495057">'
                     f'{escape(format_tick(chart.unit, t, y_step))}</text>')
    for t in x_ticks:
        parts.append(f'<text x="{px(t):.1f}" y="{height - 10}" text-anchor="middle" font-size="10" fill="#495057">'
                     f'{escape(format_seconds(t))}</text>')
    parts.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#adb5bd"/>')
    # Bands under the lines.
    for b in chart.bands:
        pts = [(finite(x), finite(lo), finite(hi)) for x, lo, hi in b.points]
        pts = [(x, lo, hi) for x, lo, hi in pts if x is not None and lo is not None and hi is not None]
        if not pts:
            continue
        if len(pts) == 1:  # one look: a short bar, so the range is still visible
            x, lo, hi = pts[0]
            pts = [(x - (x_hi - x_lo) * 0.02, lo, hi), (x + (x_hi - x_lo) * 0.02, lo, hi)]
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
        if len(pts) == 1 and not s.dots:  # a limit seen at one look only: a short stroke at it
            x, y = pts[0]
            pts = [(x - (x_hi - x_lo) * 0.03, y), (x + (x_hi - x_lo) * 0.03, y)]
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
    for i, m in enumerate(chart.markers):
        x = finite(m.x)
        if x is None:
            continue
        right = px(x) < LEFT + plot_w * 0.6  # the label goes where there is room for it
        parts.append(f'<line class="marker" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + plot_h}" '
                     f'stroke="{escape(m.color)}" stroke-width="1.5" stroke-dasharray="2,3"/>'
                     f'<text x="{px(x) + (3 if right else -3):.1f}" y="{top + 11 + 12 * (i % 2)}" font-size="10" '
                     f'text-anchor="{"start" if right else "end"}" fill="{escape(m.color)}">{escape(m.label)}</text>')
    parts += legend
    parts.append("</svg>")
    return "".join(parts)
