"""A metric over versions as inline SVG: no script, no colour needed to read it.

Values are a solid line with square markers; gate bounds are dashed lines labelled `min` /
`max` in text; a failing version's marker is a cross. The SVG carries a title and a
description, so a screen reader gets the numbers in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape as _escape

from lepton_ci.core.escape import bidi_visible

W, H = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 28
MARKERS_UP_TO = 50  # beyond this a marker per version is noise (and bytes): line only


def escape(text: str) -> str:
    return _escape(bidi_visible(text))


@dataclass(frozen=True)
class Point:
    label: str
    value: float
    failed: bool = False


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def svg(
    metric: str,
    points: list[Point],
    *,
    lower: float | None = None,
    upper: float | None = None,
    chart_id: str = "c",
) -> str:
    """Points oldest first. Bounds are drawn even when no value comes near them. A value that
    is not a finite number (NaN, infinity in a hand-made record) has no place on an axis: it is
    left out and the description says how many were."""
    every = len(points)
    points = [p for p in points if math.isfinite(p.value)]
    if not points:
        return ""
    values = [p.value for p in points]
    lower, upper = (b if b is not None and math.isfinite(b) else None for b in (lower, upper))
    # Scaled by 1/2: the span of two values near the float limits (1e308, -1e308) overflows.
    lo = min([*values, *(b for b in (lower, upper) if b is not None)]) / 2
    hi = max([*values, *(b for b in (lower, upper) if b is not None)]) / 2
    if hi == lo:
        hi, lo = hi + (abs(hi) * 0.05 or 1), lo - (abs(lo) * 0.05 or 1)
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    n = len(points)

    def x(i: int) -> float:
        return LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return TOP + ph * ((hi - v / 2) / (hi - lo))

    name = escape(metric)
    first, last = points[0], points[-1]
    desc = (
        f"{name} over {n} versions, from {_fmt(first.value)} ({escape(first.label)}) to "
        f"{_fmt(last.value)} ({escape(last.label)}); range {_fmt(min(values))} to "
        f"{_fmt(max(values))}"
    )
    if lower is not None:
        desc += f"; gate minimum {_fmt(lower)}"
    if upper is not None:
        desc += f"; gate maximum {_fmt(upper)}"
    if every > n:
        desc += f"; {every - n} not a finite number, not drawn"
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{name} by version</title>',
        f'<desc id="{chart_id}-d">{desc}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="frame"/>',
    ]
    for v in (2 * (hi - pad), 2 * (lo + pad)):
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">'
            f"{_fmt(v)}</text>"
        )
    for bound, word in ((lower, "min"), (upper, "max")):
        if bound is not None:
            yy = f"{y(bound):.1f}"
            parts.append(
                f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{yy}" y2="{yy}" class="bound"/>'
                f'<text x="{W - RIGHT - 4}" y="{float(yy) - 4:.1f}" class="axis" '
                f'text-anchor="end">{word} {_fmt(bound)}</text>'
            )
    coords = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline points="{coords}" class="line"/>')
    if n <= MARKERS_UP_TO:
        for i, p in enumerate(points):
            cx, cy = x(i), y(p.value)
            failed = " (failed)" if p.failed else ""
            tip = f"<title>{escape(p.label)}: {_fmt(p.value)}{failed}</title>"
            if p.failed:
                parts.append(
                    f'<path d="M{cx - 4:.1f} {cy - 4:.1f}l8 8m0-8l-8 8" class="fail">{tip}</path>'
                )
            else:
                parts.append(
                    f'<rect x="{cx - 3:.1f}" y="{cy - 3:.1f}" width="6" height="6" '
                    f'class="mark">{tip}</rect>'
                )
    parts.append(
        f'<text x="{LEFT}" y="{H - 8}" class="axis">{escape(first.label)}</text>'
        f'<text x="{W - RIGHT}" y="{H - 8}" class="axis" text-anchor="end">'
        f"{escape(last.label)}</text></svg>"
    )
    return "".join(parts)
