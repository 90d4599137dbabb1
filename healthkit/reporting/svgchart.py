"""Line charts as inline SVG text, drawn by our own code: the HTML report and the history index need
no matplotlib, no JavaScript and nothing from the network to show one.

Every label is escaped; numbers are formatted by us, so nothing from a workspace reaches the
markup unescaped. Series are thinned to a few hundred points (a page, not a plotting library).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

MAX_POINTS = 500


@dataclass(frozen=True)
class Series:
    """One line: its legend label, colour, points (x, y) and whether each point gets a dot."""

    label: str
    color: str
    points: list[tuple[float, float]]
    dots: bool = False


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out: list[float] = []
    v = first
    while v <= hi + step * 1e-9 and len(out) < 50:
        out.append(round(v, 12))
        v += step
    return out


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _bounds(series: list[Series]) -> tuple[float, float, float, float] | None:
    pts = [p for s in series for p in s.points]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    return x0, x1, y0, y1


def line_chart(
    series: list[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 260,
    y_from_zero: bool = False,
    integer_x: bool = False,
    css_class: str = "chart",
) -> str:
    """An ``<svg>`` element with axes, round ticks, one polyline per series and a legend."""
    series = [Series(s.label, s.color, _thin(sorted(s.points)), s.dots) for s in series]
    left, right, top, bottom = 56, 12, 28, 40
    pw, ph = width - left - right, height - top - bottom
    out = [
        f'<svg class="{escape(css_class)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    bounds = _bounds(series)
    if bounds is None:
        out.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#666">no data</text></svg>'
        )
        return "".join(out)
    x0, x1, y0, y1 = bounds
    if y_from_zero:
        y0 = min(0.0, y0)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in nice_ticks(y0, y1):
        if y0 <= t <= y1:
            out.append(
                f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#ddd"/>'
                f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end">{_fmt(t)}</text>'
            )
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1 and (not integer_x or t == int(t)):
            out.append(
                f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#999"/>'
                f'<text x="{sx(t):.1f}" y="{top + ph + 15}" font-size="10" text-anchor="middle">{_fmt(t)}</text>'
            )
    out.append(
        f'<text x="{left + pw / 2:.0f}" y="{height - 6}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{top + ph / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.0f})">{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        if not s.points:
            continue
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        color = escape(s.color)
        out.append(
            f'<polyline class="series" data-label="{escape(s.label)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{pts}"/>'
        )
        if s.dots or len(s.points) == 1:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>' for x, y in s.points]
        lx = left + pw - 150
        ly = top + 14 + 16 * i
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"/>'
            f'<text x="{lx + 22}" y="{ly}" font-size="11">{escape(s.label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
